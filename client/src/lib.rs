//! A typed Rust client for [longrun](https://github.com/longrun/longrun):
//! every route of its HTTP API ([`Client`]) and its WebSocket protocol
//! ([`Client::watch`] → [`Watch`], which reconnects and resumes by itself).
//!
//! # Start an operation and follow it live
//!
//! ```no_run
//! use longrun_client::{Client, StartOptions, Status};
//! use serde_json::json;
//!
//! # async fn demo() -> Result<(), longrun_client::ClientError> {
//! let client = Client::new("http://127.0.0.1:8080", "ws://127.0.0.1:8081", "<jwt>");
//! let op = client
//!     .start("demo.sleep", &json!({"duration_ms": 1000, "steps": 10}), &StartOptions::default())
//!     .await?;
//!
//! // Every event from seq 1, in order, each once, across reconnects.
//! let mut events = client.watch(&op.id, Some(0));
//! while let Some(event) = events.next().await? {
//!     println!("{} {:?} {}", event.seq, event.event_type, event.data);
//! }
//! let done = client.get(&op.id).await?;
//! assert_eq!(done.status, Status::Succeeded);
//! # Ok(()) }
//! ```
//!
//! # Or wait without a WebSocket
//!
//! ```no_run
//! # async fn demo(client: longrun_client::Client, id: &str) -> longrun_client::Result<()> {
//! use std::time::Duration;
//!
//! // Long polls strung together, riding out 503s and api restarts.
//! let op = client.wait_until_done(id, Some(Duration::from_secs(600))).await?;
//! if op.done {
//!     println!("{}: {}", op.status, op.result);
//! }
//! # Ok(()) }
//! ```
//!
//! # Errors
//!
//! A refusal carries the server's RFC 9457 problem
//! ([`ClientError::Problem`]), so callers branch on its [`Code`];
//! [`ClientError::is_transient`] tells what is worth retrying.
//!
//! ```no_run
//! # async fn demo(client: longrun_client::Client, id: &str) {
//! use longrun_client::Code;
//!
//! match client.cancel(id).await {
//!     Ok(op) => println!("{} is {}", op.id, op.status),
//!     Err(err) if err.code() == Some(Code::Conflict) => println!("already finished"),
//!     Err(err) => eprintln!("cannot cancel: {err}"),
//! }
//! # }
//! ```
//!
//! The client speaks plain `http://` and `ws://`; put a TLS-terminating
//! proxy in front of it to reach a platform over the internet.

#![warn(missing_docs)]

mod client;
mod error;
mod poll;
mod watch;

pub use client::{Client, ListOptions, Result, StartOptions, Started};
pub use error::ClientError;
pub use longrun_shared::kinds::{BackoffKind, FailurePolicy, KindSpec, StartParams};
pub use longrun_shared::model::{
    ChildCounts, Event, EventPage, EventType, Operation, OperationError, OperationPage, Progress,
    Status,
};
pub use longrun_shared::problem::{Code, FieldError, Problem};
pub use watch::{Watch, WatchOptions, WatchUpdate};
