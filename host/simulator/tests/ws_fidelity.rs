//! Websocket fidelity: runs the graph of each recorded session (`tests/transcripts/ws_*.jsonl`)
//! and compares the message sequence: types in order, data key sets, and the values that
//! carry meaning (node ids, progress, cached nodes, queue counts, outputs, errors).

mod common;

use common::*;
use serde_json::{Value, json};
use simulator::SimConfig;
use std::collections::BTreeSet;
use std::time::Duration;

/// Where the POST /prompt body of a session comes from.
#[derive(Clone, Copy)]
enum Body {
    /// `json_body` of an exchange transcript.
    Exchange(&'static str),
    /// The `request` line of a ws transcript header.
    Header(&'static str),
}

impl Body {
    fn load(self) -> Value {
        match self {
            Body::Exchange(f) => load(f)["request"]["json_body"].clone(),
            Body::Header(f) => header_request_body(f),
        }
    }
}

struct Session {
    file: &'static str,
    body: Body,
    /// Prompts run (to completion) before the session, to recreate the cache state.
    before: &'static [Body],
    upload: bool,
    previews: bool,
    feature_flags: bool,
    /// `(timing file, "cold" | "warm")` whose `ws_message_counts` must match.
    counts: Option<(&'static str, &'static str)>,
}

const fn session(file: &'static str, body: Body) -> Session {
    Session {
        file,
        body,
        before: &[],
        upload: false,
        previews: false,
        feature_flags: false,
        counts: None,
    }
}

fn sessions() -> Vec<Session> {
    use Body::*;
    vec![
        session("ws_success.jsonl", Exchange("prompt_ok.json")),
        Session {
            before: &[Exchange("prompt_ok.json")],
            ..session(
                "ws_success_cached_rerun.jsonl",
                Exchange("prompt_ok_cached_rerun.json"),
            )
        },
        session(
            "ws_execution_error.jsonl",
            Exchange("prompt_execution_error.json"),
        ),
        session(
            "ws_observer_no_client_id.jsonl",
            Exchange("prompt_ok_no_client_id.json"),
        ),
        Session {
            upload: true,
            ..session(
                "ws_loadimage_previewimage.jsonl",
                Exchange("prompt_loadimage_uploaded.json"),
            )
        },
        Session {
            counts: Some(("t2i_tiny_timing.json", "cold")),
            ..session("ws_t2i_tiny_cold.jsonl", Header("ws_t2i_tiny_cold.jsonl"))
        },
        Session {
            before: &[Header("ws_t2i_tiny_cold.jsonl")],
            counts: Some(("t2i_tiny_timing.json", "warm")),
            ..session("ws_t2i_tiny_warm.jsonl", Header("ws_t2i_tiny_warm.jsonl"))
        },
        Session {
            before: &[Header("ws_t2i_tiny_warm.jsonl")],
            counts: Some(("t2i_full_timing.json", "cold")),
            ..session("ws_t2i_full_cold.jsonl", Header("ws_t2i_full_cold.jsonl"))
        },
        Session {
            before: &[Header("ws_t2i_full_cold.jsonl")],
            counts: Some(("t2i_full_timing.json", "warm")),
            ..session("ws_t2i_full_warm.jsonl", Header("ws_t2i_full_warm.jsonl"))
        },
        Session {
            previews: true,
            counts: Some(("t2i_preview_legacy_timing.json", "cold")),
            ..session(
                "ws_t2i_preview_legacy_cold.jsonl",
                Header("ws_t2i_preview_legacy_cold.jsonl"),
            )
        },
        Session {
            before: &[Header("ws_t2i_preview_legacy_cold.jsonl")],
            previews: true,
            counts: Some(("t2i_preview_legacy_timing.json", "warm")),
            ..session(
                "ws_t2i_preview_legacy_warm.jsonl",
                Header("ws_t2i_preview_legacy_warm.jsonl"),
            )
        },
        Session {
            before: &[Header("ws_t2i_preview_legacy_warm.jsonl")],
            previews: true,
            feature_flags: true,
            counts: Some(("t2i_preview_metadata_timing.json", "cold")),
            ..session(
                "ws_t2i_preview_metadata_cold.jsonl",
                Header("ws_t2i_preview_metadata_cold.jsonl"),
            )
        },
        Session {
            before: &[Header("ws_t2i_preview_metadata_cold.jsonl")],
            previews: true,
            feature_flags: true,
            counts: Some(("t2i_preview_metadata_timing.json", "warm")),
            ..session(
                "ws_t2i_preview_metadata_warm.jsonl",
                Header("ws_t2i_preview_metadata_warm.jsonl"),
            )
        },
    ]
}

fn types(frames: &[Frame]) -> Vec<String> {
    frames.iter().map(Frame::msg_type).collect()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

fn progress_nodes(data: &Value) -> Vec<(String, Value, Value, Value)> {
    data["nodes"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v["state"].clone(),
                        v["value"].clone(),
                        v["max"].clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn sorted(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|x| x.to_string())
        .collect();
    out.sort();
    out
}

/// Compares two message sequences; returns the differences.
fn compare_frames(recorded: &[Frame], actual: &[Frame]) -> Vec<String> {
    if types(recorded) != types(actual) {
        return vec![format!(
            "message types differ:\n  recorded {:?}\n  actual   {:?}",
            types(recorded),
            types(actual)
        )];
    }
    let mut out = Vec::new();
    for (i, (r, a)) in recorded.iter().zip(actual).enumerate() {
        let t = r.msg_type();
        let (rd, ad) = (r.data(), a.data());
        let mut note = |what: &str, x: &Value, y: &Value| {
            if x != y {
                out.push(format!("#{i} {t} {what}: recorded {x}, actual {y}"));
            }
        };
        if let (Frame::Binary(_), Frame::Binary(b)) = (r, a) {
            check_binary(i, &t, b, &mut out);
            continue;
        }
        if keys(rd) != keys(ad) {
            out.push(format!(
                "#{i} {t} keys: recorded {:?}, actual {:?}",
                keys(rd),
                keys(ad)
            ));
            continue;
        }
        match t.as_str() {
            "status" => {
                note(
                    "queue_remaining",
                    &rd["status"]["exec_info"]["queue_remaining"],
                    &ad["status"]["exec_info"]["queue_remaining"],
                );
                note("sid", &rd["sid"], &ad["sid"]);
            }
            "executing" => note("node", &rd["node"], &ad["node"]),
            "execution_cached" => note("nodes", &rd["nodes"], &ad["nodes"]),
            "progress" => {
                note("value", &rd["value"], &ad["value"]);
                note("max", &rd["max"], &ad["max"]);
            }
            "progress_state" => {
                if progress_nodes(rd) != progress_nodes(ad) {
                    out.push(format!(
                        "#{i} progress_state nodes: recorded {:?}, actual {:?}",
                        progress_nodes(rd),
                        progress_nodes(ad)
                    ));
                }
                out.extend(
                    shape_diff(rd, ad)
                        .into_iter()
                        .map(|d| format!("#{i} {t} {d}")),
                );
            }
            "executed" => {
                note("node", &rd["node"], &ad["node"]);
                let (rn, an) = (
                    &rd["output"]["images"][0]["filename"],
                    &ad["output"]["images"][0]["filename"],
                );
                let temp = rn.as_str().is_some_and(|n| n.starts_with("ComfyUI_temp_"));
                if temp {
                    let ok = an.as_str().is_some_and(|n| {
                        n.starts_with("ComfyUI_temp_")
                            && n.ends_with("_00001_.png")
                            && n.len() == rn.as_str().unwrap().len()
                    });
                    if !ok {
                        out.push(format!("#{i} executed temp filename {an} vs recorded {rn}"));
                    }
                } else {
                    note("filename", rn, an);
                }
                out.extend(
                    shape_diff(rd, ad)
                        .into_iter()
                        .map(|d| format!("#{i} {t} {d}")),
                );
            }
            "execution_error" => {
                for k in [
                    "node_id",
                    "node_type",
                    "executed",
                    "exception_message",
                    "exception_type",
                    "traceback",
                    "current_inputs",
                ] {
                    note(k, &rd[k], &ad[k]);
                }
                if sorted(&rd["current_outputs"]) != sorted(&ad["current_outputs"]) {
                    out.push(format!("#{i} current_outputs differ"));
                }
            }
            "execution_interrupted" => {
                note("node_id", &rd["node_id"], &ad["node_id"]);
                if sorted(&rd["executed"]) != sorted(&ad["executed"]) {
                    out.push(format!(
                        "#{i} executed: recorded {}, actual {}",
                        rd["executed"], ad["executed"]
                    ));
                }
            }
            "feature_flags" => note("data", rd, ad),
            _ => out.extend(
                shape_diff(rd, ad)
                    .into_iter()
                    .map(|d| format!("#{i} {t} {d}")),
            ),
        }
    }
    out
}

/// Binary previews: the recording has JPEG (type 1 image code 1); the simulator sends PNG
/// (image code 2) since it has no JPEG encoder. Type 4 carries the same metadata keys.
fn check_binary(i: usize, t: &str, bytes: &[u8], out: &mut Vec<String>) {
    match t {
        "binary:1" => {
            if bytes.get(4..8) != Some(&2u32.to_be_bytes()[..])
                || bytes.get(8..12) != Some(&b"\x89PNG"[..])
            {
                out.push(format!("#{i} preview frame is not a PNG preview"));
            }
        }
        "binary:4" => {
            let len = u32::from_be_bytes(bytes[4..8].try_into().unwrap()) as usize;
            let meta: Value = serde_json::from_slice(&bytes[8..8 + len]).unwrap_or(Value::Null);
            let expected: BTreeSet<String> = [
                "node_id",
                "prompt_id",
                "display_node_id",
                "parent_node_id",
                "real_node_id",
                "image_type",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            if keys(&meta) != expected || meta["image_type"] != "image/png" {
                out.push(format!("#{i} preview metadata {meta}"));
            }
            if bytes.get(8 + len..12 + len) != Some(&b"\x89PNG"[..]) {
                out.push(format!("#{i} preview image is not a PNG"));
            }
        }
        _ => out.push(format!("#{i} unexpected binary frame {t}")),
    }
}

async fn run_session(s: &Session) -> Vec<String> {
    let sim = Sim::start(SimConfig {
        preview_images: s.previews,
        ..fast()
    })
    .await;
    if s.upload {
        let r = sim
            .upload("view_output.png", "mcp_test", png(64, 64), &[])
            .await;
        assert_eq!(r.status, 200);
    }
    for b in s.before {
        sim.run(&b.load(), &uuid::Uuid::new_v4().to_string()).await;
    }
    let header = recorded_header(s.file);
    let client = header["client_id"]
        .as_str()
        .or(header["client_id_of_socket"].as_str());
    let prompt_id = header["prompt_id"]
        .as_str()
        .expect("header names the prompt id");
    let mut ws = sim.ws(client).await;
    let mut frames = vec![ws.expect().await];
    if s.feature_flags {
        ws.send_json(
            &json!({"type": "feature_flags", "data": {"supports_preview_metadata": true}}),
        )
        .await;
        frames.push(ws.expect().await);
    }
    let r = sim.submit(&s.body.load(), Some(prompt_id)).await;
    assert_eq!(r.status, 200, "{}: submit failed: {}", s.file, r.text());
    sim.wait_history(prompt_id).await;
    sim.handle.faults().drop_websockets();
    frames.extend(ws.drain().await);

    let mut problems = compare_frames(&recorded_frames(s.file), &frames);
    if let Some((timing, run)) = s.counts {
        let expected = &load(timing)[run]["ws_message_counts"];
        for (kind, n) in expected.as_object().unwrap() {
            if kind == "client_note" {
                continue;
            }
            let ours = match kind.as_str() {
                "binary:PREVIEW_IMAGE" => "binary:1",
                "binary:PREVIEW_IMAGE_WITH_METADATA" => "binary:4",
                k => k,
            };
            let got = frames.iter().filter(|f| f.msg_type() == ours).count();
            if json!(got) != *n {
                problems.push(format!(
                    "{timing} {run}: {got} {kind} messages, recorded {n}"
                ));
            }
        }
    }
    sim.handle.shutdown().await;
    problems
        .into_iter()
        .map(|p| format!("{}: {p}", s.file))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_sequences_match_the_recordings() {
    let mut failures = Vec::new();
    for s in sessions() {
        failures.extend(run_session(&s).await);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Collapses each run of sampler-step pairs (`progress_state` + `progress`) into one, since
/// where an interrupt lands between steps depends on timing.
fn collapse_steps(types: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in types {
        let n = out.len();
        if t == "progress" && n >= 3 && out[n - 1] == "progress_state" && out[n - 2] == "progress" {
            out.pop();
            continue;
        }
        out.push(t);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_during_sampling() {
    let file = "ws_interrupt_during_sampling.jsonl";
    // Slow enough that the interrupt lands within the 20 steps, wherever the test is scheduled.
    let sim = Sim::start(SimConfig {
        step_delay: Duration::from_millis(250),
        ..SimConfig::default()
    })
    .await;
    let before = header_request_body("ws_t2i_full_warm.jsonl");
    sim.handle.set_step_delay(Duration::ZERO);
    sim.run(&before, "prep").await;
    sim.handle.set_step_delay(Duration::from_millis(250));

    let recorded_history = load("history_interrupt_during_sampling.json");
    let (prompt_id, entry) = recorded_history["response"]["json"]
        .as_object()
        .unwrap()
        .iter()
        .next()
        .map(|(k, v)| (k.clone(), v.clone()))
        .unwrap();
    let header = recorded_header(file);
    let mut ws = sim.ws(header["client_id"].as_str()).await;
    let mut frames = vec![ws.expect().await];
    let body = json!({"prompt": entry["prompt"][2], "client_id": header["client_id"]});
    assert_eq!(sim.submit(&body, Some(&prompt_id)).await.status, 200);
    frames.extend(ws.until(|f| f.msg_type() == "progress").await);
    let r = sim
        .post_json("/interrupt", &json!({"prompt_id": prompt_id}))
        .await;
    assert_eq!((r.status, r.bytes.len()), (200, 0));
    frames.extend(
        ws.until(|f| f.msg_type() == "executing" && f.data()["node"].is_null())
            .await,
    );

    let recorded = recorded_frames(file);
    assert_eq!(
        collapse_steps(types(&recorded)),
        collapse_steps(types(&frames))
    );
    let interrupted = frames
        .iter()
        .find(|f| f.msg_type() == "execution_interrupted")
        .unwrap();
    assert_eq!(interrupted.data()["node_id"], "3");
    assert_eq!(interrupted.data()["node_type"], "KSampler");
    assert_eq!(
        sorted(&interrupted.data()["executed"]),
        sorted(&json!(["7", "6", "4"]))
    );
    let cached = frames
        .iter()
        .find(|f| f.msg_type() == "execution_cached")
        .unwrap();
    assert_eq!(cached.data()["nodes"], json!(["5"]));
    // No progress after the interrupt, and the history says so.
    let history = sim.get(&format!("/history/{prompt_id}")).await.json();
    assert_shape(
        "history_interrupt_during_sampling",
        &recorded_history["response"]["json"],
        &history,
    );
    assert_eq!(history[&prompt_id]["status"]["status_str"], "error");
    assert_eq!(sim.handle.interrupts(), vec![Some(prompt_id.clone())]);
    sim.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_subscriber_gets_only_the_status() {
    let sim = Sim::start(fast()).await;
    let recorded = load("history_late_subscribe.json")["response"]["json"].clone();
    let (id, entry) = recorded.as_object().unwrap().iter().next().unwrap();
    let client = entry["prompt"][3]["client_id"].as_str().unwrap();
    sim.run(
        &json!({"prompt": entry["prompt"][2], "client_id": client}),
        id,
    )
    .await;
    let mut ws = sim.ws(Some(client)).await;
    let first = ws.expect().await;
    sim.handle.faults().drop_websockets();
    let mut frames = vec![first];
    frames.extend(ws.drain().await);
    let problems = compare_frames(&recorded_frames("ws_late_subscribe.jsonl"), &frames);
    assert!(problems.is_empty(), "{problems:?}");
    sim.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_without_client_id_and_feature_flags() {
    let sim = Sim::start(fast()).await;
    let mut ws = sim.ws(None).await;
    let status = ws.expect().await;
    let sid = status.data()["sid"].as_str().unwrap().to_string();
    assert_eq!(sid.len(), 32);
    assert!(
        sid.chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    assert_eq!(
        keys(status.data()),
        keys(recorded_frames("ws_no_clientid_connect.jsonl")[0].data())
    );

    let header_id = "ff-066059fd";
    let mut ws = sim.ws(Some(header_id)).await;
    ws.send_json(&json!({"type": "feature_flags", "data": {"supports_preview_metadata": true}}))
        .await;
    let frames = vec![ws.expect().await, ws.expect().await];
    let problems = compare_frames(&recorded_frames("ws_feature_flags.jsonl"), &frames);
    assert!(problems.is_empty(), "{problems:?}");
    sim.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_client_id_leaves_the_second_socket_deaf() {
    let sim = Sim::start(fast()).await;
    let client = recorded_header("ws_duplicate_clientid_socket2.jsonl")["client_id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut first = sim.ws(Some(&client)).await;
    let mut second = sim.ws(Some(&client)).await;
    let f1 = first.expect().await;
    let f2 = second.expect().await;
    first.close().await;
    let body = json!({"prompt": load("prompt_ok.json")["request"]["json_body"]["prompt"], "client_id": client});
    let entry = sim.run(&body, "dup-job").await;
    assert_eq!(entry["status"]["status_str"], "success");
    sim.handle.faults().drop_websockets();
    let mut frames = vec![f2];
    frames.extend(second.drain().await);
    assert!(
        compare_frames(
            &recorded_frames("ws_duplicate_clientid_socket2.jsonl"),
            &frames
        )
        .is_empty(),
        "{:?}",
        types(&frames)
    );
    assert!(
        compare_frames(
            &recorded_frames("ws_duplicate_clientid_socket1.jsonl"),
            &[f1]
        )
        .is_empty()
    );
    sim.handle.shutdown().await;
}

/// Message data keys by type, over every recorded session.
fn recorded_keys_by_type() -> std::collections::HashMap<String, Vec<BTreeSet<String>>> {
    let mut out: std::collections::HashMap<String, Vec<BTreeSet<String>>> = Default::default();
    for entry in std::fs::read_dir(transcripts_dir()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if !name.ends_with(".jsonl") {
            continue;
        }
        for f in recorded_frames(&name) {
            if let Frame::Text(_) = f {
                let set = out.entry(f.msg_type()).or_default();
                let k = keys(f.data());
                if !set.contains(&k) {
                    set.push(k);
                }
            }
        }
    }
    out
}

fn assert_known_shapes(frames: &[Frame]) {
    let known = recorded_keys_by_type();
    for f in frames.iter().filter(|f| matches!(f, Frame::Text(_))) {
        let variants = known
            .get(&f.msg_type())
            .unwrap_or_else(|| panic!("unrecorded message type {}", f.msg_type()));
        assert!(
            variants.contains(&keys(f.data())),
            "{} with keys {:?}, recorded {:?}",
            f.msg_type(),
            keys(f.data()),
            variants
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_mid_job_resends_the_current_node() {
    let sim = Sim::start(SimConfig {
        step_delay: Duration::from_secs(30),
        ..SimConfig::default()
    })
    .await;
    let header = recorded_header("ws_reconnect_part1.jsonl");
    let client = header["client_id"].as_str().unwrap();
    let prompt_id = header["prompt_id"].as_str().unwrap();
    let body = json!({"prompt": load("queue_management_http.json")["calls"][0]["request"]["json_body"]["prompt"], "client_id": client});
    let mut first = sim.ws(Some(client)).await;
    let mut frames = vec![first.expect().await];
    assert_eq!(sim.submit(&body, Some(prompt_id)).await.status, 200);
    frames.extend(first.until(|f| f.msg_type() == "executing").await);
    assert_eq!(frames.last().unwrap().data()["node"], "1");
    first.close().await;
    sim.wait_socket_gone(client).await;

    let mut second = sim.ws(Some(client)).await;
    let status = second.expect().await;
    assert_eq!(status.data()["status"]["exec_info"]["queue_remaining"], 1);
    assert_eq!(status.data()["sid"], client);
    let resent = second.expect().await;
    assert_eq!(resent.msg_type(), "executing");
    assert_eq!(
        resent.data(),
        &json!({"node": "1"}),
        "re-sent without prompt_id, like the recording"
    );
    let recorded = recorded_frames("ws_reconnect_part2.jsonl");
    assert_eq!(keys(resent.data()), keys(recorded[1].data()));

    sim.handle.set_step_delay(Duration::ZERO);
    let rest = second
        .until(|f| f.msg_type() == "executing" && f.data()["node"].is_null())
        .await;
    let t = types(&rest);
    assert_eq!(
        t[t.len() - 3..],
        ["execution_success", "status", "executing"]
    );
    let executing: Vec<Value> = rest
        .iter()
        .filter(|f| f.msg_type() == "executing")
        .map(|f| f.data()["node"].clone())
        .collect();
    assert_eq!(
        executing,
        [
            json!("10"),
            json!("11"),
            json!("12"),
            json!("8"),
            json!("9"),
            Value::Null
        ]
    );
    assert_known_shapes(&frames);
    assert_known_shapes(&rest);
    sim.handle.shutdown().await;
}
