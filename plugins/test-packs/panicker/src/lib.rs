//! Hostile test pack `panicker`: `build` of its one template, `panic-now`, panics with
//! the message `panicker: deliberate panic in build`.
//!
//! Packs are built with `panic = "abort"`: the panic hook writes the message to stderr
//! (which the host captures) and the guest traps. The host must turn that into one
//! failed call and keep serving.

use test_pack_support::{BuildError, Param};

test_pack_support::single_template_pack! {
    template: ("panic-now", "Panic Now", "Panics in build."),
    build: build,
}

fn build(_params: Vec<Param>) -> Result<String, BuildError> {
    if std::hint::black_box(true) {
        panic!("panicker: deliberate panic in build");
    }
    Err(BuildError::Failed("unreachable".to_string()))
}
