//! Golden graphs: the exact ComfyUI graph each shipped template builds for
//! several parameter sets, kept in `tests/golden/<template>/<case>.json` as
//! `{"params": {...}, "graph": {...}}`.
//!
//! Run with `UPDATE_GOLDEN=1` to rewrite the files after an intended change,
//! then review the diff.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pack_runtime::{Runtime, RuntimeConfig, StaticHost};
use serde_json::{Value, json};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden")
}

/// The parameter sets every template is pinned with (seeds explicit, so graphs are exact).
fn cases(template: &str) -> Vec<(&'static str, Value)> {
    let mut cases = vec![
        ("defaults", json!({"prompt": "a brave knight", "seed": 42})),
        (
            "every-parameter",
            json!({
                "prompt": "an ancient relic", "negative_prompt": "blurry",
                "width": 640, "height": 384, "steps": 30, "cfg_scale": 7.5, "seed": 123456789,
                "sampler": "dpm++", "scheduler": "karras", "denoise": 0.8, "batch_size": 4,
                "checkpoint": "tiny-random-sd15.safetensors"
            }),
        ),
        (
            "small-fast",
            json!({"prompt": "moss", "width": 64, "height": 64, "steps": 2, "seed": 7, "sampler": "euler_ancestral", "scheduler": "simple"}),
        ),
    ];
    if template == "pixel-art" {
        cases.push((
            "large-target",
            json!({"prompt": "a slime", "width": 1536, "height": 512, "seed": 9}),
        ));
    }
    cases
}

#[test]
fn every_template_builds_its_golden_graphs() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let pack = rt
        .load_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates/game-assets.wasm"))
        .unwrap();
    let mut host = StaticHost::default();
    host.models.insert(
        "checkpoints".into(),
        vec![
            "tiny-random-sd15.safetensors".into(),
            "random-sd15-full.safetensors".into(),
        ],
    );
    let host = Arc::new(host);
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut checked = 0;
    // Text-to-image templates only: the image templates' graphs (image-variation, inpaint)
    // depend on an upload and are checked by the pack's own graph tests (plugins/, in CI).
    for template in pack
        .templates()
        .iter()
        .filter(|t| !t.params.iter().any(|p| p.kind.is_image()))
    {
        for (case, params) in cases(&template.id) {
            let built = pack
                .build(&template.id, params.as_object().unwrap(), host.clone())
                .unwrap_or_else(|e| panic!("{} / {case}: {e}", template.id));
            let path = golden_dir().join(&template.id).join(format!("{case}.json"));
            let actual = json!({"params": params, "graph": built.graph});
            if update {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, serde_json::to_string_pretty(&actual).unwrap() + "\n")
                    .unwrap();
            }
            let expected: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| {
                    panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display())
                }))
                .unwrap();
            assert_eq!(
                actual,
                expected,
                "{} differs from the golden file",
                path.display()
            );
            checked += 1;
        }
    }
    assert_eq!(
        checked, 13,
        "4 templates x 3 cases + pixel-art's large target"
    );
}
