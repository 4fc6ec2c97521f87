//! `comfyui-mcp check PACK.wasm [--json] [--strict]` as a pack author runs it,
//! on the shipped pack and the test packs: the schema clients will see, the
//! graph, the graph check and which catalog it used, the call's cost, the
//! warnings, the exit status, and the causes of failures.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs the binary; `comfyui` is `COMFYUI_URL` (port 9 on loopback: nothing
/// listens, so the probe fails at once and the stock catalog is used).
fn check(args: &[&str], comfyui: &str) -> Output {
    check_with(args, comfyui, &[])
}

/// [`check`] with more environment variables.
fn check_with(args: &[&str], comfyui: &str, env: &[(&str, &str)]) -> Output {
    let cache = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_comfyui-mcp"))
        .arg("check")
        .args(args)
        .current_dir(repo())
        .env("COMFYUI_MCP_CACHE_DIR", cache.path())
        .env("COMFYUI_URL", comfyui)
        .envs(env.iter().copied())
        .env_remove("COMFYUI_TEMPLATES_DIR")
        .output()
        .expect("runs")
}

const NOBODY: &str = "http://127.0.0.1:9";

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

#[test]
fn the_json_report_has_the_published_schema_graph_check_and_cost_of_every_template() {
    let out = check(&["templates/game-assets.wasm", "--json"], NOBODY);
    assert!(out.status.success(), "{}", text(&out));
    let r = json(&out);
    assert_eq!(r["ok"], true);
    assert_eq!(r["pack"]["name"], "game-assets");
    assert_eq!(r["pack"]["compiler"], "cranelift", "a 0.1 MB Rust pack");
    assert_eq!(r["catalog"]["kind"], "stock", "{}", r["catalog"]);
    assert!(
        r["catalog"]["detail"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1:9"),
        "names the ComfyUI it could not use: {}",
        r["catalog"]
    );
    let templates = r["templates"].as_array().unwrap();
    assert_eq!(templates.len(), 6);
    for t in templates {
        let id = t["id"].as_str().unwrap();
        assert_eq!(t["graph_check"], "valid", "{id}");
        // The per-template tool's schema: the template's parameters plus
        // the tool's own `wait` and `timeout`.
        let schema = &t["input_schema"];
        assert_eq!(schema["type"], "object", "{id}");
        for p in ["prompt", "steps", "wait", "timeout"] {
            assert!(
                schema["properties"][p].is_object(),
                "{id}: no {p} in {schema}"
            );
        }
        assert_eq!(schema["properties"]["steps"]["maximum"], 150, "{id}");
        assert!(
            t["graph"].as_object().is_some_and(|g| !g.is_empty()),
            "{id}"
        );
        assert!(t["arguments"]["prompt"].is_string(), "{id}");
        let call = &t["call"];
        assert!(call["elapsed_ms"].as_f64().unwrap() > 0.0, "{id}");
        assert_eq!(call["time_limit_ms"], 2000, "{id}");
        let peak = call["peak_memory_bytes"].as_u64().unwrap();
        assert!((64 << 10..64 << 20).contains(&peak), "{id}: {peak}");
        assert_eq!(t["errors"].as_array().unwrap().len(), 0, "{id}");
    }
}

#[test]
fn a_live_comfyui_catalog_is_used_when_comfyui_answers() {
    let out = check(&["templates/game-assets.wasm", "--json"], "sim");
    assert!(out.status.success(), "{}", text(&out));
    let r = json(&out);
    assert_eq!(r["catalog"]["kind"], "live", "{}", r["catalog"]);
    assert!(
        r["catalog"]["detail"]
            .as_str()
            .unwrap()
            .starts_with("the ComfyUI at http://127.0.0.1:")
    );
}

#[test]
fn warnings_teach_and_fail_only_with_strict() {
    let out = check(&["tests/packs/sloppy.wasm"], NOBODY);
    let t = text(&out);
    assert!(out.status.success(), "warnings alone pass:\n{t}");
    for expected in [
        "warning: the pack has no description",
        "warning: the template has no description",
        "warning: parameter `size` has no description",
        "warning: parameter `size` has no minimum or maximum",
        "warning: optional parameter `strength` has no default",
        "graphs checked against the stock offline catalog",
        "input schema (the `sloppy` tool, as MCP clients see it):",
        "node 1: EmptyImage",
        "all templates passed (0 errors, 5 warnings)",
    ] {
        assert!(t.contains(expected), "missing {expected:?} in\n{t}");
    }
    let strict = check(&["tests/packs/sloppy.wasm", "--strict", "--json"], NOBODY);
    assert_eq!(strict.status.code(), Some(1), "{}", text(&strict));
    let r = json(&strict);
    assert_eq!(r["ok"], false);
    let codes: Vec<&str> = r["templates"][0]["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        [
            "no-description",
            "no-description",
            "unbounded",
            "no-default"
        ]
    );
    assert_eq!(r["warnings"][0]["code"], "no-description");
}

#[test]
fn a_python_style_crash_names_the_exception_in_check() {
    let out = check(&["tests/packs/py-traceback.wasm"], NOBODY);
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out);
    assert!(t.contains("FAIL  crash (graph not built"), "{t}");
    assert!(
        t.contains("pack crashed: ValueError: width must be a multiple of 8, got 500"),
        "{t}"
    );
    let load = check(&["tests/packs/py-import-error.wasm", "--json"], NOBODY);
    assert_eq!(load.status.code(), Some(1));
    let r = json(&load);
    assert_eq!(r["errors"][0]["code"], "load-failed");
    assert!(
        r["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("ModuleNotFoundError: No module named 'textwrap'"),
        "{r}"
    );
}

/// A ComfyUI that accepts the connection and never answers: the probe gives up at
/// `COMFYUI_MCP_CHECK_PROBE_MS`, says so, and the check goes on with the stock catalog.
#[test]
fn a_silent_comfyui_is_given_up_at_the_probe_budget() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    // Accepted connections are kept open, unanswered, until the test ends.
    let held = std::thread::spawn(move || {
        let mut open = Vec::new();
        for conn in silent.incoming().take(8) {
            open.push(conn);
        }
    });
    let out = check_with(
        &["templates/game-assets.wasm", "--json"],
        &url,
        &[("COMFYUI_MCP_CHECK_PROBE_MS", "300")],
    );
    assert!(out.status.success(), "{}", text(&out));
    let r = json(&out);
    assert_eq!(r["catalog"]["kind"], "stock", "{}", r["catalog"]);
    let detail = r["catalog"]["detail"].as_str().unwrap();
    assert!(
        detail.contains("no answer within 300 ms (COMFYUI_MCP_CHECK_PROBE_MS)"),
        "{detail}"
    );
    // The listener thread stays blocked in `accept` until the process ends.
    drop(held);
}

/// Every backend of `COMFYUI_URL` is probed, as `serve` self-tests against all it reached:
/// a graph passes when one of them can run it, and the report names those used and why the
/// others were not.
#[test]
fn every_backend_is_probed_and_a_graph_passes_where_one_can_run_it() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let start = |omit: &[&str]| {
        rt.block_on(simulator::start(
            ([127, 0, 0, 1], 0).into(),
            simulator::SimConfig {
                machine: simulator::Machine {
                    omit_nodes: omit.iter().map(|n| (*n).to_owned()).collect(),
                    ..simulator::Machine::default()
                },
                ..simulator::SimConfig::default()
            },
        ))
        .unwrap()
    };
    // `lacking` has neither VAEEncode (image-variation, inpaint) nor GrowMask (inpaint).
    let (lacking, full) = (start(&["VAEEncode", "GrowMask"]), start(&[]));
    let urls = format!("{},{},{NOBODY}", lacking.base_url(), full.base_url());
    let out = check(&["templates/game-assets.wasm", "--json"], &urls);
    assert!(out.status.success(), "{}", text(&out));
    let r = json(&out);
    assert_eq!(r["catalog"]["kind"], "live", "{}", r["catalog"]);
    let detail = r["catalog"]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(&format!(
            "the ComfyUIs at {}/, {}/ (not used: {NOBODY}/: ComfyUI at {NOBODY}/ is unreachable",
            lacking.base_url(),
            full.base_url()
        )),
        "{detail}"
    );

    // Without `full`, no backend can run image-variation: the failure names each backend.
    let other = start(&["VAEEncode"]);
    let urls = format!("{},{}", lacking.base_url(), other.base_url());
    let out = check(&["templates/game-assets.wasm", "--json"], &urls);
    assert!(!out.status.success(), "{}", text(&out));
    let r = json(&out);
    let variation = r["templates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "image-variation")
        .unwrap_or_else(|| panic!("{r}"));
    let errors = variation["errors"].to_string();
    assert!(errors.contains("VAEEncode"), "{errors}");
    for backend in [&lacking, &other] {
        assert!(
            errors.contains(&format!("on {}/: ", backend.base_url())),
            "{errors}"
        );
    }
}
