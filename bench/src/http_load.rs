//! Starting operations over HTTP (`POST /v1/demo/sleep`, the same request
//! for both targets) on keep-alive connections, and reading one back.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Deserialize;
use serde_json::Value;

/// A keep-alive HTTP client for one target's api.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
}

/// The outcome of one start.
#[derive(Debug)]
pub enum Started {
    /// 202 (or 200) with the operation's id, and how long the request took.
    Accepted { id: String, latency: Duration },
    /// Any other answer.
    Refused { status: u16 },
    /// No answer (connection error, timeout).
    Failed,
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

impl Api {
    pub fn new(base: &str) -> Result<Api> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(4096)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(10))
            .build()
            .context("building the HTTP client")?;
        Ok(Api {
            http,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    /// `POST /v1/{module}/{operation}` with `input`.
    pub async fn start(&self, token: &str, kind: &str, input: &Value) -> Started {
        let path = kind.replacen('.', "/", 1);
        let began = Instant::now();
        let response = self
            .http
            .post(format!("{}/v1/{path}", self.base))
            .bearer_auth(token)
            .json(input)
            .send()
            .await;
        let Ok(response) = response else {
            return Started::Failed;
        };
        let status = response.status().as_u16();
        let body = response.bytes().await;
        let latency = began.elapsed();
        match (status, body) {
            (200 | 202, Ok(body)) => match serde_json::from_slice::<IdOnly>(&body) {
                Ok(IdOnly { id }) => Started::Accepted { id, latency },
                Err(_) => Started::Refused { status },
            },
            (_, Ok(_)) => Started::Refused { status },
            (_, Err(_)) => Started::Failed,
        }
    }

    /// `GET /v1/operations/{id}` as JSON.
    pub async fn get(&self, token: &str, id: &str) -> Result<Value> {
        let response = self
            .http
            .get(format!("{}/v1/operations/{id}", self.base))
            .bearer_auth(token)
            .send()
            .await?
            .error_for_status()?;
        Ok(response.json().await?)
    }
}
