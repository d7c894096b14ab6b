//! The `longrun` binary; everything is in the library (`longrun_cli`).

fn main() -> std::process::ExitCode {
    longrun_cli::main()
}
