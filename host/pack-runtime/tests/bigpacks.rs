//! Packs the size and shape of componentized interpreters (Python, JavaScript):
//! imports the host does not link are refused before compiling, with the fix;
//! the exception an interpreter printed reaches the user's error; big packs are
//! compiled by Winch and keep every sandbox limit there; a call reports what it
//! cost.

mod common;

use std::path::Path;

use common::{args, host, repo, test_pack};
use pack_runtime::{
    CallError, Compiler, ImportFix, Limits, LoadError, Runtime, RuntimeConfig, UnlinkedImport,
};
use serde_json::{Map, json};

/// A component that exports an (empty) `templates` instance, so it passes
/// the export check, imports `imports`, and carries `functions` core
/// functions, so that compiling it would take a while.
fn component_importing(imports: &[&str], functions: usize) -> Vec<u8> {
    let mut wat = String::from("(component\n");
    for name in imports {
        wat.push_str(&format!("(import \"{name}\" (instance))\n"));
    }
    wat.push_str("(core module $big\n");
    for i in 0..functions {
        wat.push_str(&format!(
            "(func (export \"f{i}\") (param i32) (result i32) local.get 0 i32.const {i} i32.add i32.const 3 i32.mul)\n"
        ));
    }
    wat.push_str(")\n(core instance (instantiate $big))\n(instance $t)\n");
    wat.push_str("(export \"comfyui:workflow/templates@1.0.0\" (instance $t)))");
    wat::parse_str(&wat).expect("valid component text")
}

fn cached_runtime(dir: &Path) -> Runtime {
    Runtime::new(RuntimeConfig {
        cache_dir: Some(dir.to_owned()),
        ..RuntimeConfig::default()
    })
    .expect("runtime")
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

#[test]
fn a_wasi_http_import_is_refused_before_compiling_naming_the_import_and_the_fix() {
    let cache = tempfile::tempdir().unwrap();
    let rt = cached_runtime(cache.path());
    let bytes = component_importing(
        &[
            "wasi:io/poll@0.2.12",
            "wasi:http/types@0.2.10",
            "wasi:http/outgoing-handler@0.2.10",
        ],
        20_000,
    );
    let err = rt
        .load_bytes(Path::new("js-default.wasm"), &bytes)
        .expect_err("wasi:http is not linked");
    let LoadError::UnlinkedImports { imports, total, .. } = &err else {
        panic!("not refused by the import check: {err}");
    };
    assert_eq!(*total, 2, "{err}");
    assert_eq!(
        imports[0],
        UnlinkedImport {
            name: "wasi:http/types@0.2.10".into(),
            fix: ImportFix::WasiHttp
        }
    );
    let text = err.to_string();
    assert!(
        text.contains("`wasi:http/outgoing-handler@0.2.10`")
            && text.contains("rebuild with `-d http fetch-event`")
            && text.contains("refused before compiling"),
        "{text}"
    );
    // Nothing was compiled: no artifact (a compile would have stored one
    // before linking failed).
    assert_eq!(files_in(cache.path()), 0, "the pack was compiled");
}

#[test]
fn imports_are_reported_up_to_the_cap_and_the_rest_counted() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let names: Vec<String> = (0..pack_runtime::MAX_REPORTED_IMPORTS + 3)
        .map(|i| format!("acme:thing/i{i}@1.0.0"))
        .collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let err = rt
        .load_bytes(Path::new("many.wasm"), &component_importing(&refs, 1))
        .unwrap_err();
    let LoadError::UnlinkedImports { imports, total, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(imports.len(), pack_runtime::MAX_REPORTED_IMPORTS);
    assert_eq!(*total, names.len());
    assert!(err.to_string().ends_with("(and 3 more)"), "{err}");
    assert!(imports.iter().all(|i| i.fix == ImportFix::Other));
}

#[test]
fn component_model_async_is_refused_before_compiling_with_the_quickjs_fix() {
    let bytes = wat::parse_str(
        r#"(component
            (core func $cancel (canon task.cancel))
            (instance $t)
            (export "comfyui:workflow/templates@1.0.0" (instance $t)))"#,
    )
    .expect("valid component text");
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let err = rt
        .load_bytes(Path::new("qjs-default.wasm"), &bytes)
        .unwrap_err();
    assert!(
        matches!(
            err,
            LoadError::AsyncBuiltins {
                builtin: "task.cancel",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("--backend-qjs-disable-async"),
        "{err}"
    );
}

#[test]
fn every_shipped_and_test_pack_passes_the_import_check() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    // wasi-snoop imports every WASI interface a wasm32-wasip2 build can.
    for name in ["wasi-snoop", "mini", "py-traceback"] {
        rt.load_file(&test_pack(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    rt.load_file(&repo().join("templates/game-assets.wasm"))
        .expect("shipped pack");
}

#[test]
fn a_python_style_crash_names_the_exception_not_only_the_runtime_panic() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let pack = rt.load_file(&test_pack("py-traceback")).unwrap();
    let err = pack.build("crash", &Map::new(), host()).unwrap_err();
    let CallError::Trap { cause, said, .. } = &err else {
        panic!("not a trap: {err}");
    };
    assert_eq!(
        cause.as_deref(),
        Some("ValueError: width must be a multiple of 8, got 500")
    );
    assert!(
        said.as_deref()
            .is_some_and(|s| s.contains("Python function threw an unexpected exception")),
        "{said:?}"
    );
    let text = err.to_string();
    assert!(
        text.starts_with(
            "pack crashed: ValueError: width must be a multiple of 8, got 500 (wasm trap:"
        ),
        "{text}"
    );
    assert!(!text.contains("wasm trap: wasm trap"), "{text}");
}

#[test]
fn a_crash_while_describing_names_the_exception_in_the_load_error() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let err = rt.load_file(&test_pack("py-import-error")).unwrap_err();
    assert!(
        matches!(
            &err,
            LoadError::Describe {
                source: CallError::Trap { cause: Some(cause), .. },
                ..
            } if cause == "ModuleNotFoundError: No module named 'textwrap'"
        ),
        "{err}"
    );
}

fn winch_runtime(limits: Limits) -> Runtime {
    Runtime::new(RuntimeConfig {
        limits,
        baseline_above_bytes: Some(0),
        ..RuntimeConfig::default()
    })
    .unwrap()
}

#[test]
fn packs_over_the_threshold_are_compiled_by_winch_and_others_by_cranelift() {
    let default = Runtime::new(RuntimeConfig::default()).unwrap();
    let threshold = pack_runtime::DEFAULT_BASELINE_ABOVE_MB << 20;
    assert_eq!(
        default.compiler_for(threshold as usize),
        Compiler::Cranelift
    );
    assert_eq!(
        default.compiler_for(threshold as usize + 1),
        Compiler::Winch
    );
    let off = Runtime::new(RuntimeConfig {
        baseline_above_bytes: None,
        ..RuntimeConfig::default()
    })
    .unwrap();
    assert_eq!(off.compiler_for(usize::MAX), Compiler::Cranelift);
}

#[test]
fn under_winch_every_limit_still_holds() {
    let rt = winch_runtime(Limits::default());
    // The time limit.
    let looping = rt.load_file(&test_pack("endless-loop")).unwrap();
    let id = looping.templates()[0].id.clone();
    let err = looping
        .build(&id, &args(json!({"prompt": "x"})), host())
        .unwrap_err();
    assert!(matches!(err, CallError::Timeout { .. }), "{err}");
    // The stack limit: a runaway recursion traps cleanly.
    let deep = rt.load_file(&test_pack("deep-recursion")).unwrap();
    let err = deep.build("runaway", &Map::new(), host()).unwrap_err();
    assert!(matches!(err, CallError::StackExhausted { .. }), "{err}");
    // The memory limit.
    let hog = rt.load_file(&test_pack("memory-hog")).unwrap();
    let id = hog.templates()[0].id.clone();
    let err = hog
        .build(&id, &args(json!({"prompt": "x"})), host())
        .unwrap_err();
    assert!(matches!(err, CallError::MemoryLimit { .. }), "{err}");
    // And the shipped pack builds the same graph as under Cranelift.
    let shipped = repo().join("templates/game-assets.wasm");
    let cranelift = Runtime::new(RuntimeConfig {
        baseline_above_bytes: None,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let a = args(json!({"prompt": "a red fox", "seed": 7}));
    let by = |rt: &Runtime| {
        let pack = rt.load_file(&shipped).unwrap();
        let id = pack.templates()[0].id.clone();
        pack.build(&id, &a, host()).unwrap().graph
    };
    assert_eq!(by(&rt), by(&cranelift));
}

#[test]
fn a_call_reports_its_time_and_the_peak_memory_the_limiter_counted() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let pack = rt
        .load_file(&repo().join("templates/game-assets.wasm"))
        .unwrap();
    let template = &pack.templates()[0];
    let params = pack_runtime::params::resolve(
        template,
        &args(json!({"prompt": "a red fox"})),
        &Limits::default().metadata,
    )
    .unwrap();
    let (built, stats) = pack.build_measured(&template.id, params, host());
    built.unwrap();
    let stats = stats.expect("the pack ran");
    assert!(stats.elapsed > std::time::Duration::ZERO);
    // A Rust pack holds at least one 64 KiB page and far less than the cap.
    assert!(stats.peak_memory_bytes >= 64 << 10, "{stats:?}");
    assert!(
        stats.peak_memory_bytes < Limits::default().memory_bytes,
        "{stats:?}"
    );
    // An unknown template never runs the pack.
    let params = pack_runtime::params::resolve(
        template,
        &args(json!({"prompt": "x"})),
        &Limits::default().metadata,
    )
    .unwrap();
    assert!(pack.build_measured("nope", params, host()).1.is_none());
}
