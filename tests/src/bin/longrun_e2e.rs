//! The `longrun` program under test (the same code as the real binary).

fn main() -> std::process::ExitCode {
    longrun_cli::main()
}
