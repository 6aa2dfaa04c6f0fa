//! The `mxguard` binary: everything lives in the library's `cli` module.

fn main() -> std::process::ExitCode {
    mxguard::cli::run()
}
