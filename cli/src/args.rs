//! The command line: every command, flag and its help.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use longrun_shared::model::Status;

pub const EXIT_CODES: &str = "\
Exit codes:
  0  succeeded (or the command did what it was asked)
  1  the operation failed
  2  the operation was cancelled
  3  timed out waiting
  4  usage error (bad arguments or input)
  5  connection error (api, gateway or Redis unreachable)
  6  authentication error (missing, invalid or expired token)";

#[derive(Debug, Parser)]
#[command(
    name = "longrun",
    version,
    about = "Long-running operations with live progress: run the platform, start and follow operations.",
    after_help = EXIT_CODES,
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole platform in one process (api, worker, realtime), with
    /// its own redis-server when REDIS_URL is unset.
    Dev(DevArgs),
    /// Run the HTTP api alone.
    Api,
    /// Run a worker alone.
    Worker,
    /// Run the WebSocket gateway alone.
    Realtime,
    /// Mint a token with LONGRUN_JWT_SECRET.
    Token(TokenArgs),
    /// Start an operation and print its id.
    Start(StartArgs),
    /// Show an operation (polls with --watch, honouring Retry-After).
    Status(StatusArgs),
    /// Follow an operation live over the WebSocket.
    Watch(WatchArgs),
    /// Wait until an operation is done (long poll).
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
    /// Show the kinds that can be started, with their input schemas.
    Kinds(ClientArgs),
    /// Print a shell completion script.
    Completions(CompletionArgs),
}

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Don't print the ready-to-use token and export lines.
    #[arg(long)]
    pub quiet: bool,
}

/// Where the platform is and who you are; flags beat the environment, which
/// beats ~/.config/longrun/config.toml.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The api's base URL [env: LONGRUN_URL] [default: http://127.0.0.1:8080]
    #[arg(long)]
    pub url: Option<String>,
    /// The gateway's base URL [env: LONGRUN_WS_URL] [default: ws://127.0.0.1:8081]
    #[arg(long)]
    pub ws_url: Option<String>,
    /// Bearer token [env: LONGRUN_TOKEN]
    #[arg(long)]
    pub token: Option<String>,
    /// Config file [default: ~/.config/longrun/config.toml]
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Machine-readable JSON output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The owner (`sub`).
    #[arg(long)]
    pub sub: String,
    /// Roles, e.g. `admin` (repeat or comma-separate).
    #[arg(long, value_delimiter = ',')]
    pub roles: Vec<String>,
    /// Lifetime, e.g. `1h`, `30m`, `7d`.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// Print {"token": ...} instead of the bare token.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// The kind, `module.operation` (see `longrun kinds`).
    pub kind: String,
    /// The input: JSON text, `@file.json`, or `-` for stdin [default: {}]
    pub input: Option<String>,
    /// Follow it live once started.
    #[arg(long)]
    pub watch: bool,
    /// Repeat-safe key: a second start with it returns the first operation.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Attempts before failing for good.
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// Per-attempt time limit, e.g. `30s`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    /// Overall time limit across attempts, e.g. `10m`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub deadline: Option<Duration>,
    /// What a failed child does to the operation.
    #[arg(long, value_enum)]
    pub failure_policy: Option<PolicyArg>,
    /// With --watch: cancel the operation on Ctrl-C.
    #[arg(long)]
    pub cancel_on_interrupt: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PolicyArg {
    FailFast,
    WaitAll,
    IgnoreFailures,
}

#[derive(Debug, Args)]
pub struct IdArgs {
    /// Operation id.
    pub id: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    pub id: String,
    /// Poll until done (exit code tells the outcome).
    #[arg(long)]
    pub watch: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    pub id: String,
    /// Cancel the operation on Ctrl-C (by default Ctrl-C only stops watching).
    #[arg(long)]
    pub cancel_on_interrupt: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    pub id: String,
    /// Give up after this long (exit 3), e.g. `5m` [default: wait forever]
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this status.
    #[arg(long, value_parser = parse_status)]
    pub status: Option<Status>,
    /// Only this kind.
    #[arg(long)]
    pub kind: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Continue from a previous page's cursor.
    #[arg(long)]
    pub cursor: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

fn parse_status(value: &str) -> Result<Status, String> {
    value.parse()
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    pub id: String,
    /// Only events after this seq.
    #[arg(long, default_value_t = 0)]
    pub after_seq: u64,
    /// At most this many.
    #[arg(long, default_value_t = 1000)]
    pub limit: usize,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct ChildrenArgs {
    pub id: String,
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    #[arg(long)]
    pub cursor: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct CompletionArgs {
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}
