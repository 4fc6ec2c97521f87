//! Hostile test pack `huge-output`: `build` of its one template, `huge-graph`, returns
//! a valid graph (EmptyImage -> SaveImage) whose `filename_prefix` is 6 MiB of `x`, so
//! the JSON is just over 6 MiB: above the host's 4 MiB output cap, yet small enough
//! to build well inside the 64 MiB memory cap (so the output cap is what refuses it).
//!
//! Everything about the graph is valid except its size: the host must refuse it by its
//! output-size cap, not by any other check.

use test_pack_support::{
    BuildError, Guest, PackInfo, Param, TemplateInfo, pack_info, prompt_param, solid_color_graph,
    template,
};

/// Length of the padding prefix: 6 MiB.
const PADDING: usize = 6 << 20;

struct Pack;

impl Guest for Pack {
    fn info() -> PackInfo {
        pack_info!()
    }

    fn list() -> Vec<TemplateInfo> {
        vec![template(
            "huge-graph",
            "Huge Graph",
            "Returns a 6 MiB graph.",
            vec![prompt_param()],
        )]
    }

    fn build(id: String, _params: Vec<Param>) -> Result<String, BuildError> {
        if id != "huge-graph" {
            return Err(BuildError::UnknownTemplate(id));
        }
        Ok(solid_color_graph(64, 64, 0, &"x".repeat(PADDING)))
    }
}

test_pack_support::export!(Pack);
