//! A connection's writer task: drains its [`Outbox`] into the socket.
//!
//! It is the only place that waits on the client's socket, so a client
//! that reads slowly (or not at all) only ever holds up its own writer.
//! A frame the socket does not take within the stall limit means the
//! client stopped reading: the writer gives up and the connection closes
//! (4008 if the close frame still gets through).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::SinkExt;
use futures_util::stream::SplitSink;

use crate::meter;
use crate::outbox::{End, Next, Outbox, Trouble};

/// How long the close handshake may take.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

pub type Sender = SplitSink<WebSocket, Message>;

/// Writes frames until the connection ends; `stall` bounds each write.
pub async fn run(mut sender: Sender, outbox: Arc<Outbox>, stall: Duration) {
    loop {
        let message = match outbox.next().await {
            Next::Frame(frame) => {
                let sent =
                    tokio::time::timeout(stall, sender.send(Message::Text(frame.text))).await;
                if !written(sent, &outbox) {
                    return;
                }
                if frame.event {
                    meter::delivered(frame.emitted_at);
                }
                continue;
            }
            Next::Ping => Message::Ping(Default::default()),
            Next::End(End::Close(code, reason)) => {
                let close = async {
                    let frame = CloseFrame {
                        code,
                        reason: Utf8Bytes::from_static(reason),
                    };
                    let _ = sender.send(Message::Close(Some(frame))).await;
                    let _ = sender.close().await;
                };
                let _ = tokio::time::timeout(CLOSE_GRACE, close).await;
                return;
            }
            Next::End(End::Finish) => {
                let _ = tokio::time::timeout(CLOSE_GRACE, sender.close()).await;
                return;
            }
        };
        let sent = tokio::time::timeout(stall, sender.send(message)).await;
        if !written(sent, &outbox) {
            return;
        }
    }
}

/// Reports a failed or stalled write; `true` when the frame was written.
fn written(
    sent: Result<Result<(), axum::Error>, tokio::time::error::Elapsed>,
    outbox: &Outbox,
) -> bool {
    match sent {
        Ok(Ok(())) => true,
        Ok(Err(_)) => {
            outbox.report(Trouble::WriterGone);
            false
        }
        Err(_) => {
            outbox.report(Trouble::Stalled);
            false
        }
    }
}
