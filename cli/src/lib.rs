//! `longrun`: the platform's services (`dev`, `api`, `worker`, `realtime`)
//! and its command-line client, in one binary. The binary is a thin
//! `main` over [`main`] here, so the end-to-end tests can build the same
//! program as a binary of their own.

mod args;
mod commands;
mod display;
mod failure;
mod services;
mod settings;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::args::{Cli, Command};
use crate::failure::{Failure, exit};

/// Runs the `longrun` command line with the process's arguments.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("longrun: cannot start the async runtime: {err}");
            return ExitCode::from(exit::CONNECTION);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("longrun: {failure}");
            ExitCode::from(failure.code)
        }
    }
}

async fn run(cli: Cli) -> Result<u8, Failure> {
    match cli.command {
        Command::Dev(args) => {
            longrun_shared::telemetry::init_tracing();
            services::dev(&args).await
        }
        Command::Api => {
            longrun_shared::telemetry::init_tracing();
            services::api().await
        }
        Command::Worker => {
            longrun_shared::telemetry::init_tracing();
            services::worker().await
        }
        Command::Realtime => {
            longrun_shared::telemetry::init_tracing();
            services::realtime().await
        }
        Command::Token(args) => commands::token(&args),
        Command::Start(args) => commands::start(&args).await,
        Command::Status(args) => commands::status(&args).await,
        Command::Watch(args) => commands::watch(&args).await,
        Command::Wait(args) => commands::wait(&args).await,
        Command::Cancel(args) => commands::cancel(&args).await,
        Command::Delete(args) => commands::delete(&args).await,
        Command::List(args) => commands::list(&args).await,
        Command::Events(args) => commands::events(&args).await,
        Command::Children(args) => commands::children(&args).await,
        Command::Kinds(args) => commands::kinds(&args).await,
        Command::Completions(args) => {
            clap_complete::generate(
                args.shell,
                &mut Cli::command(),
                "longrun",
                &mut std::io::stdout(),
            );
            Ok(exit::OK)
        }
    }
}
