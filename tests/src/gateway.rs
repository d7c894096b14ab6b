//! A realtime gateway running in the test's runtime that can be stopped
//! and started again on the same port — what clients see when a gateway
//! is restarted behind a fixed address. Use it with a platform built
//! `without_realtime()`.

use std::net::SocketAddr;
use std::time::Duration;

use longrun_shared::Config;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct GatewayHandle {
    config: Config,
    addr: SocketAddr,
    running: Option<(CancellationToken, JoinHandle<()>)>,
}

impl GatewayHandle {
    /// Starts a gateway with `config` on a free port.
    pub async fn start(config: &Config) -> GatewayHandle {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("gateway binds");
        let addr = listener.local_addr().expect("addr");
        let mut handle = GatewayHandle {
            config: config.clone(),
            addr,
            running: None,
        };
        handle.serve(listener);
        handle
    }

    fn serve(&mut self, listener: TcpListener) {
        let stop = CancellationToken::new();
        let config = self.config.clone();
        let shutdown = stop.clone().cancelled_owned();
        let task = tokio::spawn(async move {
            longrun_realtime::run(config, listener, shutdown)
                .await
                .expect("gateway runs");
        });
        self.running = Some((stop, task));
    }

    /// `ws://HOST:PORT` (without `/v1/ws`).
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Shuts the gateway down (connections are closed with 1001) and waits.
    pub async fn stop(&mut self) {
        if let Some((stop, task)) = self.running.take() {
            stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
        }
    }

    /// Starts it again on the same address.
    pub async fn start_again(&mut self) {
        assert!(self.running.is_none(), "stop it first");
        let listener = bind_again(self.addr).await;
        self.serve(listener);
    }
}

impl Drop for GatewayHandle {
    fn drop(&mut self) {
        if let Some((stop, _)) = self.running.take() {
            stop.cancel();
        }
    }
}

/// Binds `addr` again, retrying briefly while the old socket lets go.
pub async fn bind_again(addr: SocketAddr) -> TcpListener {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => return listener,
            Err(err) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "cannot bind {addr} again: {err}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
