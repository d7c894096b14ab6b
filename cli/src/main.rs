//! The `longrun` binary; everything is in the library (`longrun_cli`).

/// mimalloc instead of the system allocator: the services allocate many
/// small, short-lived buffers per request and per event, where glibc's
/// malloc showed up as a tenth of the api's profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    longrun_cli::main()
}
