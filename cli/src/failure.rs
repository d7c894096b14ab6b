//! How the CLI ends when something goes wrong: one line meant for a person
//! (what happened and what to do) and the documented exit code.

use std::fmt;

use longrun_client::{ClientError, Code, Problem};

use crate::credentials::TokenInfo;

/// Exit codes (see `longrun --help`).
pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILED: u8 = 1;
    pub const CANCELLED: u8 = 2;
    pub const TIMED_OUT: u8 = 3;
    pub const USAGE: u8 = 4;
    pub const CONNECTION: u8 = 5;
    pub const AUTH: u8 = 6;
    pub const INTERRUPTED: u8 = 130;
}

/// A failure with its exit code and a message meant for a person.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
    /// Set when the server refused the token, so the message can be
    /// completed with how to get a working one.
    refused_token: Option<String>,
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
            refused_token: None,
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Failure::new(exit::USAGE, message)
    }

    pub fn connection(message: impl Into<String>) -> Self {
        Failure::new(exit::CONNECTION, message)
    }

    pub fn auth(message: impl Into<String>) -> Self {
        Failure::new(exit::AUTH, message)
    }

    /// Completes a refused-token failure with what to do about the token
    /// in use (who it is for, whether it expired, how to mint another).
    pub fn explain_token(mut self, token: Option<&TokenInfo>) -> Self {
        if let Some(detail) = self.refused_token.take() {
            self.message = refused_token_message(&detail, token);
        }
        self
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
                "cannot reach {url} ({message}); is the platform running? \
                 (`longrun dev` starts one; `longrun config` shows where the CLI looks)"
            )),
            ClientError::Protocol(message) => {
                Failure::connection(format!("unexpected answer from the server: {message}"))
            }
            ClientError::Problem {
                problem,
                retry_after,
            } => from_problem(&problem, retry_after),
        }
    }
}

fn from_problem(problem: &Problem, retry_after: Option<u64>) -> Failure {
    let detail = problem.detail.trim();
    if problem.code == Code::Unauthorized {
        return Failure {
            code: exit::AUTH,
            message: refused_token_message(detail, None),
            refused_token: Some(detail.to_owned()),
        };
    }
    let mut message = format!("{}: {detail}", problem.title);
    if !problem.errors.is_empty() {
        let fields: Vec<String> = problem
            .errors
            .iter()
            .map(|field| {
                let path = if field.path.is_empty() {
                    "input"
                } else {
                    &field.path
                };
                format!("{path}: {}", field.message)
            })
            .collect();
        message.push_str(&format!(" ({})", fields.join("; ")));
    }
    let hint = match problem.code {
        Code::NotFound => " — `longrun list` shows your operations".to_owned(),
        Code::UnknownKind => " — `longrun kinds` lists what can be started".to_owned(),
        Code::InvalidInput => " — `longrun kinds KIND` shows what the input takes".to_owned(),
        Code::Unavailable => match retry_after {
            Some(seconds) => format!(" — retry in {seconds} s"),
            None => " — retry in a moment".to_owned(),
        },
        Code::RateLimited => match retry_after {
            Some(seconds) => format!(" — slow down; retry in {seconds} s"),
            None => " — slow down and retry".to_owned(),
        },
        Code::Internal => match &problem.request_id {
            Some(id) => format!(" — a server bug; quote request id {id} when reporting it"),
            None => " — a server bug; see the api's log".to_owned(),
        },
        _ => String::new(),
    };
    message.push_str(&hint);
    let code = match problem.code {
        Code::Forbidden => exit::AUTH,
        Code::Unavailable | Code::Internal | Code::RateLimited => exit::CONNECTION,
        _ => exit::USAGE,
    };
    Failure::new(code, message)
}

/// "The server refused the token (why); here is how to get a good one."
fn refused_token_message(detail: &str, token: Option<&TokenInfo>) -> String {
    // The server's own advice (after `;`) is replaced by a precise one.
    let why = detail.split(';').next().unwrap_or(detail).trim();
    let mint = |sub: &str| {
        if std::env::var_os("LONGRUN_JWT_SECRET").is_some() {
            format!("export LONGRUN_TOKEN=$(longrun token --sub {sub})")
        } else {
            format!(
                "`longrun token --sub {sub}` where LONGRUN_JWT_SECRET is set, \
                 then export LONGRUN_TOKEN"
            )
        }
    };
    match token {
        Some(info) if info.is_expired() => format!(
            "the token for `{}` expired {} ago; mint a new one: {}",
            info.sub,
            info.expired_for(),
            mint(&info.sub)
        ),
        Some(info) => format!(
            "the server refused the token for `{}` ({why}); mint one for this platform: {}",
            info.sub,
            mint(&info.sub)
        ),
        None => format!(
            "the server refused the token ({why}); mint one: {}",
            mint("NAME")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use longrun_client::FieldError;

    fn failure(code: Code, detail: &str) -> Failure {
        Failure::from(ClientError::Problem {
            problem: Box::new(Problem::new(code, detail)),
            retry_after: None,
        })
    }

    #[test]
    fn problems_map_to_the_documented_exit_codes() {
        assert_eq!(failure(Code::Unauthorized, "bad").code, exit::AUTH);
        assert_eq!(failure(Code::NotFound, "no").code, exit::USAGE);
        assert_eq!(failure(Code::InvalidInput, "no").code, exit::USAGE);
        assert_eq!(failure(Code::Conflict, "no").code, exit::USAGE);
        assert_eq!(failure(Code::Unavailable, "down").code, exit::CONNECTION);
        assert_eq!(failure(Code::RateLimited, "slow").code, exit::CONNECTION);
        let refused = Failure::from(ClientError::Connection {
            url: "http://127.0.0.1:1".into(),
            message: "Connection refused".into(),
        });
        assert_eq!(refused.code, exit::CONNECTION);
        assert!(refused.message.contains("http://127.0.0.1:1"));
    }

    #[test]
    fn messages_are_one_line_with_what_to_do() {
        let unknown = failure(Code::UnknownKind, "no kind `demo.nap`");
        assert_eq!(
            unknown.message,
            "Unknown operation kind: no kind `demo.nap` — `longrun kinds` lists what can be started"
        );
        let invalid = Failure::from(ClientError::Problem {
            problem: Box::new(
                Problem::new(Code::InvalidInput, "the input does not match the schema")
                    .with_errors(vec![
                        FieldError {
                            path: "/steps".into(),
                            message: "0 is less than the minimum of 1".into(),
                        },
                        FieldError {
                            path: String::new(),
                            message: "`x` is not allowed".into(),
                        },
                    ]),
            ),
            retry_after: None,
        });
        assert!(!invalid.message.contains('\n'), "{}", invalid.message);
        assert!(
            invalid
                .message
                .contains("(/steps: 0 is less than the minimum of 1; input: `x` is not allowed)"),
            "{}",
            invalid.message
        );
    }

    #[test]
    fn an_expired_token_says_for_whom_and_how_to_mint_another() {
        let refused = failure(
            Code::Unauthorized,
            "the token has expired; mint a new one (e.g. `longrun token --sub NAME`)",
        );
        let info = TokenInfo {
            sub: "dana".into(),
            roles: vec![],
            expires_at: Some(1),
        };
        let explained = refused.explain_token(Some(&info));
        assert_eq!(explained.code, exit::AUTH);
        assert!(
            explained
                .message
                .starts_with("the token for `dana` expired "),
            "{}",
            explained.message
        );
        assert!(
            explained.message.contains("longrun token --sub dana"),
            "{}",
            explained.message
        );
        assert_eq!(explained.message.matches("mint").count(), 1);
    }

    #[test]
    fn a_refused_token_without_local_details_still_says_what_to_do() {
        let refused = failure(Code::Unauthorized, "the token is invalid: bad signature");
        let explained = refused.explain_token(None);
        assert!(
            explained
                .message
                .starts_with("the server refused the token (the token is invalid: bad signature)"),
            "{}",
            explained.message
        );
        assert!(explained.message.contains("longrun token --sub NAME"));
    }
}
