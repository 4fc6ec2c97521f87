//! Test pack `clash` (pack name `clash-pack`): valid, but its one template's id is
//! `item-icon`, the same as a game-assets template. Loaded beside game-assets, the host
//! must detect and report the id clash. `build` returns a tiny valid graph
//! (EmptyImage -> SaveImage, prefix `comfyui-mcp/clash-item-icon`).

use test_pack_support::{
    BuildError, Guest, PackInfo, Param, TemplateInfo, pack_info, prompt_param, solid_color_graph,
    template,
};

struct Pack;

impl Guest for Pack {
    fn info() -> PackInfo {
        pack_info!("clash-pack")
    }

    fn list() -> Vec<TemplateInfo> {
        vec![template(
            "item-icon",
            "Clashing Item Icon",
            "Same id as game-assets' item-icon, to test clash detection.",
            vec![prompt_param()],
        )]
    }

    fn build(id: String, _params: Vec<Param>) -> Result<String, BuildError> {
        if id != "item-icon" {
            return Err(BuildError::UnknownTemplate(id));
        }
        Ok(solid_color_graph(
            64,
            64,
            0xff_00_00,
            "comfyui-mcp/clash-item-icon",
        ))
    }
}

test_pack_support::export!(Pack);
