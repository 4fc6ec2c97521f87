//! The runtime against real packs built from `plugins/`: the shipped pack
//! and the hostile test packs. After every failure the runtime must still
//! serve the shipped pack.

mod common;

use common::{args, host, repo, test_pack};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pack_runtime::{CallError, Limits, LoadError, Pack, Runtime, RuntimeConfig, StaticHost};
use serde_json::{Map, json};

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig::default()).expect("engine")
}

fn shipped(rt: &Runtime) -> Pack {
    rt.load_file(&repo().join("templates/game-assets.wasm"))
        .expect("shipped pack loads")
}

/// The shipped pack still answers after a hostile call.
fn assert_still_serving(rt: &Runtime) {
    let pack = shipped(rt);
    let built = pack
        .build(
            "item-icon",
            &args(json!({"prompt": "a sword", "seed": 1})),
            host(),
        )
        .expect("shipped pack still builds");
    assert!(built.graph.as_object().unwrap().len() >= 7);
}

fn load_and_build(rt: &Runtime, name: &str) -> Result<(), CallError> {
    let pack = rt.load_file(&test_pack(name)).expect("hostile pack loads");
    let template = pack.templates()[0].id.clone();
    pack.build(&template, &Map::new(), host()).map(|_| ())
}

#[test]
fn shipped_pack_describes_itself() {
    let rt = runtime();
    let pack = shipped(&rt);
    assert_eq!(pack.info().name, "game-assets");
    let ids: Vec<_> = pack.templates().iter().map(|t| t.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "character-portrait",
            "item-icon",
            "environment-texture",
            "pixel-art",
            "image-variation",
            "inpaint"
        ]
    );
    let sizes: Vec<_> = pack
        .templates()
        .iter()
        .map(|t| (t.default_width, t.default_height))
        .collect();
    assert_eq!(
        sizes,
        [
            (512, 512),
            (512, 512),
            (1024, 1024),
            (256, 256),
            (512, 512),
            (512, 512)
        ]
    );
    assert_eq!(pack.sha256().len(), 64);
}

#[test]
fn endless_loop_hits_the_time_limit_and_the_runtime_goes_on() {
    let rt = runtime();
    let started = Instant::now();
    let err = load_and_build(&rt, "endless-loop").unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(err, CallError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("time limit of 2000ms"), "{err}");
    // Generous bounds: it must stop near the limit, not run on for ever.
    assert!(
        elapsed >= Duration::from_millis(1900) && elapsed < Duration::from_secs(30),
        "{elapsed:?}"
    );
    assert_still_serving(&rt);
}

#[test]
fn a_short_time_limit_is_honoured() {
    let rt = Runtime::new(RuntimeConfig {
        limits: Limits {
            call_timeout: Duration::from_millis(200),
            ..Limits::default()
        },
        cache_dir: None,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let err = load_and_build(&rt, "endless-loop").unwrap_err();
    assert!(err.to_string().contains("time limit of 200ms"), "{err}");
}

#[test]
fn memory_grab_fails_at_the_cap() {
    let rt = runtime();
    let err = load_and_build(&rt, "memory-hog").unwrap_err();
    assert!(
        matches!(err, CallError::MemoryLimit { limit_bytes } if limit_bytes == 64 << 20),
        "{err}"
    );
    assert_eq!(err.to_string(), "pack exceeded its memory limit of 64 MiB");
    assert_still_serving(&rt);
}

#[test]
fn panic_fails_cleanly_with_its_message() {
    let rt = runtime();
    let err = load_and_build(&rt, "panicker").unwrap_err();
    assert!(matches!(err, CallError::Trap { .. }), "{err}");
    assert!(err.to_string().contains("deliberate panic"), "{err}");
    assert_still_serving(&rt);
}

#[test]
fn oversized_output_is_refused() {
    let rt = runtime();
    let err = load_and_build(&rt, "huge-output").unwrap_err();
    assert!(
        matches!(err, CallError::OutputTooLarge { limit, .. } if limit == 4 << 20),
        "{err}"
    );
    assert_still_serving(&rt);
}

#[test]
fn wasi_grants_nothing() {
    let rt = runtime();
    let err = load_and_build(&rt, "wasi-snoop").unwrap_err();
    assert_eq!(
        err.to_string(),
        "template failed: wasi-snoop: passwd=denied root=denied cwd=denied write=denied env=0 args=0 tcp=denied"
    );
    assert_still_serving(&rt);
}

#[test]
fn log_flood_is_capped_and_the_call_succeeds() {
    let rt = runtime();
    load_and_build(&rt, "noisy-logger").expect("noisy logger still returns its graph");
}

#[test]
fn corrupt_and_foreign_files_get_clear_load_errors() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt.wasm");
    let mut bytes = std::fs::read(repo().join("templates/game-assets.wasm")).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&corrupt, &bytes).unwrap();
    let err = rt.load_file(&corrupt).unwrap_err();
    assert!(
        matches!(err, LoadError::Invalid { .. } | LoadError::Compile { .. }),
        "{err}"
    );
    assert!(
        err.to_string().starts_with(&corrupt.display().to_string()),
        "{err}"
    );

    let text = dir.path().join("notes.wasm");
    std::fs::write(&text, "hello").unwrap();
    let err = rt.load_file(&text).unwrap_err().to_string();
    assert!(err.contains("no WebAssembly component header"), "{err}");

    let missing = rt
        .load_file(&dir.path().join("absent.wasm"))
        .unwrap_err()
        .to_string();
    assert!(missing.contains("cannot read pack"), "{missing}");
    assert_still_serving(&rt);
}

#[test]
fn an_unserved_abi_major_is_refused_naming_it_and_the_served_ones() {
    let rt = runtime();
    let err = rt.load_file(&test_pack("abi3")).unwrap_err();
    assert!(matches!(err, LoadError::Incompatible { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("comfyui:workflow@3.0.0") && text.contains("supported: 1.x, 2.x"),
        "{text}"
    );
    assert_still_serving(&rt);
}

#[test]
fn compile_cache_makes_the_second_load_identical_and_skips_compiling() {
    let dir = tempfile::tempdir().unwrap();
    let config = RuntimeConfig {
        limits: Limits::default(),
        cache_dir: Some(dir.path().to_owned()),
        ..RuntimeConfig::default()
    };
    let first = Runtime::new(config.clone()).unwrap();
    let a = shipped(&first);
    let entries: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension() == Some("cwasm".as_ref()))
        .collect();
    assert_eq!(entries.len(), 1, "one artifact cached");
    let second = Runtime::new(config).unwrap();
    let b = shipped(&second);
    assert_eq!(a.info(), b.info());
    assert_eq!(a.templates(), b.templates());
    let p = args(json!({"prompt": "x", "seed": 5}));
    assert_eq!(
        a.build("pixel-art", &p, host()).unwrap().graph,
        b.build("pixel-art", &p, host()).unwrap().graph
    );
}

#[test]
fn parameter_errors_come_from_the_host_before_the_pack_runs() {
    let rt = runtime();
    let pack = shipped(&rt);
    let err = pack
        .build(
            "item-icon",
            &args(json!({"prompt": "x", "steps": 0, "width": 513, "sampler": "fancy", "bogus": 1})),
            host(),
        )
        .unwrap_err();
    let text = err.to_string();
    for needle in [
        "bogus: unknown parameter",
        "steps: 0 is out of range: must be between 1 and 150",
        "width: 513 is not a multiple of 8",
        "sampler: `fancy` is not a valid choice",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in {text}");
    }
    let unknown = pack
        .build("nope", &Map::new(), host())
        .unwrap_err()
        .to_string();
    assert!(
        unknown.contains("unknown template `nope`; available: character-portrait, item-icon"),
        "{unknown}"
    );
}

#[test]
fn missing_checkpoint_is_a_clear_error() {
    let rt = runtime();
    let pack = shipped(&rt);
    let err = pack
        .build(
            "item-icon",
            &args(json!({"prompt": "x"})),
            Arc::new(StaticHost::default()),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("no checkpoint installed"), "{err}");
}

#[test]
fn seed_is_concrete_and_reported() {
    let rt = runtime();
    let pack = shipped(&rt);
    let built = pack
        .build(
            "character-portrait",
            &args(json!({"prompt": "x", "seed": -1})),
            host(),
        )
        .unwrap();
    let seed = built.params.seed().unwrap();
    assert!(seed >= 0);
    let ksampler = built
        .graph
        .as_object()
        .unwrap()
        .values()
        .find(|n| n["class_type"] == "KSampler")
        .unwrap();
    assert_eq!(ksampler["inputs"]["seed"], json!(seed));
}
