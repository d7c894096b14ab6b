//! A raw WebSocket client that speaks the protocol frame by frame.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub struct WsClient {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What the next read brought.
#[derive(Debug)]
pub enum Received {
    Frame(Value),
    Closed(Option<CloseFrame>),
}

impl WsClient {
    pub async fn connect(url: &str) -> Result<WsClient, tokio_tungstenite::tungstenite::Error> {
        let (socket, _) = tokio_tungstenite::connect_async(url).await?;
        Ok(WsClient { socket })
    }

    /// Connects with the token in the `Authorization` header.
    pub async fn connect_with_header(
        url: &str,
        token: &str,
    ) -> Result<WsClient, tokio_tungstenite::tungstenite::Error> {
        let mut request = url.into_client_request()?;
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header"),
        );
        let (socket, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(WsClient { socket })
    }

    /// Connects with a tiny socket receive buffer, for a client that stops
    /// reading: the server's writes back up after a few KiB instead of
    /// disappearing into kernel buffers.
    pub async fn connect_slow(
        url: &str,
    ) -> Result<WsClient, tokio_tungstenite::tungstenite::Error> {
        let request = url.into_client_request()?;
        let host = request.uri().host().unwrap_or("127.0.0.1").to_owned();
        let port = request.uri().port_u16().unwrap_or(80);
        let addr = tokio::net::lookup_host((host.as_str(), port))
            .await?
            .next()
            .ok_or_else(|| std::io::Error::other("no address"))?;
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_recv_buffer_size(2048)?;
        let stream = socket.connect(addr).await?;
        let (socket, _) =
            tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream)).await?;
        Ok(WsClient { socket })
    }

    /// Sends a binary message (which the protocol does not use).
    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.socket
            .send(Message::binary(bytes))
            .await
            .expect("frame sent");
    }

    pub async fn send(&mut self, frame: Value) {
        self.socket
            .send(Message::text(frame.to_string()))
            .await
            .expect("frame sent");
    }

    /// Sends a text message that the server may refuse mid-way (it closes
    /// the connection), so a failed write is not an error here.
    pub async fn send_text_refusable(&mut self, text: &str) {
        let _ = self.socket.send(Message::text(text.to_owned())).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.socket
            .send(Message::text(text.to_owned()))
            .await
            .expect("frame sent");
    }

    pub async fn subscribe(&mut self, operation_id: &str, after_seq: Option<u64>) {
        let frame = match after_seq {
            Some(seq) => {
                json!({"type": "subscribe", "operation_id": operation_id, "after_seq": seq})
            }
            None => json!({"type": "subscribe", "operation_id": operation_id}),
        };
        self.send(frame).await;
    }

    /// The next frame or close, within `limit`; panics on timeout.
    pub async fn receive(&mut self, limit: Duration) -> Received {
        loop {
            let message = tokio::time::timeout(limit, self.socket.next())
                .await
                .expect("a frame arrives in time");
            match message {
                Some(Ok(Message::Text(text))) => {
                    return Received::Frame(
                        serde_json::from_str(text.as_str()).expect("frames are JSON"),
                    );
                }
                Some(Ok(Message::Close(frame))) => return Received::Closed(frame),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Received::Closed(None),
            }
        }
    }

    /// The next JSON frame; panics on close or timeout.
    pub async fn next_frame(&mut self) -> Value {
        match self.receive(Duration::from_secs(15)).await {
            Received::Frame(frame) => frame,
            Received::Closed(frame) => panic!("connection closed: {frame:?}"),
        }
    }

    /// Event frames of `operation_id` until its terminal one (other frames skipped).
    pub async fn events_until_terminal(&mut self, operation_id: &str) -> Vec<Value> {
        let mut events = Vec::new();
        loop {
            let frame = self.next_frame().await;
            if frame["type"] == "event" && frame["operation_id"] == operation_id {
                let terminal = matches!(
                    frame["event"].as_str(),
                    Some("succeeded" | "failed" | "cancelled")
                );
                events.push(frame);
                if terminal {
                    return events;
                }
            }
        }
    }

    /// The close code the server ends the connection with (frames before it skipped).
    pub async fn close_code(&mut self, limit: Duration) -> Option<u16> {
        loop {
            match self.receive(limit).await {
                Received::Frame(_) => continue,
                Received::Closed(frame) => return frame.map(|f| u16::from(f.code)),
            }
        }
    }

    /// The next frame of `type` (others skipped).
    pub async fn next_of_type(&mut self, frame_type: &str) -> Value {
        loop {
            let frame = self.next_frame().await;
            if frame["type"] == frame_type {
                return frame;
            }
        }
    }

    /// Sends a ping and returns every frame received before its pong: the
    /// server handles a connection's frames in order, so after the pong
    /// everything sent before the ping was handled.
    pub async fn until_pong(&mut self) -> Vec<Value> {
        self.send(json!({"type": "ping"})).await;
        let mut before = Vec::new();
        loop {
            let frame = self.next_frame().await;
            if frame["type"] == "pong" {
                return before;
            }
            before.push(frame);
        }
    }

    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}

/// The seqs of event frames.
pub fn seqs(events: &[Value]) -> Vec<u64> {
    events.iter().filter_map(|e| e["seq"].as_u64()).collect()
}

/// A peer that completes the WebSocket handshake and then never writes a
/// byte — not even the pongs a WebSocket library sends by itself — like a
/// client whose network vanished. It only reads what the server sends.
pub struct SilentPeer {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl SilentPeer {
    /// Connects to `url` (`ws://HOST:PORT/PATH?QUERY`) and upgrades.
    pub async fn connect(url: &str) -> std::io::Result<SilentPeer> {
        use tokio::io::AsyncWriteExt;
        let request = url.into_client_request().map_err(std::io::Error::other)?;
        let uri = request.uri();
        let authority = uri
            .authority()
            .ok_or_else(|| std::io::Error::other("no host"))?
            .to_string();
        let path = uri
            .path_and_query()
            .map_or("/", |path| path.as_str())
            .to_owned();
        let mut stream = TcpStream::connect(&authority).await?;
        let upgrade = format!(
            "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(upgrade.as_bytes()).await?;
        let mut peer = SilentPeer {
            stream,
            buffer: Vec::new(),
        };
        let head = loop {
            if let Some(end) = peer.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break peer.buffer.drain(..end + 4).collect::<Vec<u8>>();
            }
            if !peer.fill().await? {
                return Err(std::io::Error::other("closed during the handshake"));
            }
        };
        if !head.starts_with(b"HTTP/1.1 101") {
            return Err(std::io::Error::other(format!(
                "upgrade refused: {}",
                String::from_utf8_lossy(&head)
            )));
        }
        Ok(peer)
    }

    /// Reads more bytes; `false` at end of stream.
    async fn fill(&mut self) -> std::io::Result<bool> {
        use tokio::io::AsyncReadExt;
        let mut chunk = [0u8; 4096];
        let read = self.stream.read(&mut chunk).await?;
        self.buffer.extend_from_slice(&chunk[..read]);
        Ok(read > 0)
    }

    /// Reads (unmasked) server frames until a close frame and returns its
    /// code; `None` when the stream ends without one. Panics after `limit`.
    pub async fn close_code(&mut self, limit: Duration) -> Option<u16> {
        tokio::time::timeout(limit, async {
            loop {
                if let Some((opcode, payload)) = self.take_frame() {
                    if opcode == 0x8 {
                        return payload
                            .get(..2)
                            .map(|code| u16::from_be_bytes([code[0], code[1]]));
                    }
                    continue;
                }
                if !self.fill().await.unwrap_or(false) {
                    return None;
                }
            }
        })
        .await
        .expect("the server closes in time")
    }

    /// The next complete frame in the buffer: (opcode, payload).
    fn take_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        let head = self.buffer.get(..2)?;
        let opcode = head[0] & 0x0f;
        let (length, start) = match head[1] & 0x7f {
            126 => (
                usize::from(u16::from_be_bytes(self.buffer.get(2..4)?.try_into().ok()?)),
                4,
            ),
            127 => (
                usize::try_from(u64::from_be_bytes(self.buffer.get(2..10)?.try_into().ok()?))
                    .ok()?,
                10,
            ),
            short => (usize::from(short), 2),
        };
        let payload = self.buffer.get(start..start + length)?.to_vec();
        self.buffer.drain(..start + length);
        Some((opcode, payload))
    }
}
