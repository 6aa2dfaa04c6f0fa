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
        assert_ne!(
            std::env::var("MXGUARD_INTEROP").as_deref(),
            Ok("1"),
            "MXGUARD_INTEROP=1 but {program} is not installed"
        );
        println!("SKIP: {program} not installed");
    }
    found
}
