//! Waiting for an operation over HTTP: polling that honours `Retry-After`
//! ([`Client::poll_until_done`]) and long polls strung together
//! ([`Client::wait_until_done`]), both riding out a busy or restarting api.

use std::time::Duration;

use longrun_shared::model::Operation;
use tokio::time::Instant;

use crate::client::{Client, Result};
use crate::error::ClientError;

/// How long in a row requests may fail transiently (unreachable, 503,
/// 429) before polling gives up with the last error.
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

/// The poll interval when the server advises none.
const DEFAULT_POLL: Duration = Duration::from_secs(1);

impl Client {
    /// Polls with `GET` until the operation is done, waiting between polls
    /// as long as the server's `Retry-After` says; `on_update` sees every
    /// state read. Unavailable (503) and rate-limited (429) answers are
    /// retried after their `Retry-After`; so is an api that stops answering
    /// after it first did (a restart), for up to a minute in a row.
    ///
    /// ```no_run
    /// # async fn demo(client: longrun_client::Client, id: &str) -> longrun_client::Result<()> {
    /// let done = client
    ///     .poll_until_done(id, |op| println!("{} {:.0}%", op.status, op.progress.percent))
    ///     .await?;
    /// println!("finished: {}", done.status);
    /// # Ok(()) }
    /// ```
    pub async fn poll_until_done(
        &self,
        id: &str,
        mut on_update: impl FnMut(&Operation),
    ) -> Result<Operation> {
        let mut retry = Retry::new(GIVE_UP_AFTER);
        loop {
            match self.get_with_retry_after(id).await {
                Ok((operation, retry_after)) => {
                    retry.succeeded();
                    on_update(&operation);
                    if operation.done {
                        return Ok(operation);
                    }
                    tokio::time::sleep(retry_after.unwrap_or(DEFAULT_POLL)).await;
                }
                Err(err) => match retry.delay(&err, Instant::now()) {
                    Some(delay) => tokio::time::sleep(delay).await,
                    None => return Err(err),
                },
            }
        }
    }

    /// Waits with long polls until the operation is done or `timeout`
    /// passed (`None`: no limit), and returns its state then: check
    /// [`Operation::done`] to tell the two apart. Transient failures are
    /// retried as in [`poll_until_done`](Self::poll_until_done).
    ///
    /// ```no_run
    /// # async fn demo(client: longrun_client::Client, id: &str) -> longrun_client::Result<()> {
    /// use std::time::Duration;
    ///
    /// let operation = client.wait_until_done(id, Some(Duration::from_secs(300))).await?;
    /// if !operation.done {
    ///     println!("still {} after 5 minutes", operation.status);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn wait_until_done(&self, id: &str, timeout: Option<Duration>) -> Result<Operation> {
        let deadline = timeout.map(|limit| Instant::now() + limit);
        let mut retry = Retry::new(GIVE_UP_AFTER);
        loop {
            let left = match deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(60),
            };
            match self.wait(id, left).await {
                Ok(operation) => {
                    retry.succeeded();
                    let out_of_time = deadline.is_some_and(|d| Instant::now() >= d);
                    if operation.done || out_of_time {
                        return Ok(operation);
                    }
                }
                Err(err) => match retry.delay(&err, Instant::now()) {
                    Some(delay) => {
                        let delay = match deadline {
                            Some(d) => delay.min(d.saturating_duration_since(Instant::now())),
                            None => delay,
                        };
                        tokio::time::sleep(delay).await;
                    }
                    None => return Err(err),
                },
            }
        }
    }
}

/// When to try a failed request again. Transient failures are retried
/// after the server's `Retry-After` (or an exponential backoff) until they
/// have lasted `give_up_after` in a row; an unreachable server is retried
/// only once it has answered before, so a wrong URL fails at once.
#[derive(Debug)]
pub(crate) struct Retry {
    give_up_after: Duration,
    reached: bool,
    failing_since: Option<Instant>,
    failures: u32,
}

impl Retry {
    pub(crate) fn new(give_up_after: Duration) -> Self {
        Retry {
            give_up_after,
            reached: false,
            failing_since: None,
            failures: 0,
        }
    }

    /// A request got through.
    pub(crate) fn succeeded(&mut self) {
        self.reached = true;
        self.failing_since = None;
        self.failures = 0;
    }

    /// How long to wait before trying again after `err`, or `None` to give up.
    pub(crate) fn delay(&mut self, err: &ClientError, now: Instant) -> Option<Duration> {
        if !err.is_transient() {
            return None;
        }
        if matches!(err, ClientError::Connection { .. }) && !self.reached {
            return None;
        }
        let since = *self.failing_since.get_or_insert(now);
        if now.duration_since(since) >= self.give_up_after {
            return None;
        }
        self.failures += 1;
        let delay = err
            .retry_after()
            .unwrap_or_else(|| backoff(self.failures))
            .max(Duration::from_millis(50));
        Some(delay)
    }
}

/// 100 ms doubling per failure, at most 2 s.
pub(crate) fn backoff(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(5);
    Duration::from_millis((100u64 << exponent).min(2_000))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::error_from_response;

    fn refused() -> ClientError {
        ClientError::Connection {
            url: "http://127.0.0.1:1".into(),
            message: "Connection refused".into(),
        }
    }

    #[test]
    fn an_unreachable_server_fails_at_once_until_it_has_answered() {
        let now = Instant::now();
        let mut retry = Retry::new(Duration::from_secs(60));
        assert_eq!(retry.delay(&refused(), now), None, "a wrong URL fails fast");
        retry.succeeded();
        assert_eq!(
            retry.delay(&refused(), now),
            Some(Duration::from_millis(100)),
            "a restart is ridden out"
        );
        assert_eq!(
            retry.delay(&refused(), now),
            Some(Duration::from_millis(200))
        );
    }

    #[test]
    fn retry_after_is_honoured_and_other_problems_are_not_retried() {
        let now = Instant::now();
        let mut retry = Retry::new(Duration::from_secs(60));
        let busy = error_from_response(503, Some("3"), b"");
        assert_eq!(retry.delay(&busy, now), Some(Duration::from_secs(3)));
        let limited = error_from_response(429, Some("0"), b"");
        assert_eq!(
            retry.delay(&limited, now),
            Some(Duration::from_millis(50)),
            "never a busy loop"
        );
        let missing = error_from_response(404, None, b"");
        assert_eq!(retry.delay(&missing, now), None);
        let expired = error_from_response(401, None, b"");
        assert_eq!(retry.delay(&expired, now), None);
    }

    #[test]
    fn failures_in_a_row_give_up_after_the_limit_and_a_success_resets_it() {
        let start = Instant::now();
        let mut retry = Retry::new(Duration::from_secs(10));
        let busy = error_from_response(503, None, b"");
        assert!(retry.delay(&busy, start).is_some());
        assert!(retry.delay(&busy, start + Duration::from_secs(9)).is_some());
        assert_eq!(retry.delay(&busy, start + Duration::from_secs(10)), None);
        retry.succeeded();
        assert!(
            retry
                .delay(&busy, start + Duration::from_secs(11))
                .is_some()
        );
    }

    #[test]
    fn backoff_doubles_up_to_two_seconds() {
        let delays: Vec<u64> = (1..=8).map(|n| backoff(n).as_millis() as u64).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 2000, 2000, 2000]);
    }
}
