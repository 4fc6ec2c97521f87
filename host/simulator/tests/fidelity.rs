//! Replays every recorded HTTP exchange of the real ComfyUI 0.3.75 (`tests/transcripts/*.json`)
//! against the simulator, prepared as the recording was (prior prompts, uploads, restarts),
//! and checks status, content type and JSON shape (and exact text for text bodies).
//!
//! Every `.json` transcript must be either replayed here, covered by a named test in another
//! file, or skipped with a reason, so a new recording cannot go untested silently.

mod common;

use common::*;
use serde_json::{Value, json};

/// Transcripts checked by other tests (file, where).
const COVERED_ELSEWHERE: &[(&str, &str)] = &[
    (
        "history_interrupt_during_sampling.json",
        "ws_fidelity::interrupt_during_sampling",
    ),
    (
        "queue_snapshot_running_and_pending.json",
        "scenarios::queue_management_like_the_recording",
    ),
    (
        "queue_management_http.json",
        "scenarios::queue_management_like_the_recording",
    ),
    (
        "queue_management_history.json",
        "scenarios::queue_management_like_the_recording",
    ),
    (
        "history_paging.json",
        "scenarios::history_paging_delete_and_clear",
    ),
    (
        "history_delete.json",
        "scenarios::history_paging_delete_and_clear",
    ),
    (
        "history_clear.json",
        "scenarios::history_paging_delete_and_clear",
    ),
    ("raw_http_curl.json", "scenarios::raw_curl_captures"),
    (
        "raw_http_origin_check.json",
        "scenarios::origin_check_like_the_recording",
    ),
    (
        "t2i_full_timing.json",
        "ws_fidelity::websocket_sequences_match_the_recordings (message counts)",
    ),
    (
        "t2i_tiny_timing.json",
        "ws_fidelity::websocket_sequences_match_the_recordings (message counts)",
    ),
    (
        "t2i_preview_legacy_timing.json",
        "ws_fidelity::websocket_sequences_match_the_recordings (message counts)",
    ),
    (
        "t2i_preview_metadata_timing.json",
        "ws_fidelity::websocket_sequences_match_the_recordings (message counts)",
    ),
];

/// Transcripts replayed with a relaxed comparison (file, reason).
const RELAXED: &[(&str, &str)] = &[(
    "extensions.json",
    "the simulator serves no frontend, so /extensions is an empty JSON list (status and type still checked)",
)];

fn history_entry(file: &str) -> (String, Value) {
    let v = load(file);
    let map = v["response"]["json"]
        .as_object()
        .expect("history answer is an object")
        .clone();
    map.into_iter().next().expect("one history entry")
}

/// The POST /prompt body that produced a history entry.
fn body_of_entry(entry: &Value) -> Value {
    let mut body = json!({"prompt": entry["prompt"][2]});
    if let Some(cid) = entry["prompt"][3].get("client_id") {
        body["client_id"] = cid.clone();
    }
    body
}

async fn upload_view_output(sim: &Sim) {
    let r = sim
        .upload("view_output.png", "mcp_test", png(64, 64), &[])
        .await;
    assert_eq!(r.status, 200, "upload: {}", r.text());
}

/// Runs the recorded history entry of `file` with its own prompt id (for `GET /history/{id}`).
async fn run_history_file(sim: &Sim, file: &str) {
    let (id, entry) = history_entry(file);
    sim.run(&body_of_entry(&entry), &id).await;
}

/// Brings a fresh simulator into the state the recording was made in; returns the request to
/// replay (usually the recorded one).
async fn prepare(sim: &Sim, file: &str, request: &Value) -> Value {
    let uuid = || uuid::Uuid::new_v4().to_string();
    match file {
        "prompt_loadimage_uploaded.json" | "history_loadimage_previewimage.json" => {
            upload_view_output(sim).await
        }
        "history_success_cached_rerun.json" => {
            let (_, entry) = history_entry(file);
            sim.run(&body_of_entry(&entry), &uuid()).await;
        }
        "history_t2i_tiny_warm.json" => run_history_file(sim, "history_t2i_tiny_cold.json").await,
        "history_t2i_full_cold.json" => run_history_file(sim, "history_t2i_tiny_warm.json").await,
        "history_t2i_preview_metadata_cold.json" => {
            run_history_file(sim, "history_t2i_preview_legacy_warm.json").await
        }
        "history_t2i_full_warm.json" => run_history_file(sim, "history_t2i_full_cold.json").await,
        "history_t2i_preview_legacy_warm.json" => {
            run_history_file(sim, "history_t2i_preview_legacy_cold.json").await
        }
        "history_t2i_preview_metadata_warm.json" => {
            run_history_file(sim, "history_t2i_preview_metadata_cold.json").await
        }
        "history_all_after_s2.json" | "history_max_items_1.json" => {
            let all = load("history_all_after_s2.json")["response"]["json"].clone();
            for (id, entry) in all.as_object().unwrap() {
                sim.run(&body_of_entry(entry), id).await;
            }
        }
        "view_output_response.json" | "queue_after_s2.json" => {
            let (id, entry) = history_entry("history_success.json");
            sim.run(&body_of_entry(&entry), &id).await;
        }
        "view_temp_preview_response.json" => {
            upload_view_output(sim).await;
            let (_, entry) = history_entry("history_loadimage_previewimage.json");
            let id = uuid();
            let done = sim.run(&body_of_entry(&entry), &id).await;
            let name = done["outputs"]["3"]["images"][0]["filename"]
                .as_str()
                .unwrap()
                .to_string();
            let mut req = request.clone();
            req["url"] = json!(format!("/view?filename={name}&subfolder=&type=temp"));
            return req;
        }
        "history_after_server_restart.json" => {
            let (id, entry) = history_entry("history_success.json");
            sim.run(&body_of_entry(&entry), &id).await;
            sim.handle.restart().await;
        }
        _ => {}
    }
    let recorded_entry = load(file)["response"]["json"]
        .as_object()
        .is_some_and(|m| m.len() == 1);
    if request["url"]
        .as_str()
        .is_some_and(|u| u.starts_with("/history/"))
        && recorded_entry
    {
        let (id, entry) = history_entry(file);
        sim.run(&body_of_entry(&entry), &id).await;
    }
    request.clone()
}

/// Several errors on one node come out in Python's (randomised) set order: sort them.
fn sort_node_errors(v: &mut Value) {
    if let Some(nodes) = v.get_mut("node_errors").and_then(Value::as_object_mut) {
        for node in nodes.values_mut() {
            if let Some(errors) = node.get_mut("errors").and_then(Value::as_array_mut) {
                errors.sort_by_key(|e| e["type"].to_string());
            }
        }
    }
}

fn is_exchange(v: &Value) -> bool {
    v.get("request").is_some() && v.get("response").is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_exchanges_match_the_recordings() {
    let mut names: Vec<String> = std::fs::read_dir(transcripts_dir())
        .expect("transcripts folder")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    assert!(
        names.len() > 60,
        "expected the recorded transcripts, found {}",
        names.len()
    );

    let mut failures = Vec::new();
    let mut replayed = 0;
    for name in &names {
        if COVERED_ELSEWHERE.iter().any(|(f, _)| f == name) {
            continue;
        }
        let recorded = load(name);
        assert!(
            is_exchange(&recorded),
            "{name} is neither an exchange nor listed as covered elsewhere"
        );
        let sim = Sim::start(fast()).await;
        let request = prepare(&sim, name, &recorded["request"]).await;
        let actual = sim.replay(&request).await;
        let expected = &recorded["response"];
        replayed += 1;

        let mut problems = Vec::new();
        if expected["status"] != json!(actual.status) {
            problems.push(format!(
                "status {} vs recorded {}",
                actual.status, expected["status"]
            ));
        }
        let rec_type = media_type(expected["content_type"].as_str().unwrap_or(""));
        if rec_type != actual.media_type() {
            problems.push(format!(
                "content type {:?} vs recorded {rec_type:?}",
                actual.content_type
            ));
        }
        let relaxed = RELAXED.iter().any(|(f, _)| f == name);
        if let Some(rec_json) = expected.get("json") {
            let mut got: Value = serde_json::from_slice(&actual.bytes).unwrap_or(Value::Null);
            let mut rec_json = rec_json.clone();
            sort_node_errors(&mut got);
            sort_node_errors(&mut rec_json);
            let rec_json = &rec_json;
            if relaxed {
                if !got.is_array() {
                    problems.push(format!("expected a JSON list, got {got}"));
                }
            } else {
                problems.extend(shape_diff(rec_json, &got));
            }
        } else if let Some(text) = expected.get("text").and_then(Value::as_str) {
            if text != actual.text() {
                problems.push(format!("body {:?} vs recorded {text:?}", actual.text()));
            }
        } else if expected.get("saved_as").is_some() && actual.bytes.is_empty() {
            problems.push("empty file body".into());
        }
        if !problems.is_empty() {
            failures.push(format!("{name}:\n    {}", problems.join("\n    ")));
        }
        sim.handle.shutdown().await;
    }
    assert!(
        failures.is_empty(),
        "{} of {replayed} exchanges differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(replayed > 50, "only {replayed} exchanges replayed");
}

/// Validation errors are compared exactly (messages, details, node ids), not only by shape,
/// except where the recording's environment differed (an empty checkpoint folder) or Python's
/// set iteration order makes the order arbitrary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_errors_match_the_recordings_exactly() {
    let sim = Sim::start(fast()).await;
    let exact = [
        "error_bad_linked_input.json",
        "error_invalid_enum_ckpt_name_with_models_present.json",
        "error_invalid_enum_sampler_name.json",
        "error_invalid_input_type.json",
        "error_link_bad_output_index.json",
        "error_link_to_missing_node.json",
        "error_loadimage_missing_file.json",
        "error_missing_required_input.json",
        "error_no_output_node.json",
        "error_no_prompt_key.json",
        "error_node_without_class_type.json",
        "error_return_type_mismatch.json",
        "error_unknown_class.json",
        "error_value_too_big.json",
        "error_value_too_small.json",
    ];
    for name in exact {
        let recorded = load(name);
        let actual = sim.replay(&recorded["request"]).await;
        assert_eq!(actual.json(), recorded["response"]["json"], "{name}");
    }
    // Two errors on one node: ComfyUI iterates a Python set, so compare as a set.
    let recorded = load("error_two_errors_one_node.json");
    let mut actual = sim.replay(&recorded["request"]).await.json();
    let mut expected = recorded["response"]["json"].clone();
    for v in [&mut actual, &mut expected] {
        let errors = v["node_errors"]["3"]["errors"].as_array_mut().unwrap();
        errors.sort_by_key(|e| e["type"].to_string());
    }
    assert_eq!(actual, expected);
    // Partial validity: 200 with the bad output's errors, and the good output runs.
    let recorded = load("partial_one_output_invalid.json");
    let actual = sim.replay(&recorded["request"]).await.json();
    assert_eq!(
        actual["node_errors"],
        recorded["response"]["json"]["node_errors"]
    );
    let id = actual["prompt_id"].as_str().unwrap();
    let entry = sim.wait_history(id).await;
    assert_eq!(entry["prompt"][4], json!(["3"]));
    assert_eq!(
        entry["outputs"]["3"]["images"][0]["filename"],
        "partial_good_00001_.png"
    );
    // A float for an INT input is accepted and stored converted.
    let recorded = load("ok_float_for_int_input.json");
    let actual = sim.replay(&recorded["request"]).await.json();
    let entry = sim
        .wait_history(actual["prompt_id"].as_str().unwrap())
        .await;
    assert_eq!(entry["prompt"][2]["1"]["inputs"]["width"], json!(64));
    sim.handle.shutdown().await;
}

/// The `number` counter increases on every POST, valid or not, and `front` makes it negative.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_numbers_count_every_post() {
    let sim = Sim::start(fast()).await;
    sim.handle.hold_queue(true);
    let ok = load("prompt_ok.json")["request"]["json_body"].clone();
    let bad = load("error_unknown_class.json")["request"]["json_body"].clone();
    assert_eq!(sim.submit(&ok, None).await.json()["number"], 0);
    assert_eq!(sim.submit(&bad, None).await.status, 400);
    assert_eq!(sim.submit(&ok, None).await.json()["number"], 2);
    let mut front = ok.clone();
    front["front"] = json!(true);
    assert_eq!(sim.submit(&front, None).await.json()["number"], -3);
    let mut explicit = ok.clone();
    explicit["number"] = json!(7);
    assert_eq!(
        sim.submit(&explicit, None).await.json()["number"],
        json!(7.0)
    );
    let custom = load("prompt_client_chosen_prompt_id.json");
    let r = sim.replay(&custom["request"]).await.json();
    assert_eq!(r["prompt_id"], custom["response"]["json"]["prompt_id"]);
    sim.handle.shutdown().await;
}
