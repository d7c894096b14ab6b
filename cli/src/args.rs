//! The command line: every command, flag and its help.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use longrun_client::{BackoffKind, FailurePolicy, Status};

/// The end of `longrun --help`: exit codes and where settings come from.
pub const AFTER_HELP: &str = "\
Exit codes:
  0    succeeded (or the command did what it was asked)
  1    the operation failed
  2    the operation was cancelled
  3    timed out waiting (wait --timeout)
  4    usage error: bad arguments or input, unknown id or kind, conflict
  5    connection error: api or gateway unreachable, unavailable or busy
  6    authentication error: missing, invalid or expired token
  130  interrupted (Ctrl-C while watching; the operation keeps running)

Settings, first found wins:
  flags (--url, --ws-url, --token)
  environment (LONGRUN_URL, LONGRUN_WS_URL, LONGRUN_TOKEN)
  config file (--config, default ~/.config/longrun/config.toml)
  defaults (http://127.0.0.1:8080, ws://127.0.0.1:8081)
`longrun config` shows what is in effect. `longrun dev` prints the export lines.";

#[derive(Debug, Parser)]
#[command(
    name = "longrun",
    version,
    about = "Long-running operations with live progress: run the platform, start and follow operations.",
    after_help = AFTER_HELP,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the platform is, who you are and how to print; accepted by every
/// command, before or after its name.
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalArgs {
    /// The api's base URL [env: LONGRUN_URL] [default: http://127.0.0.1:8080]
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<String>,
    /// The gateway's base URL [env: LONGRUN_WS_URL] [default: ws://127.0.0.1:8081]
    #[arg(long, global = true, value_name = "URL")]
    pub ws_url: Option<String>,
    /// Bearer token [env: LONGRUN_TOKEN]
    #[arg(long, global = true, value_name = "JWT")]
    pub token: Option<String>,
    /// Config file [default: ~/.config/longrun/config.toml]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Machine-readable output: one JSON document, or NDJSON while following.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole platform in one process (api, worker, gateway), with
    /// its own redis-server when REDIS_URL is unset.
    Dev(DevArgs),
    /// Run the HTTP api alone.
    Api(ServiceArgs),
    /// Run a worker alone.
    Worker(ServiceArgs),
    /// Run the WebSocket gateway alone.
    Realtime(ServiceArgs),
    /// Mint a token with LONGRUN_JWT_SECRET.
    Token(TokenArgs),
    /// Show the settings in effect and where each comes from.
    Config,
    /// Start an operation and print its id (--watch to follow it).
    Start(StartArgs),
    /// Show an operation (--watch polls until it is done, honouring Retry-After).
    Status(StatusArgs),
    /// Follow an operation live over the WebSocket until it is done.
    Watch(WatchArgs),
    /// Wait until an operation is done (long polls); the exit code tells the outcome.
    Wait(WaitArgs),
    /// Cancel an operation and its children.
    Cancel(IdArgs),
    /// Delete a finished operation, its children and its log.
    Delete(IdArgs),
    /// List your operations, newest first.
    List(ListArgs),
    /// Show an operation's event log.
    Events(EventsArgs),
    /// List an operation's children.
    Children(ChildrenArgs),
    /// Show the kinds that can be started, with their inputs.
    Kinds(KindsArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(CompletionArgs),
    /// Exit 0 when URL answers 2xx within 2 s, else 1 (container health checks;
    /// the runtime image has no shell or curl).
    #[command(hide = true)]
    Healthcheck(HealthcheckArgs),
}

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Don't print the banner with the export lines.
    #[arg(long)]
    pub quiet: bool,
}

/// Flags of `longrun api`, `worker` and `realtime`.
#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// Refuse to start when Redis may lose operations (an evicting
    /// maxmemory-policy, or no persistence) instead of warning [env: LONGRUN_STRICT]
    #[arg(long)]
    pub strict: bool,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The owner (`sub`): who the token acts as.
    #[arg(long)]
    pub sub: String,
    /// Roles, e.g. `admin` (repeat or comma-separate).
    #[arg(long, value_delimiter = ',')]
    pub roles: Vec<String>,
    /// Lifetime, e.g. `90s`, `30m`, `1h`, `7d`.
    #[arg(long, default_value = "24h", value_parser = parse_ttl)]
    pub ttl: Duration,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// The kind, `module.operation` (see `longrun kinds`).
    pub kind: String,
    /// The input: JSON text, `@file.json`, or `-` for stdin [default: {}]
    pub input: Option<String>,
    /// Follow it live once started; the exit code tells the outcome.
    #[arg(long)]
    pub watch: bool,
    /// With --watch: cancel the operation on Ctrl-C.
    #[arg(long, requires = "watch")]
    pub cancel_on_interrupt: bool,
    /// Repeat-safe key: a second start with it returns the first operation.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    /// Attempts before failing for good.
    #[arg(long, value_name = "N")]
    pub max_attempts: Option<u32>,
    /// Per-attempt time limit, e.g. `30s`.
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub timeout: Option<Duration>,
    /// Overall time limit across attempts, e.g. `10m`.
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub deadline: Option<Duration>,
    /// How retries are spaced.
    #[arg(long, value_enum)]
    pub backoff: Option<BackoffArg>,
    /// First retry delay, e.g. `500ms`.
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub backoff_base: Option<Duration>,
    /// Longest retry delay, e.g. `1m`.
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub backoff_max: Option<Duration>,
    /// What a failed child does to the operation.
    #[arg(long, value_enum)]
    pub failure_policy: Option<PolicyArg>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PolicyArg {
    /// The first failed child cancels the rest and fails the parent.
    FailFast,
    /// The parent fails once every child finished, if any failed.
    WaitAll,
    /// The parent succeeds whatever its children did.
    IgnoreFailures,
}

impl From<PolicyArg> for FailurePolicy {
    fn from(policy: PolicyArg) -> Self {
        match policy {
            PolicyArg::FailFast => FailurePolicy::FailFast,
            PolicyArg::WaitAll => FailurePolicy::WaitAll,
            PolicyArg::IgnoreFailures => FailurePolicy::IgnoreFailures,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BackoffArg {
    /// The same delay every time.
    Fixed,
    /// Doubling delays, capped, with jitter.
    Exponential,
}

impl From<BackoffArg> for BackoffKind {
    fn from(backoff: BackoffArg) -> Self {
        match backoff {
            BackoffArg::Fixed => BackoffKind::Fixed,
            BackoffArg::Exponential => BackoffKind::Exponential,
        }
    }
}

#[derive(Debug, Args)]
pub struct IdArgs {
    /// Operation id.
    pub id: String,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Operation id.
    pub id: String,
    /// Poll until done (the exit code tells the outcome).
    #[arg(long)]
    pub watch: bool,
    /// With --watch: cancel the operation on Ctrl-C.
    #[arg(long, requires = "watch")]
    pub cancel_on_interrupt: bool,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Operation id.
    pub id: String,
    /// Cancel the operation on Ctrl-C (by default Ctrl-C only stops watching).
    #[arg(long)]
    pub cancel_on_interrupt: bool,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Operation id.
    pub id: String,
    /// Give up after this long (exit 3), e.g. `90s`, `5m` [default: wait forever]
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this status (queued, running, succeeded, failed, cancelled).
    #[arg(long, value_parser = parse_status)]
    pub status: Option<Status>,
    /// Only this kind.
    #[arg(long)]
    pub kind: Option<String>,
    /// Admins only: another owner's operations [default: everyone's for admins]
    #[arg(long)]
    pub owner: Option<String>,
    /// At most this many (1 to 1000).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub limit: u16,
    /// Continue from a previous page's cursor.
    #[arg(long)]
    pub cursor: Option<String>,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Operation id.
    pub id: String,
    /// Only events after this seq.
    #[arg(long, default_value_t = 0, value_name = "SEQ")]
    pub after_seq: u64,
    /// At most this many [default: all]
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub limit: Option<u16>,
}

#[derive(Debug, Args)]
pub struct ChildrenArgs {
    /// Operation id of the parent.
    pub id: String,
    /// At most this many (1 to 1000).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub limit: u16,
    /// Continue from a previous page's cursor.
    #[arg(long)]
    pub cursor: Option<String>,
}

#[derive(Debug, Args)]
pub struct KindsArgs {
    /// Show only this kind, with its whole input schema.
    pub kind: Option<String>,
}

#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

fn parse_status(value: &str) -> Result<Status, String> {
    value.parse()
}

fn parse_ttl(value: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(value).map_err(|err| err.to_string())?;
    if ttl < Duration::from_secs(1) {
        return Err("a token must live at least 1s".into());
    }
    if ttl > Duration::from_secs(366 * 86_400) {
        return Err("a token may live at most a year (366d)".into());
    }
    Ok(ttl)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_before_or_after_the_command() {
        let before = Cli::try_parse_from(["longrun", "--json", "--url", "http://a", "list"])
            .expect("parses");
        let after = Cli::try_parse_from(["longrun", "list", "--json", "--url", "http://a"])
            .expect("parses");
        for cli in [before, after] {
            assert!(cli.global.json);
            assert_eq!(cli.global.url.as_deref(), Some("http://a"));
        }
    }

    #[test]
    fn token_lifetimes_are_bounded() {
        assert_eq!(parse_ttl("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("2y").is_err());
        assert!(parse_ttl("soon").is_err());
    }

    #[test]
    fn help_documents_every_exit_code() {
        let help = Cli::command().render_long_help().to_string();
        for code in ["0 ", "1 ", "2 ", "3 ", "4 ", "5 ", "6 ", "130 "] {
            assert!(
                help.contains(&format!("\n  {code}")),
                "exit {code} in {help}"
            );
        }
    }
}

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// An http:// URL, e.g. http://127.0.0.1:8080/readyz
    pub url: String,
}
