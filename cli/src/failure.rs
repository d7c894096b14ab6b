//! How the CLI ends: a one-line message and the documented exit code.

use std::fmt;

use longrun_client::ClientError;
use longrun_shared::problem::Code;

/// Exit codes (see `longrun --help`).
pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILED: u8 = 1;
    pub const CANCELLED: u8 = 2;
    pub const TIMED_OUT: u8 = 3;
    pub const USAGE: u8 = 4;
    pub const CONNECTION: u8 = 5;
    pub const AUTH: u8 = 6;
}

/// A failure with its exit code and a message meant for a person.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Self {
        Failure {
            code: exit::USAGE,
            message: message.into(),
        }
    }

    pub fn connection(message: impl Into<String>) -> Self {
        Failure {
            code: exit::CONNECTION,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<ClientError> for Failure {
    fn from(err: ClientError) -> Self {
        match err {
            ClientError::Connection { url, message } => Failure::connection(format!(
                "cannot reach {url} ({message}); is the platform running? (`longrun dev`, or set LONGRUN_URL)"
            )),
            ClientError::Protocol(message) => {
                Failure::connection(format!("unexpected answer from the server: {message}"))
            }
            ClientError::Problem { problem, .. } => {
                let hint = match problem.code {
                    Code::Unauthorized => {
                        " — mint a token with `longrun token --sub NAME` and set LONGRUN_TOKEN"
                    }
                    Code::UnknownKind => " — see `longrun kinds`",
                    Code::Unavailable => " — retry in a moment",
                    _ => "",
                };
                let mut message = format!("{}: {}{hint}", problem.title, problem.detail);
                for field in &problem.errors {
                    let path = if field.path.is_empty() {
                        "(input)"
                    } else {
                        &field.path
                    };
                    message.push_str(&format!("\n  {path}: {}", field.message));
                }
                let code = match problem.code {
                    Code::Unauthorized | Code::Forbidden => exit::AUTH,
                    Code::Unavailable | Code::Internal => exit::CONNECTION,
                    _ => exit::USAGE,
                };
                Failure { code, message }
            }
        }
    }
}
