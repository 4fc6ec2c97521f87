//! Simulated machines (`SimConfig::machine`): a simulator with other checkpoint and LoRA files
//! and without some node classes answers as a real ComfyUI install with those files and
//! without those custom nodes does: the recorded refusals are reproduced exactly.

mod common;

use common::*;
use serde_json::{Value, json};
use simulator::{Machine, SimConfig};

async fn machine(machine: Machine) -> Sim {
    Sim::start(SimConfig { machine, ..fast() }).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_without_checkpoints_refuses_like_the_recorded_empty_install() {
    // The recording was made on a ComfyUI with no checkpoint at all.
    let recorded = load("error_invalid_enum_ckpt_name.json");
    let sim = machine(Machine {
        checkpoints: Some(vec![]),
        ..Machine::default()
    })
    .await;
    let got = sim.replay(&recorded["request"]).await;
    assert_eq!(got.status, 400);
    assert_eq!(got.json(), recorded["response"]["json"]);
    assert_eq!(sim.get("/models/checkpoints").await.json(), json!([]));
    sim.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_lists_its_own_model_files_and_runs_only_them() {
    let sim = machine(Machine {
        checkpoints: Some(vec!["studio-xl.safetensors".into()]),
        loras: Some(vec!["pixel.safetensors".into(), "ink.safetensors".into()]),
        ..Machine::default()
    })
    .await;
    assert_eq!(
        sim.get("/models/checkpoints").await.json(),
        json!(["studio-xl.safetensors"])
    );
    assert_eq!(
        sim.get("/models/loras").await.json(),
        json!(["pixel.safetensors", "ink.safetensors"])
    );
    let info = sim.get("/object_info/CheckpointLoaderSimple").await.json();
    assert_eq!(
        info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0],
        json!(["studio-xl.safetensors"])
    );
    // The stock file is not on this machine: refused as ComfyUI refuses it.
    let mut request = load("error_invalid_enum_ckpt_name.json")["request"].clone();
    request["json_body"]["prompt"]["4"]["inputs"]["ckpt_name"] =
        json!("tiny-random-sd15.safetensors");
    let refused = sim.replay(&request).await.json();
    let error = &refused["node_errors"]["4"]["errors"][0];
    assert_eq!(error["type"], "value_not_in_list");
    assert_eq!(
        error["details"],
        "ckpt_name: 'tiny-random-sd15.safetensors' not in ['studio-xl.safetensors']"
    );
    // Its own file is accepted.
    request["json_body"]["prompt"]["4"]["inputs"]["ckpt_name"] = json!("studio-xl.safetensors");
    let accepted = sim.replay(&request).await;
    assert_eq!(accepted.status, 200, "{}", accepted.text());
    sim.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_without_a_node_class_refuses_it_like_an_unknown_class() {
    let recorded = load("error_unknown_class.json");
    let sim = machine(Machine {
        omit_nodes: vec!["ImageInvert".into()],
        ..Machine::default()
    })
    .await;
    assert_eq!(sim.get("/object_info/ImageInvert").await.json(), json!({}));
    let all = sim.get("/object_info").await.json();
    assert!(all.get("ImageInvert").is_none() && all.get("EmptyImage").is_some());
    let mut request = recorded["request"].clone();
    request["json_body"]["prompt"]["2"]["class_type"] = json!("ImageInvert");
    let got = sim.replay(&request).await;
    assert_eq!(got.status, 400);
    let mut expected: Value = recorded["response"]["json"].clone();
    expected["error"]["message"] = json!("Cannot execute because node ImageInvert does not exist.");
    assert_eq!(got.json(), expected);
    sim.handle.shutdown().await;
}
