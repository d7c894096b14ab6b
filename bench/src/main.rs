//! `longrun-bench`: longrun's benchmarks, side by side with the stack users
//! would build instead (bench/peers). Each scenario starts its own private
//! Redis and the target's services as separate processes, drives them over
//! loopback, prints one JSON line on stdout and a table on stderr, and
//! stops everything it started. `report` turns the JSON lines of a whole
//! run into docs/PERFORMANCE.md (see scripts/bench-compare).
//!
//! Build with `cargo build --release -p longrun -p longrun-bench`.

mod http_load;
mod platform;
mod proc;
mod redis_probe;
mod report;
mod scenario;
mod stats;
mod ws;

use clap::{Parser, Subcommand};

use platform::{Setup, Target};

#[derive(Debug, Parser)]
#[command(
    name = "longrun-bench",
    about = "Benchmarks longrun and the peer stack (Express + BullMQ + Socket.IO) with the same load."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    setup: Setup,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// C keep-alive HTTP clients starting demo.sleep for T seconds.
    Initiate(Targeted<scenario::initiate::Args>),
    /// N queued no-op jobs drained by W worker processes at concurrency K.
    Throughput(Targeted<scenario::throughput::Args>),
    /// A parent with N children: wall time, Redis memory, retention (longrun).
    Fanout(Targeted<scenario::fanout::Args>),
    /// C WebSocket clients following operations that emit progress.
    Stream(Targeted<scenario::stream::Args>),
    /// POST until the terminal event is seen on the WebSocket.
    E2e(Targeted<scenario::e2e::Args>),
    /// C WebSocket clients arriving at once, each replaying a whole log (longrun).
    Replay(scenario::replay::Args),
    /// redis-benchmark on the same Redis settings: the physical limit.
    Limit(scenario::limit::Args),
    /// Redis's own µs per operation for each of a job's transitions (create, claim, complete).
    Transitions(scenario::transitions::Args),
    /// BullMQ's queue-level benchmarks (bench/peers/queue-bench.mjs) on the same Redis settings.
    Bullmq(scenario::bullmq::Args),
    /// Minutes of mixed load (starts, cancels, fan-outs, 500 WebSocket clients); memory every minute.
    Soak(scenario::soak::Args),
    /// Writes the side-by-side markdown report from a run's JSON lines.
    Report(report::Args),
}

#[derive(Debug, clap::Args)]
struct Targeted<A: clap::Args> {
    /// The system to measure.
    #[arg(long, value_enum, default_value = "longrun")]
    target: Target,
    #[command(flatten)]
    args: A,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("longrun-bench: cannot start the runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("longrun-bench: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let setup = &cli.setup;
    let (name, target) = match &cli.command {
        Command::Initiate(t) => ("initiate", t.target),
        Command::Throughput(t) => ("throughput", t.target),
        Command::Fanout(t) => ("fanout", t.target),
        Command::Stream(t) => ("stream", t.target),
        Command::E2e(t) => ("e2e", t.target),
        Command::Limit(_) => ("limit", Target::Longrun),
        Command::Replay(_) => ("replay", Target::Longrun),
        Command::Transitions(_) => ("transitions", Target::Longrun),
        Command::Soak(_) => ("soak", Target::Longrun),
        Command::Report(args) => return report::write(args),
        Command::Bullmq(args) => return scenario::bullmq::run(setup, args),
    };
    let outcome = match &cli.command {
        Command::Initiate(t) => scenario::initiate::run(t.target, setup, &t.args).await,
        Command::Throughput(t) => scenario::throughput::run(t.target, setup, &t.args).await,
        Command::Fanout(t) => scenario::fanout::run(t.target, setup, &t.args).await,
        Command::Stream(t) => scenario::stream::run(t.target, setup, &t.args).await,
        Command::E2e(t) => scenario::e2e::run(t.target, setup, &t.args).await,
        Command::Limit(args) => scenario::limit::run(args).await,
        Command::Replay(args) => scenario::replay::run(setup, args).await,
        Command::Transitions(args) => scenario::transitions::run(args).await,
        Command::Soak(args) => scenario::soak::run(Target::Longrun, setup, args).await,
        Command::Report(_) | Command::Bullmq(_) => unreachable!("handled above"),
    };
    match outcome {
        Ok(report) => {
            report.print();
            Ok(())
        }
        Err(err) => {
            // A failed run is a result too: the report lists it.
            let line = serde_json::json!({
                "scenario": name,
                "target": target.as_str(),
                "error": format!("{err:#}"),
            });
            println!("{line}");
            Err(err)
        }
    }
}
