//! The `mxguard` binary: argument parsing, logging, signals; the work is in the library.

mod cli;

/// Per-thread caches suit a gateway's many small allocations that are freed on another
/// thread (a session's buffers, relay jobs) better than glibc's arenas.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::run()
}
