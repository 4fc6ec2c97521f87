//! Hostile test pack `huge-output`: `build` of its one template, `huge-graph`, returns
//! a valid graph (EmptyImage -> SaveImage) whose `filename_prefix` is 6 MiB of `x`, so
//! the JSON is just over 6 MiB: above the host's 4 MiB output cap, yet small enough
//! to build well inside the 64 MiB memory cap (so the output cap is what refuses it).
//!
//! Everything about the graph is valid except its size: the host must refuse it by its
//! output-size cap, not by any other check.

use test_pack_support::{BuildError, Param, solid_color_graph};

/// Length of the padding prefix: 6 MiB.
const PADDING: usize = 6 << 20;

test_pack_support::single_template_pack! {
    template: ("huge-graph", "Huge Graph", "Returns a 6 MiB graph."),
    build: build,
}

fn build(_params: Vec<Param>) -> Result<String, BuildError> {
    Ok(solid_color_graph(64, 64, 0, &"x".repeat(PADDING)))
}
