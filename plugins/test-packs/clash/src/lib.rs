//! Test pack `clash` (pack name `clash-pack`): valid, but its one template's id is
//! `item-icon`, the same as a game-assets template. Loaded beside game-assets, the host
//! must detect and report the id clash. `build` returns a tiny valid graph
//! (EmptyImage -> SaveImage, prefix `comfyui-mcp/clash-item-icon`).

test_pack_support::item_icon_clash_pack! {
    "Clashing Item Icon", 0xff_00_00,
    "Same id as game-assets' item-icon, to test clash detection."
}
