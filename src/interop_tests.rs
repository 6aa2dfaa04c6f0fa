//! What the unit tests that drive a real program share (the integration tests have the
//! same in `tests/common`): finding the program, or saying why the test does not run.

use std::path::PathBuf;

/// `program` in the usual system directories. When missing: a failure under
/// `MXGUARD_INTEROP=1` (CI must run the interop tests), otherwise `SKIP: ...` and `None`.
pub(crate) fn program(program: &str) -> Option<PathBuf> {
    let found = ["/usr/bin", "/usr/local/bin", "/usr/sbin", "/bin"]
        .iter()
        .map(|dir| PathBuf::from(dir).join(program))
        .find(|path| path.is_file());
    if found.is_none() {
        skip(&format!("{program} not installed"));
    }
    found
}

/// Says why a test does not run: a failure under `MXGUARD_INTEROP=1`, where everything
/// the tests drive must be there, otherwise `SKIP: why` on the real stderr (the test
/// harness shows nothing a passing test prints, so a `println!` here was never seen).
pub(crate) fn skip(why: &str) {
    assert_ne!(
        std::env::var("MXGUARD_INTEROP").as_deref(),
        Ok("1"),
        "MXGUARD_INTEROP=1 but {why}"
    );
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "SKIP: {why}");
}
