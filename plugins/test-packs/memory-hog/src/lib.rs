//! Hostile test pack `memory-hog`: `build` of its one template, `eat-memory`, allocates
//! 1 MiB blocks, writes to every page of each and keeps them all, until allocation
//! fails.
//!
//! Without a host limit it grows linear memory to the 4 GiB wasm32 ceiling. With one,
//! `memory.grow` is refused, the allocator reports failure and the guest aborts (a
//! trap); the host must report the memory limit and stay up.

use test_pack_support::{BuildError, Param, hog_memory};

test_pack_support::single_template_pack! {
    template: ("eat-memory", "Eat Memory", "Allocates until memory runs out."),
    build: build,
}

fn build(_params: Vec<Param>) -> Result<String, BuildError> {
    hog_memory()
}
