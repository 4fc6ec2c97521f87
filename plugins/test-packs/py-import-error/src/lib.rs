//! Test pack `py-import-error`: `list` fails the way a componentize-py pack fails when
//! it imports a module inside a function (the pack has no files at run time): the
//! traceback ends in `ModuleNotFoundError: ...` ([`CAUSE`]), then the runtime panics.
//!
//! The host must name the exception in the load error (and `check` must show it).

use test_pack_support::TemplateInfo;

/// The exception line the host must report.
pub const CAUSE: &str = "ModuleNotFoundError: No module named 'textwrap'";

test_pack_support::pack! { list: list, build: test_pack_support::unknown_template }

fn list() -> Vec<TemplateInfo> {
    if std::hint::black_box(true) {
        eprintln!("Traceback (most recent call last):");
        eprintln!("  File \"/0/app.py\", line 88, in list");
        eprintln!("{CAUSE}");
        panic!("Python function threw an unexpected exception");
    }
    Vec::new()
}
