//! The `mxguard` binary: argument parsing, logging, signals; the work is in the library.

mod cli;

fn main() -> std::process::ExitCode {
    cli::run()
}
