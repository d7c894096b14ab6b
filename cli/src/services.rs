//! `longrun dev`, `api`, `worker` and `realtime`: the platform's services.

use std::future::Future;

use longrun_shared::Config;
use longrun_shared::auth::{TokenRequest, mint};
use longrun_shared::redis_server::{RedisOptions, RedisServer};
use rand::RngCore;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::args::{DevArgs, ServiceArgs};
use crate::failure::{Failure, exit};

fn config() -> Result<Config, Failure> {
    Config::from_env().map_err(|err| Failure::usage(err.to_string()))
}

/// The configuration of `longrun api`, `worker` or `realtime`: the
/// environment, with `--strict` on top.
fn service_config(args: &ServiceArgs) -> Result<Config, Failure> {
    let mut config = config()?;
    config.redis.strict |= args.strict;
    check(&config)?;
    Ok(config)
}

fn check(config: &Config) -> Result<(), Failure> {
    config
        .validate()
        .map_err(|err| Failure::usage(err.to_string()))
}

/// Resolves on Ctrl-C or SIGTERM.
pub fn shutdown_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let fired = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = ctrl_c => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = ctrl_c.await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
        fired.cancel();
    });
    token
}

async fn bind(addr: std::net::SocketAddr, variable: &str) -> Result<TcpListener, Failure> {
    TcpListener::bind(addr).await.map_err(|err| {
        Failure::usage(format!(
            "cannot listen on {addr} ({err}); set {variable} to a free address"
        ))
    })
}

fn failed(service: &str, err: impl std::fmt::Display) -> Failure {
    Failure::connection(format!("{service}: {err}"))
}

pub async fn api(args: &ServiceArgs) -> Result<u8, Failure> {
    let config = service_config(args)?;
    longrun_shared::telemetry::prometheus();
    let listener = bind(config.api_addr, "LONGRUN_API_ADDR").await?;
    let stop = shutdown_signal();
    longrun_api::run(config, listener, stop.cancelled_owned())
        .await
        .map_err(|err| failed("api", err))?;
    Ok(exit::OK)
}

pub async fn worker(args: &ServiceArgs) -> Result<u8, Failure> {
    let config = service_config(args)?;
    longrun_shared::telemetry::prometheus();
    let stop = shutdown_signal();
    longrun_worker::run(
        config,
        longrun_worker::Registry::builtin(),
        stop.cancelled_owned(),
    )
    .await
    .map_err(|err| failed("worker", err))?;
    Ok(exit::OK)
}

pub async fn realtime(args: &ServiceArgs) -> Result<u8, Failure> {
    let config = service_config(args)?;
    longrun_shared::telemetry::prometheus();
    let listener = bind(config.ws_addr, "LONGRUN_WS_ADDR").await?;
    let stop = shutdown_signal();
    longrun_realtime::run(config, listener, stop.cancelled_owned())
        .await
        .map_err(|err| failed("realtime", err))?;
    Ok(exit::OK)
}

/// The whole platform in one process.
pub async fn dev(args: &DevArgs, json: bool) -> Result<u8, Failure> {
    let mut config = config()?;
    let redis = match &config.redis_url {
        Some(_) => None,
        None => {
            let server = RedisServer::start(RedisOptions::default())
                .map_err(|err| Failure::connection(format!("cannot start redis-server: {err}")))?;
            config.redis_url = Some(server.url());
            Some(server)
        }
    };
    if config.jwt.secret.is_empty() {
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        config.jwt.secret = hex::encode(secret);
    }
    check(&config)?;
    longrun_shared::telemetry::prometheus();
    let api_listener = bind(config.api_addr, "LONGRUN_API_ADDR").await?;
    let ws_listener = bind(config.ws_addr, "LONGRUN_WS_ADDR").await?;
    let token = mint(
        &config.jwt.secret,
        &TokenRequest {
            sub: "dev",
            roles: vec!["admin".into()],
            ttl: std::time::Duration::from_secs(30 * 86_400),
            issuer: config.jwt.issuer.as_deref(),
            audience: config.jwt.audience.as_deref(),
        },
    )
    .map_err(|err| Failure::usage(format!("cannot mint a token: {err}")))?;
    let banner = Banner::new(&config, &api_listener, &ws_listener, token, redis.as_ref());
    if json {
        crate::output::json(&banner);
    } else if !args.quiet {
        banner.print();
    }
    let stop = shutdown_signal();
    let outcome = tokio::try_join!(
        flatten(
            longrun_api::run(config.clone(), api_listener, stop.clone().cancelled_owned()),
            "api"
        ),
        flatten(
            longrun_worker::run(
                config.clone(),
                longrun_worker::Registry::builtin(),
                stop.clone().cancelled_owned()
            ),
            "worker"
        ),
        flatten(
            longrun_realtime::run(config.clone(), ws_listener, stop.clone().cancelled_owned()),
            "realtime"
        ),
    );
    stop.cancel();
    drop(redis);
    outcome.map(|_| exit::OK)
}

async fn flatten<E: std::fmt::Display>(
    service: impl Future<Output = Result<(), E>>,
    name: &str,
) -> Result<(), Failure> {
    service.await.map_err(|err| failed(name, err))
}

/// What `longrun dev` tells: where everything is and how to point the CLI at it.
#[derive(serde::Serialize)]
struct Banner {
    api_url: String,
    ws_url: String,
    redis_url: String,
    redis_private: bool,
    bin_dir: String,
    jwt_secret: String,
    token: String,
}

impl Banner {
    fn new(
        config: &Config,
        api: &TcpListener,
        ws: &TcpListener,
        token: String,
        redis: Option<&RedisServer>,
    ) -> Banner {
        let address = |listener: &TcpListener, scheme: &str| {
            listener
                .local_addr()
                .map(|a| format!("{scheme}://{a}"))
                .unwrap_or_default()
        };
        Banner {
            api_url: address(api, "http"),
            ws_url: address(ws, "ws"),
            redis_url: match redis {
                Some(server) => server.url(),
                None => config.redis_url.clone().unwrap_or_default(),
            },
            redis_private: redis.is_some(),
            bin_dir: std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(|dir| dir.display().to_string()))
                .unwrap_or_default(),
            jwt_secret: config.jwt.secret.clone(),
            token,
        }
    }

    fn print(&self) {
        let Banner {
            api_url,
            ws_url,
            redis_url,
            redis_private,
            bin_dir,
            jwt_secret,
            token,
        } = self;
        let redis_note = if *redis_private {
            " (private, stopped on exit)"
        } else {
            ""
        };
        say!(
            "longrun dev is up.

  api        {api_url}   (OpenAPI: {api_url}/openapi.json)
  dashboard  {api_url}/ui/
  websocket  {ws_url}/v1/ws
  redis      {redis_url}{redis_note}

Point the CLI at it (in another shell):

  export PATH=\"{bin_dir}:$PATH\"
  export LONGRUN_URL={api_url}
  export LONGRUN_WS_URL={ws_url}
  export LONGRUN_JWT_SECRET={jwt_secret}
  export LONGRUN_TOKEN={token}

Then: longrun start demo.sleep '{{\"duration_ms\":3000,\"steps\":30}}' --watch
Ctrl-C stops everything.
"
        );
    }
}

/// `longrun healthcheck URL`: 0 when the URL answers 2xx within 2 s, else 1.
pub async fn healthcheck(url: &str) -> u8 {
    let client = match reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(2))
        .build()
    {
        Ok(client) => client,
        Err(_) => return 1,
    };
    match client.get(url).send().await {
        Ok(response) if response.status().is_success() => 0,
        _ => 1,
    }
}
