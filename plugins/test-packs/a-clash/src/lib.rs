//! Test pack `a-clash` (pack name `a-clash-pack`): valid, and like `clash` its one
//! template's id is `item-icon`, the same as a game-assets template; its file name
//! (`a-clash.wasm`) sorts before both `clash.wasm` and `game-assets.wasm`. Which pack
//! serves a clashing id must not depend on file-name order. `build` returns a tiny valid
//! graph (EmptyImage -> SaveImage, prefix `comfyui-mcp/a-clash-item-icon`).

use test_pack_support::{
    BuildError, Guest, PackInfo, Param, TemplateInfo, pack_info, prompt_param, solid_color_graph,
    template,
};

struct Pack;

impl Guest for Pack {
    fn info() -> PackInfo {
        pack_info!("a-clash-pack")
    }

    fn list() -> Vec<TemplateInfo> {
        vec![template(
            "item-icon",
            "Early Clashing Item Icon",
            "Same id as game-assets' item-icon, from a file name that sorts first.",
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
            0x00_00_ff,
            "comfyui-mcp/a-clash-item-icon",
        ))
    }
}

test_pack_support::export!(Pack);
