//! The graph budget and the node policy end to end: a real `App` with the hostile
//! `graph-bomb` pack (built from `plugins/test-packs/graph-bomb`) in front of the ComfyUI
//! simulator, and `load_workflow` files written by the tests.
//!
//! Every wait is bounded; nothing asserts on timings.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use comfyui_mcp::workflow_file::WorkflowSource;
use comfyui_mcp::{App, AppError};
use serde_json::{Map, Value, json};

/// Upper bound for any single call in these tests (a bound, not an expectation).
const BOUND: Duration = Duration::from_secs(120);

struct Fixture {
    app: Arc<App>,
    workflows: PathBuf,
    _sim: simulator::SimHandle,
    _dirs: tempfile::TempDir,
}

/// The app with only the graph-bomb pack, and an empty workflow folder, plus `extra` flags.
async fn fixture(extra: &[&str]) -> Fixture {
    let sim = common::simulator(Duration::from_millis(1)).await;
    let dirs = tempfile::tempdir().expect("temp dir");
    let templates = dirs.path().join("templates");
    let workflows = dirs.path().join("workflows");
    let out = dirs.path().join("out");
    for dir in [&templates, &workflows, &out] {
        std::fs::create_dir_all(dir).unwrap();
    }
    let pack = common::repo().join("tests/packs/graph-bomb.wasm");
    std::fs::copy(&pack, templates.join("graph-bomb.wasm")).expect("graph-bomb pack is built");
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("graph-budget-pack-cache");
    let workflow_dir = workflows.display().to_string();
    let mut flags = vec!["--workflow-dir", workflow_dir.as_str()];
    flags.extend_from_slice(extra);
    let app = common::start_app(&common::settings(
        sim.base_url(),
        &out,
        &templates,
        &cache,
        &flags,
    ))
    .await;
    common::assert_templates(&app, 4, "graph-bomb");
    Fixture {
        app,
        workflows,
        _sim: sim,
        _dirs: dirs,
    }
}

async fn generate(app: &App, template: &str, args: Value) -> Result<String, AppError> {
    let args: Map<String, Value> = args.as_object().cloned().unwrap_or_default();
    let job = tokio::time::timeout(BOUND, app.generate(template, args))
        .await
        .expect("generate answers within the bound")?;
    Ok(job.prompt_id)
}

async fn load(app: &App, path: &str) -> Result<String, AppError> {
    let submitted = tokio::time::timeout(
        BOUND,
        app.load_workflow(WorkflowSource::File(path.to_owned()), Map::new()),
    )
    .await
    .expect("load_workflow answers within the bound")?;
    Ok(submitted.job.prompt_id)
}

/// The `details` list of an error's structured form.
fn details(error: &AppError) -> Vec<Value> {
    error.to_json()["details"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_miss_graphs_get_a_capped_report_and_other_clients_are_served() {
    let f = fixture(&[]).await;
    // Two costly calls at once, and a cheap one beside them.
    let (a, b, ok) = tokio::join!(
        generate(&f.app, "near-miss", json!({"nodes": 1999})),
        generate(&f.app, "near-miss", json!({"nodes": 1999})),
        generate(&f.app, "near-miss", json!({})),
    );
    ok.expect("the harmless call is served");
    for error in [a.unwrap_err(), b.unwrap_err()] {
        assert_eq!(error.kind(), "invalid_graph", "{error}");
        let list = details(&error);
        assert_eq!(list.len(), 51, "50 listed defects and the omitted count");
        let last = list.last().unwrap();
        assert_eq!(last["kind"], "more_defects_omitted");
        assert_eq!(last["omitted"], 1999 - 50);
        let suggested = list
            .iter()
            .filter(|e| e["message"].as_str().unwrap_or("").contains("did you mean"))
            .count();
        assert!(
            (1..=20).contains(&suggested),
            "{suggested} suggestions (cap 20)"
        );
        let text = error.to_string();
        assert!(
            text.contains("... and 1949 more defects not listed"),
            "{text}"
        );
        assert!(text.len() < 64 << 10, "{} bytes", text.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pack_graphs_at_the_node_cap_pass_and_over_it_are_refused() {
    let f = fixture(&["--max-graph-nodes", "10"]).await;
    generate(&f.app, "chain", json!({"pairs": 5}))
        .await
        .expect("10 nodes: at the cap");
    let error = generate(&f.app, "chain", json!({"pairs": 6}))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), "invalid_graph", "{error}");
    let text = error.to_string();
    assert!(
        text.contains("12 nodes, over the limit of 10 nodes"),
        "{text}"
    );
    assert!(text.contains("COMFYUI_MCP_MAX_GRAPH_NODES"), "{text}");
    assert_eq!(details(&error)[0]["kind"], "too_many_nodes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_savers_and_paid_api_nodes_from_a_pack_are_refused_by_default() {
    let f = fixture(&[]).await;
    generate(&f.app, "checkpoint-save", json!({}))
        .await
        .expect("the default graph is harmless");

    let error = generate(&f.app, "checkpoint-save", json!({"save": 1}))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), "node_refused", "{error}");
    let text = error.to_string();
    for part in [
        "node \"2\" (CheckpointSave)",
        "model weights",
        "COMFYUI_MCP_ALLOW_NODES=CheckpointSave",
    ] {
        assert!(text.contains(part), "{part:?} missing in {text}");
    }
    assert_eq!(details(&error)[0]["class_type"], "CheckpointSave");
    assert_eq!(details(&error)[0]["node_ids"], json!(["2"]));

    let error = generate(&f.app, "api-node", json!({"paid": 1}))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), "node_refused", "{error}");
    let text = error.to_string();
    for part in [
        "node \"1\" (OpenAIDalle3)",
        "paid API node",
        "COMFYUI_MCP_ALLOW_API_NODES=1",
    ] {
        assert!(text.contains(part), "{part:?} missing in {text}");
    }
    assert_eq!(details(&error)[0]["reason"], "paid_api_node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_nodes_are_allowed_when_configured() {
    let f = fixture(&["--allow-nodes", "CheckpointSave", "--allow-api-nodes"]).await;
    generate(&f.app, "checkpoint-save", json!({"save": 1}))
        .await
        .expect("CheckpointSave allowed by name");
    generate(&f.app, "api-node", json!({"paid": 1}))
        .await
        .expect("API nodes allowed");
    let only_one = fixture(&["--allow-nodes", "OpenAIDalle3"]).await;
    generate(&only_one.app, "api-node", json!({"paid": 1}))
        .await
        .expect("one API node allowed by name");
    let still = generate(&only_one.app, "checkpoint-save", json!({"save": 1}))
        .await
        .unwrap_err();
    assert_eq!(still.kind(), "node_refused", "{still}");
}

/// The shipped txt2img example with a CheckpointSave node added.
fn example_with_checkpoint_save() -> Value {
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/workflows/txt2img_api.json");
    let mut graph: Value = serde_json::from_slice(&std::fs::read(example).unwrap()).unwrap();
    let loader = graph
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, node)| node["class_type"] == "CheckpointLoaderSimple")
        .map(|(id, _)| id.clone())
        .expect("the example loads a checkpoint");
    graph["99"] = json!({"class_type": "CheckpointSave", "inputs": {
        "model": [loader, 0], "clip": [loader, 1], "vae": [loader, 2],
        "filename_prefix": "../../models/checkpoints/pwned"}});
    graph
}

/// The checkpoint of the example, replaced by one the simulator has.
fn with_simulator_checkpoint(mut graph: Value) -> Value {
    for node in graph.as_object_mut().unwrap().values_mut() {
        if node["class_type"] == "CheckpointLoaderSimple" {
            node["inputs"]["ckpt_name"] = json!("tiny-random-sd15.safetensors");
        }
    }
    graph
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_workflow_applies_the_node_policy() {
    let f = fixture(&[]).await;
    let graph = with_simulator_checkpoint(example_with_checkpoint_save());
    std::fs::write(
        f.workflows.join("saver.json"),
        serde_json::to_vec(&graph).unwrap(),
    )
    .unwrap();
    let error = load(&f.app, "saver.json").await.unwrap_err();
    assert_eq!(error.kind(), "node_refused", "{error}");
    let text = error.to_string();
    assert!(text.contains("node \"99\" (CheckpointSave)"), "{text}");
    assert!(
        text.contains("COMFYUI_MCP_ALLOW_NODES=CheckpointSave"),
        "{text}"
    );

    let allowed = fixture(&["--allow-nodes", "CheckpointSave"]).await;
    std::fs::write(
        allowed.workflows.join("saver.json"),
        serde_json::to_vec(&graph).unwrap(),
    )
    .unwrap();
    load(&allowed.app, "saver.json")
        .await
        .expect("allowed when configured");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_workflow_caps_file_size_and_node_count() {
    let f = fixture(&["--max-graph-nodes", "3", "--max-workflow-bytes", "4096"]).await;
    let nodes = |n: usize| -> Vec<u8> {
        let mut graph = Map::new();
        for pair in 0..n / 2 {
            graph.insert(format!("{}", 2 * pair), json!({"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}));
            graph.insert(format!("{}", 2 * pair + 1), json!({"class_type": "SaveImage", "inputs": {"images": [format!("{}", 2 * pair), 0], "filename_prefix": "w"}}));
        }
        if n % 2 == 1 {
            graph.insert("last".into(), json!({"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}));
        }
        serde_json::to_vec(&graph).unwrap()
    };
    std::fs::write(f.workflows.join("three.json"), nodes(3)).unwrap();
    std::fs::write(f.workflows.join("four.json"), nodes(4)).unwrap();
    let mut big = nodes(2);
    big.extend(std::iter::repeat_n(b' ', 5000));
    std::fs::write(f.workflows.join("big.json"), big).unwrap();

    load(&f.app, "three.json")
        .await
        .expect("3 nodes: at the cap");
    let error = load(&f.app, "four.json").await.unwrap_err();
    assert_eq!(error.kind(), "workflow_too_many_nodes", "{error}");
    assert!(
        error.to_string().contains("over the limit of 3 nodes"),
        "{error}"
    );
    let error = load(&f.app, "big.json").await.unwrap_err();
    assert_eq!(error.kind(), "workflow_too_large", "{error}");
    assert!(
        error.to_string().contains("over the limit of 4096 bytes"),
        "{error}"
    );
}
