//! Test pack `a-clash` (pack name `a-clash-pack`): valid, and like `clash` its one
//! template's id is `item-icon`, the same as a game-assets template; its file name
//! (`a-clash.wasm`) sorts before both `clash.wasm` and `game-assets.wasm`. Which pack
//! serves a clashing id must not depend on file-name order. `build` returns a tiny valid
//! graph (EmptyImage -> SaveImage, prefix `comfyui-mcp/a-clash-item-icon`).

test_pack_support::item_icon_clash_pack! {
    "Early Clashing Item Icon", 0x00_00_ff,
    "Same id as game-assets' item-icon, from a file name that sorts first."
}
