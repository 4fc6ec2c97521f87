//! The template-author commands, run as a user would: `comfyui-mcp templates`
//! and `comfyui-mcp check PACK.wasm`, on the shipped pack and the test packs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(args: &[&str]) -> Output {
    let cache = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_comfyui-mcp"))
        .args(args)
        .current_dir(repo())
        .env("COMFYUI_MCP_CACHE_DIR", cache.path())
        .env_remove("COMFYUI_TEMPLATES_DIR")
        .output()
        .expect("runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn templates_lists_every_template_with_its_parameters() {
    let out = run(&["templates"]);
    assert!(out.status.success());
    let text = stdout(&out);
    for id in [
        "character-portrait  (512x512",
        "item-icon  (512x512",
        "environment-texture  (1024x1024",
        "pixel-art  (256x256",
    ] {
        assert!(text.contains(id), "missing {id:?} in\n{text}");
    }
    assert!(
        text.contains("steps: integer, default 20, 1..150"),
        "{text}"
    );
    assert!(text.contains("aliases dpm++=dpmpp_2m"), "{text}");
    assert!(!text.contains("ERROR"), "{text}");
}

#[test]
fn check_passes_the_shipped_pack() {
    let out = run(&["check", "templates/game-assets.wasm"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("pack game-assets 2.0.0"), "{text}");
    assert_eq!(text.matches("\nok    ").count(), 6, "{text}");
    assert!(text.contains("all templates passed"), "{text}");
}

#[test]
fn check_fails_broken_packs_with_the_reason() {
    let abi = run(&["check", "tests/packs/abi3.wasm"]);
    assert_eq!(abi.status.code(), Some(1));
    assert!(
        stdout(&abi).contains("built against comfyui:workflow@3.0.0")
            && stdout(&abi).contains("supported: 1.x, 2.x"),
        "{}",
        stdout(&abi)
    );

    let panics = run(&["check", "tests/packs/panicker.wasm"]);
    assert_eq!(panics.status.code(), Some(1));
    let text = stdout(&panics);
    assert!(
        text.contains("FAIL  panic-now") && text.contains("deliberate panic"),
        "{text}"
    );
    assert!(text.contains("some templates failed"), "{text}");

    let missing = run(&["check", "tests/packs/absent.wasm"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stdout(&missing).contains("cannot read pack"),
        "{}",
        stdout(&missing)
    );
}
