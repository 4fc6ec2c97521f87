//! Hostile test pack `slow-loader`: [`TEMPLATES`] templates (`slow-00` ...), each of
//! which sleeps [`BUILD_SLEEP_MS`] in `build` before returning a tiny valid graph.
//!
//! Every build stays under the default call limit (2 s), but a whole load (the self-test
//! builds every template) takes about `TEMPLATES x BUILD_SLEEP_MS` = 6 s. The host must
//! bound the whole load, keep answering `initialize` and serve other packs meanwhile.
//! It sleeps (a WASI monotonic-clock wait) rather than spinning, so tests using it do
//! not steal the machine's cores.

use std::time::Duration;

use test_pack_support::{
    BuildError, Param, TemplateInfo, numbered_templates, prompt_template, solid_color_graph,
};

/// Number of templates.
const TEMPLATES: usize = 40;
/// Time each build waits.
const BUILD_SLEEP_MS: u64 = 150;

fn id(i: usize) -> String {
    format!("slow-{i:02}")
}

test_pack_support::pack! { list: list, build: build }

fn list() -> Vec<TemplateInfo> {
    numbered_templates(TEMPLATES, |i| {
        prompt_template(
            &id(i),
            &format!("Slow {i}"),
            "Sleeps before building a tiny graph.",
        )
    })
}

fn build(template_id: String, _params: Vec<Param>) -> Result<String, BuildError> {
    if !(0..TEMPLATES).any(|i| id(i) == template_id) {
        return Err(BuildError::UnknownTemplate(template_id));
    }
    std::thread::sleep(Duration::from_millis(BUILD_SLEEP_MS));
    Ok(solid_color_graph(
        64,
        64,
        0x00_80_00,
        "comfyui-mcp/slow-loader",
    ))
}
