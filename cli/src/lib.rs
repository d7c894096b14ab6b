//! `longrun`: the platform's services (`dev`, `api`, `worker`, `realtime`)
//! and its command-line client, in one binary. The binary is a thin
//! `main` over [`main`] here, so the end-to-end tests can build the same
//! program as a binary of their own.

#[macro_use]
mod output;
mod args;
mod commands;
mod credentials;
mod display;
mod failure;
mod render;
mod services;
mod settings;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::args::{Cli, Command, GlobalArgs};
use crate::commands::{Outcome, config, manage, show, start, token, wait};
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
            note!("longrun: cannot start the async runtime: {err}");
            return ExitCode::from(exit::CONNECTION);
        }
    };
    let code = match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(failure) => {
            note!("longrun: {failure}");
            failure.code
        }
    };
    // Don't wait for blocking reads (stdin) that will never finish.
    runtime.shutdown_background();
    ExitCode::from(code)
}

async fn run(cli: Cli) -> Outcome {
    let global = cli.global;
    match cli.command {
        Command::Dev(args) => {
            longrun_shared::telemetry::init_tracing();
            services::dev(&args, global.json).await
        }
        Command::Api(args) => {
            longrun_shared::telemetry::init_tracing();
            services::api(&args).await
        }
        Command::Worker(args) => {
            longrun_shared::telemetry::init_tracing();
            services::worker(&args).await
        }
        Command::Realtime(args) => {
            longrun_shared::telemetry::init_tracing();
            services::realtime(&args).await
        }
        Command::Token(args) => token::token(&args, global.json),
        Command::Completions(args) => {
            clap_complete::generate(
                args.shell,
                &mut Cli::command(),
                "longrun",
                &mut std::io::stdout(),
            );
            Ok(exit::OK)
        }
        Command::Config => config::show(&settings(&global)?, global.json),
        Command::Healthcheck(args) => Ok(services::healthcheck(&args.url).await),
        command => client_command(&global, command).await,
    }
}

fn settings(global: &GlobalArgs) -> Result<settings::Settings, Failure> {
    settings::resolve(global, |name| std::env::var(name).ok())
}

/// The commands that talk to a platform: one context, and a refused token
/// explained with what is known about it.
async fn client_command(global: &GlobalArgs, command: Command) -> Outcome {
    let ctx = settings(global)?.context(global.json)?;
    let outcome = match command {
        Command::Start(args) => start::start(&ctx, &args).await,
        Command::Status(args) => show::status(&ctx, &args).await,
        Command::Watch(args) => commands::follow::watch(&ctx, &args).await,
        Command::Wait(args) => wait::wait(&ctx, &args).await,
        Command::Cancel(args) => manage::cancel(&ctx, &args).await,
        Command::Delete(args) => manage::delete(&ctx, &args).await,
        Command::List(args) => show::list(&ctx, &args).await,
        Command::Events(args) => show::events(&ctx, &args).await,
        Command::Children(args) => show::children(&ctx, &args).await,
        Command::Kinds(args) => show::kinds(&ctx, &args).await,
        Command::Dev(_)
        | Command::Api(_)
        | Command::Worker(_)
        | Command::Realtime(_)
        | Command::Token(_)
        | Command::Config
        | Command::Healthcheck(_)
        | Command::Completions(_) => Ok(exit::OK),
    };
    outcome.map_err(|failure| failure.explain_token(ctx.token.as_ref()))
}
