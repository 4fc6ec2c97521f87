//! Test pack `py-traceback`: its template `crash` fails the way an uncaught exception
//! fails in a componentize-py pack. CPython prints the traceback to stderr, ending in
//! the exception (`ValueError: ...`); then componentize-py's runtime panics
//! (`Python function threw an unexpected exception`) and the component traps.
//!
//! The host must name the exception ([`CAUSE`]) in the user-visible error, not only
//! the runtime's panic, which says nothing about the cause.

use test_pack_support::{BuildError, Param};

/// The exception line the host must report.
pub const CAUSE: &str = "ValueError: width must be a multiple of 8, got 500";

test_pack_support::single_template_pack! {
    template: ("crash", "Crash", "Raises an uncaught ValueError in build, like a Python pack."),
    build: build,
}

fn build(_params: Vec<Param>) -> Result<String, BuildError> {
    if std::hint::black_box(true) {
        eprintln!("Traceback (most recent call last):");
        eprintln!("  File \"/0/app.py\", line 103, in build");
        eprintln!("  File \"/0/app.py\", line 46, in make_latent");
        eprintln!("{CAUSE}");
        panic!("Python function threw an unexpected exception");
    }
    Err(BuildError::Failed("unreachable".to_string()))
}
