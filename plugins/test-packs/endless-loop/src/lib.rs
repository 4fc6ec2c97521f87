//! Hostile test pack `endless-loop`: `info` and `list` behave; `build` of its one
//! template, `loop-forever`, spins forever without touching memory or calling the host.
//!
//! The host must stop it with its time limit (epoch interruption) and report a timeout.
//! `black_box` keeps the optimiser from proving the loop endless or removing it.

use test_pack_support::{BuildError, Param};

test_pack_support::single_template_pack! {
    template: ("loop-forever", "Loop Forever", "Never returns from build."),
    build: build,
}

fn build(_params: Vec<Param>) -> Result<String, BuildError> {
    let mut spins: u64 = 0;
    while std::hint::black_box(true) {
        spins = std::hint::black_box(spins.wrapping_add(1));
    }
    Err(BuildError::Failed(format!(
        "the endless loop ended after {spins} spins"
    )))
}
