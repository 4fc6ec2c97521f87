//! Multi-step scenarios: the recorded queue-management session, history paging, the curl and
//! origin captures, and the simulator's own controls (hold, restart, API key, path prefix,
//! faults, uploads, images, request recording).

mod common;

use common::*;
use serde_json::{Value, json};
use simulator::SimConfig;
use std::time::Duration;

fn pending_ids(queue: &Value) -> Vec<String> {
    queue["queue_pending"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i[1].as_str().unwrap().to_string())
        .collect()
}

fn running_ids(queue: &Value) -> Vec<String> {
    queue["queue_running"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i[1].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_management_like_the_recording() {
    let recording = load("queue_management_http.json");
    let calls = recording["calls"].as_array().unwrap().clone();
    let call = |label: &str| {
        calls
            .iter()
            .find(|c| c["label"] == label)
            .unwrap_or_else(|| panic!("no call {label}"))
            .clone()
    };
    let ids = recording["prompt_ids"].clone();
    let id = |k: &str| ids[k].as_str().unwrap().to_string();
    let client = recording["client_id"].as_str().unwrap();

    // Nodes never finish on their own; the test releases them with set_step_delay.
    let sim = Sim::start(SimConfig {
        step_delay: Duration::from_secs(30),
        ..SimConfig::default()
    })
    .await;
    let mut ws = sim.ws(Some(client)).await;
    let check = |label: &str, resp: &Resp| {
        let rec = call(label)["response"].clone();
        assert_eq!(json!(resp.status), rec["status"], "{label}");
        assert_eq!(
            resp.media_type(),
            media_type(rec["content_type"].as_str().unwrap()),
            "{label}"
        );
        if let Some(j) = rec.get("json") {
            assert_shape(label, j, &resp.json());
        }
    };

    let submit = |label: &'static str, key: &'static str| {
        let c = call(label);
        let body = c["request"]["json_body"].clone();
        let pid = id(key);
        let sim = &sim;
        async move {
            let r = sim.submit(&body, Some(&pid)).await;
            (label, r)
        }
    };
    let (l, r) = submit("submit A", "A").await;
    check(l, &r);
    sim.wait_running(&id("A")).await;
    for (label, key) in [
        ("submit B", "B"),
        ("submit C", "C"),
        ("submit D", "D"),
        ("submit E", "E"),
        ("submit F_front (front=true)", "F_front"),
    ] {
        let (l, r) = submit(label, key).await;
        check(l, &r);
    }

    let q = sim.get("/queue").await;
    check("queue after 6 submits", &q);
    let snapshot = load("queue_snapshot_running_and_pending.json");
    assert_shape(
        "queue_snapshot_running_and_pending",
        &snapshot["response"]["json"],
        &q.json(),
    );
    assert_eq!(
        pending_ids(&q.json()),
        pending_ids(&call("queue after 6 submits")["response"]["json"]),
        "raw heap order"
    );
    assert!(
        q.json()["queue_pending"][0][0].as_i64().unwrap() < 0,
        "front prompt has a negative number"
    );

    let r = sim.replay(&call("delete C (pending)")["request"]).await;
    check("delete C (pending)", &r);
    let q = sim.get("/queue").await;
    check("queue after delete C", &q);
    assert_eq!(
        pending_ids(&q.json()),
        pending_ids(&call("queue after delete C")["response"]["json"])
    );

    let r = sim
        .replay(&call("global interrupt while A runs")["request"])
        .await;
    check("global interrupt while A runs", &r);
    let a = sim.wait_history(&id("A")).await;
    assert_eq!(a["status"]["status_str"], "error");
    sim.wait_running(&id("F_front")).await;
    let q = sim.get("/queue").await;
    check("queue after A interrupted", &q);
    assert_eq!(
        pending_ids(&q.json()),
        pending_ids(&call("queue after A interrupted")["response"]["json"])
    );

    let r = sim
        .replay(&call("targeted interrupt of a PENDING prompt (E) - no effect")["request"])
        .await;
    check("targeted interrupt of a PENDING prompt (E) - no effect", &r);
    assert_eq!(
        running_ids(&sim.get("/queue").await.json()),
        [id("F_front")],
        "a pending id interrupts nothing"
    );
    let r = sim
        .replay(&call("targeted interrupt of the RUNNING prompt")["request"])
        .await;
    check("targeted interrupt of the RUNNING prompt", &r);
    let f = sim.wait_history(&id("F_front")).await;
    assert_eq!(f["status"]["status_str"], "error");

    sim.handle.set_step_delay(Duration::ZERO);
    sim.wait_history(&id("E")).await;
    sim.handle.set_step_delay(Duration::from_secs(30));
    for (label, key) in [("submit G", "G"), ("submit H", "H"), ("submit I", "I")] {
        let (l, r) = submit(label, key).await;
        check(l, &r);
    }
    sim.wait_running(&id("G")).await;
    check("queue before clear", &sim.get("/queue").await);
    check(
        "clear queue",
        &sim.replay(&call("clear queue")["request"]).await,
    );
    check(
        "queue after clear (G still running)",
        &sim.get("/queue").await,
    );
    sim.handle.set_step_delay(Duration::ZERO);
    sim.wait_history(&id("G")).await;
    check("queue at end", &sim.get("/queue").await);

    let histories = load("queue_management_history.json");
    for (label, rec) in histories.as_object().unwrap() {
        let got = sim.replay(&rec["request"]).await;
        assert_shape(
            &format!("history of {label}"),
            &rec["response"]["json"],
            &got.json(),
        );
    }
    assert_eq!(
        sim.handle.interrupts(),
        vec![None, Some(id("E")), Some(id("F_front"))]
    );

    sim.handle.faults().drop_websockets();
    let frames = ws.drain().await;
    // Interrupted prompts stop at the node after the one that was running.
    let interrupted: Vec<&Value> = frames
        .iter()
        .filter(|f| f.msg_type() == "execution_interrupted")
        .map(Frame::data)
        .collect();
    assert_eq!(interrupted.len(), 2);
    for d in interrupted {
        assert_eq!(d["node_id"], "10");
        assert_eq!(d["node_type"], "ImageBlur");
        assert_eq!(d["executed"], json!(["1"]));
    }
    let successes = frames
        .iter()
        .filter(|f| f.msg_type() == "execution_success")
        .count();
    assert_eq!(successes, 4, "B, D, E and G succeed");
    let recorded_types: std::collections::BTreeSet<String> =
        recorded_frames("ws_queue_management.jsonl")
            .iter()
            .map(Frame::msg_type)
            .collect();
    let our_types: std::collections::BTreeSet<String> =
        frames.iter().map(Frame::msg_type).collect();
    assert_eq!(recorded_types, our_types);
    sim.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_queue_then_delete_a_pending_prompt() {
    let sim = Sim::start(fast()).await;
    let body = load("prompt_ok.json")["request"]["json_body"].clone();
    sim.handle.hold_queue(true);
    assert_eq!(sim.submit(&body, Some("keep")).await.status, 200);
    assert_eq!(sim.submit(&body, Some("drop")).await.status, 200);
    let q = sim.get("/queue").await.json();
    assert_eq!(running_ids(&q), Vec::<String>::new());
    assert_eq!(pending_ids(&q), ["keep", "drop"]);
    assert_eq!(
        sim.get("/prompt").await.json(),
        json!({"exec_info": {"queue_remaining": 2}})
    );
    let r = sim
        .post_json("/queue", &json!({"delete": ["drop", "unknown"]}))
        .await;
    assert_eq!((r.status, r.bytes.len()), (200, 0));
    sim.handle.hold_queue(false);
    let entry = sim.wait_history("keep").await;
    assert_eq!(entry["status"]["status_str"], "success");
    assert_eq!(sim.get("/history/drop").await.json(), json!({}));
    assert_eq!(
        sim.get("/queue").await.json(),
        json!({"queue_running": [], "queue_pending": []})
    );
    sim.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_paging_delete_and_clear() {
    let sim = Sim::start(fast()).await;
    let paging = load("history_paging.json");
    let body = load("prompt_ok.json")["request"]["json_body"].clone();
    for id in paging["submitted_in_order"].as_array().unwrap() {
        sim.run(&body, id.as_str().unwrap()).await;
    }
    for (query, expected) in paging.as_object().unwrap() {
        if !query.starts_with('/') {
            continue;
        }
        let got = sim.get(query).await.json();
        let ids: Vec<Value> = got.as_object().unwrap().keys().map(|k| json!(k)).collect();
        assert_eq!(&Value::Array(ids), expected, "{query}");
    }

    let delete = load("history_delete.json");
    let victim = delete["post"]["request"]["json_body"]["delete"][0]
        .as_str()
        .unwrap();
    sim.run(&body, victim).await;
    let before = sim.get("/history").await.json().as_object().unwrap().len();
    let r = sim.replay(&delete["post"]["request"]).await;
    assert_eq!(json!(r.status), delete["post"]["response"]["status"]);
    assert_eq!(r.media_type(), "");
    let r = sim.replay(&delete["get_deleted"]["request"]).await;
    assert_eq!(r.json(), delete["get_deleted"]["response"]["json"]);
    let after = sim.get("/history").await.json().as_object().unwrap().len();
    assert_eq!(after + 1, before);

    let clear = load("history_clear.json");
    let r = sim.replay(&clear["post"]["request"]).await;
    assert_eq!((r.status, r.bytes.len()), (200, 0));
    let r = sim.replay(&clear["get_after"]["request"]).await;
    assert_eq!(r.json(), clear["get_after"]["response"]["json"]);
    sim.handle.shutdown().await;
}

/// A `curl -i` capture: status, content type and body.
fn parse_capture(raw: &str) -> (u16, String, String) {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let ct = lines
        .filter_map(|l| l.split_once(": "))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| media_type(v))
        .unwrap_or_default();
    (status, ct, body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_curl_captures() {
    let sim = Sim::start(fast()).await;
    let captures = load("raw_http_curl.json")["captures"].clone();
    for (label, raw) in captures.as_object().unwrap() {
        let (status, ct, body) = parse_capture(raw.as_str().unwrap());
        let resp = match label.as_str() {
            "GET /queue" => sim.get("/queue").await,
            "POST /prompt malformed JSON" => {
                sim.post_raw("/prompt", "{\"prompt\": {not json").await
            }
            "POST /prompt unknown class" => {
                sim.post_json(
                    "/prompt",
                    &json!({"prompt": {"1": {"class_type": "Nope", "inputs": {}}}}),
                )
                .await
            }
            "POST /interrupt (no body)" => sim.send(sim.http.post(sim.url("/interrupt"))).await,
            "POST /queue {delete: [unknown id]}" => {
                sim.post_json(
                    "/queue",
                    &json!({"delete": ["00000000-0000-0000-0000-000000000000"]}),
                )
                .await
            }
            "POST /free {unload_models: true, free_memory: true}" => {
                sim.post_json(
                    "/free",
                    &json!({"unload_models": true, "free_memory": true}),
                )
                .await
            }
            "POST /upload/image (multipart)" => {
                sim.upload("view_output.png", "mcp_test", png(64, 64), &[])
                    .await
            }
            "GET /view (headers only) of uploaded input image" => {
                let r = sim
                    .send(sim.http.head(
                        sim.url("/view?filename=view_output.png&subfolder=mcp_test&type=input"),
                    ))
                    .await;
                let cd = r
                    .headers
                    .get("content-disposition")
                    .and_then(|v| v.to_str().ok());
                assert_eq!(cd, Some("filename=\"view_output.png\""));
                r
            }
            "GET /view with path traversal filename" => {
                sim.get("/view?filename=../../etc/passwd&type=output").await
            }
            "GET /view with bad type" => sim.get("/view?filename=view_output.png&type=nope").await,
            other => panic!("capture {other:?} has no replay"),
        };
        assert_eq!(resp.status, status, "{label}");
        assert_eq!(resp.media_type(), ct, "{label}");
        if ct == "application/json" && !body.is_empty() {
            let expected: Value = serde_json::from_str(&body).unwrap();
            if label == "GET /queue" {
                assert_shape(label, &expected, &resp.json());
            } else {
                assert_eq!(resp.json(), expected, "{label}");
            }
        } else if label != "GET /view (headers only) of uploaded input image" {
            assert_eq!(resp.text(), body, "{label}");
        }
    }
    sim.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_check_like_the_recording() {
    let sim = Sim::start(fast()).await;
    let port = sim.handle.addr().port();
    let captures = load("raw_http_origin_check.json")["captures"].clone();
    let get = |origin: String| {
        let sim = &sim;
        async move {
            sim.send(sim.http.get(sim.url("/queue")).header("Origin", origin))
                .await
        }
    };
    for (label, raw) in captures.as_object().unwrap() {
        let (status, ct, body) = parse_capture(raw.as_str().unwrap());
        let resp = if label.starts_with("GET /ws") {
            let url = sim.ws_url(Some("origin-test"));
            match Ws::connect(&url, &[("Origin", "http://example.com")]).await {
                Ok(_) => panic!("{label}: upgrade was accepted"),
                Err(code) => {
                    assert_eq!(code, status, "{label}");
                    continue;
                }
            }
        } else if label.contains("example.com") {
            get("http://example.com".into()).await
        } else if label.contains("localhost") {
            get(format!("http://localhost:{port}")).await
        } else {
            get(format!("http://127.0.0.1:{port}")).await
        };
        assert_eq!(resp.status, status, "{label}");
        assert_eq!(resp.media_type(), ct, "{label}");
        if status == 403 {
            assert_eq!(resp.text(), body, "{label}");
        }
    }
    let ok = Ws::connect(
        &sim.ws_url(Some("same-origin")),
        &[("Origin", &format!("http://127.0.0.1:{port}"))],
    )
    .await;
    assert!(ok.is_ok(), "a matching Origin may open a socket");
    sim.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_forgets_like_comfyui() {
    let sim = Sim::start(fast()).await;
    let mut ws = sim.ws(Some("restart")).await;
    ws.expect().await;
    let mut body = load("prompt_ok.json")["request"]["json_body"].clone();
    body["client_id"] = json!("restart");
    let done = sim.run(&body, "before-restart").await;
    assert_eq!(
        done["outputs"]["3"]["images"][0]["filename"],
        "invert_00001_.png"
    );
    sim.upload("view_output.png", "mcp_test", png(8, 8), &[])
        .await;
    let preview = load("prompt_loadimage_uploaded.json")["request"]["json_body"].clone();
    let done = sim.run(&preview, "preview").await;
    let temp = done["outputs"]["3"]["images"][0]["filename"]
        .as_str()
        .unwrap()
        .to_string();
    let temp_url = format!("/view?filename={temp}&subfolder=&type=temp");
    assert_eq!(sim.get(&temp_url).await.status, 200);

    let mut catalog = load("object_info_CheckpointLoaderSimple.json")["response"]["json"].clone();
    let mut full: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/data/object_info.json"
        ))
        .unwrap(),
    )
    .unwrap();
    catalog["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] =
        json!(["fresh.safetensors"]);
    full["CheckpointLoaderSimple"] = catalog["CheckpointLoaderSimple"].clone();
    sim.handle.set_object_info(full);
    assert_eq!(
        sim.get("/models/checkpoints")
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        2,
        "staged until restart"
    );

    sim.handle.hold_queue(true);
    sim.submit(&body, Some("queued")).await;
    sim.handle.restart().await;
    sim.handle.hold_queue(false);
    // Ends only because the restart closed the socket (a hang guard fails otherwise).
    let before = ws.drain().await;
    assert!(
        before
            .iter()
            .all(|f| f.msg_type() != "execution_start" || f.data()["prompt_id"] != "queued")
    );
    let recorded = load("history_after_server_restart.json");
    assert_eq!(
        sim.replay(&recorded["request"]).await.json(),
        recorded["response"]["json"]
    );
    assert_eq!(
        sim.get("/queue").await.json(),
        json!({"queue_running": [], "queue_pending": []})
    );
    assert_eq!(
        sim.get("/models/checkpoints").await.json(),
        json!(["fresh.safetensors"])
    );
    assert_eq!(sim.get(&temp_url).await.status, 404, "temp/ is wiped");
    assert_eq!(
        sim.get("/view?filename=invert_00001_.png&subfolder=mcp_test&type=output")
            .await
            .status,
        200
    );
    let r = sim.submit(&body, Some("after")).await.json();
    assert_eq!(r["number"], 0, "the counter restarts");
    let done = sim.wait_history("after").await;
    assert_eq!(
        done["status"]["messages"][1][1]["nodes"],
        json!([]),
        "the cache is gone"
    );
    assert_eq!(
        done["outputs"]["3"]["images"][0]["filename"], "invert_00002_.png",
        "output files survive"
    );
    sim.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_is_required_when_configured() {
    let sim = Sim::start(SimConfig {
        require_api_key: Some("sekrit".into()),
        ..fast()
    })
    .await;
    assert_eq!(sim.get("/system_stats").await.status, 401);
    let wrong = sim
        .send(sim.http.get(sim.url("/system_stats")).bearer_auth("nope"))
        .await;
    assert_eq!(wrong.status, 401);
    let right = sim
        .send(sim.http.get(sim.url("/system_stats")).bearer_auth("sekrit"))
        .await;
    assert_eq!(right.status, 200);
    assert_eq!(
        Ws::connect(&sim.ws_url(Some("k")), &[]).await.err(),
        Some(401)
    );
    let ok = Ws::connect(
        &sim.ws_url(Some("k")),
        &[("Authorization", "Bearer sekrit")],
    )
    .await;
    assert!(ok.is_ok());
    let auths: Vec<Option<String>> = sim
        .handle
        .requests()
        .into_iter()
        .map(|r| r.authorization)
        .collect();
    assert_eq!(
        auths[..3],
        [
            None,
            Some("Bearer nope".into()),
            Some("Bearer sekrit".into())
        ]
    );
    sim.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_prefix_emulates_a_reverse_proxy() {
    let sim = Sim::start(SimConfig {
        path_prefix: "comfy/".into(),
        ..fast()
    })
    .await;
    assert!(sim.base.ends_with("/comfy"), "{}", sim.base);
    assert_eq!(sim.get("/system_stats").await.status, 200);
    assert_eq!(sim.get("/api/system_stats").await.status, 200);
    let root = format!("http://{}/system_stats", sim.handle.addr());
    assert_eq!(sim.send(sim.http.get(root)).await.status, 404);
    let mut ws = sim.ws(Some("p")).await;
    assert_eq!(ws.expect().await.msg_type(), "status");
    let body = load("prompt_ok.json")["request"]["json_body"].clone();
    sim.run(&body, "prefixed").await;
    let view = sim
        .get("/view?filename=invert_00001_.png&subfolder=mcp_test&type=output")
        .await;
    assert_eq!(
        (view.status, view.media_type().as_str()),
        (200, "image/png")
    );
    let paths: Vec<String> = sim.handle.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths[..2],
        ["/comfy/system_stats", "/comfy/api/system_stats"]
    );
    sim.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_faults() {
    let sim = Sim::start(fast()).await;
    let faults = sim.handle.faults();

    faults.fail_http(2, 503);
    for _ in 0..2 {
        let r = sim.get("/queue").await;
        assert_eq!((r.status, r.media_type().as_str()), (503, "text/plain"));
    }
    assert_eq!(sim.get("/queue").await.status, 200);

    faults.http_delay(Duration::from_millis(1));
    assert_eq!(sim.get("/queue").await.status, 200);
    faults.http_delay(Duration::ZERO);

    faults.refuse_websockets(true);
    assert_eq!(
        Ws::connect(&sim.ws_url(Some("f")), &[]).await.err(),
        Some(503)
    );
    faults.refuse_websockets(false);
    let mut ws = sim.ws(Some("f")).await;
    assert_eq!(ws.expect().await.msg_type(), "status");
    faults.drop_websockets();
    assert!(ws.next().await.is_none(), "dropped");

    faults.fail_node_class("ImageInvert", "simulated failure");
    let mut ws = sim.ws(Some("f")).await;
    ws.expect().await;
    let mut body = load("prompt_ok.json")["request"]["json_body"].clone();
    body["client_id"] = json!("f");
    let entry = sim.run(&body, "failing").await;
    assert_eq!(entry["status"]["status_str"], "error");
    assert_eq!(entry["outputs"], json!({}));
    let frames = ws
        .until(|f| f.msg_type() == "executing" && f.data()["node"].is_null())
        .await;
    let err = frames
        .iter()
        .find(|f| f.msg_type() == "execution_error")
        .expect("an execution_error");
    let d = err.data();
    assert_eq!(d["node_id"], "2");
    assert_eq!(d["node_type"], "ImageInvert");
    assert_eq!(d["exception_type"], "Exception");
    assert_eq!(d["exception_message"], "simulated failure\n");
    assert_eq!(d["executed"], json!(["1"]));
    assert!(
        d["current_inputs"]["image"][0]
            .as_str()
            .unwrap()
            .starts_with("tensor(")
    );
    let recorded = recorded_frames("ws_execution_error.jsonl");
    let rec_err = recorded
        .iter()
        .find(|f| f.msg_type() == "execution_error")
        .unwrap();
    let without_inputs = |v: &Value| {
        let mut v = v.clone();
        v["current_inputs"] = json!({});
        v
    };
    assert_shape(
        "injected execution_error",
        &without_inputs(rec_err.data()),
        &without_inputs(d),
    );

    faults.clear();
    let entry = sim.run(&body, "fine-again").await;
    assert_eq!(entry["status"]["status_str"], "success");
    sim.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_loaders_and_placeholder_images() {
    let sim = Sim::start(fast()).await;
    let pic = png(40, 30);
    let r = sim.upload("pic.png", "", pic.clone(), &[]).await.json();
    assert_eq!(
        r,
        json!({"name": "pic.png", "subfolder": "", "type": "input"})
    );
    assert_eq!(
        sim.upload("pic.png", "", pic.clone(), &[]).await.json()["name"],
        "pic.png",
        "same bytes: reused"
    );
    assert_eq!(
        sim.upload("pic.png", "", png(2, 2), &[]).await.json()["name"],
        "pic (1).png"
    );
    let over = sim
        .upload("pic.png", "", pic.clone(), &[("overwrite", "true")])
        .await
        .json();
    assert_eq!(over["name"], "pic.png");
    assert_eq!(
        sim.upload("x.png", "../up", pic.clone(), &[]).await.status,
        400
    );
    let listed = sim.get("/object_info/LoadImage").await.json();
    let options = listed["LoadImage"]["input"]["required"]["image"][0].clone();
    assert_eq!(options, json!(["example.png", "pic (1).png", "pic.png"]));

    let graph = json!({"prompt": {
        "1": {"class_type": "LoadImage", "inputs": {"image": "pic.png"}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "t/load"}}
    }});
    let done = sim.run(&graph, "load").await;
    let file = &done["outputs"]["3"]["images"][0];
    let view = sim
        .get(&format!(
            "/view?filename={}&subfolder=t&type=output",
            file["filename"].as_str().unwrap()
        ))
        .await;
    assert_eq!(png_size(&view.bytes), (40, 30));

    let batch = json!({"prompt": {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 8, "batch_size": 3, "color": 255}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "t/batch"}}
    }});
    let done = sim.run(&batch, "batch").await;
    let names: Vec<Value> = done["outputs"]["2"]["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["filename"].clone())
        .collect();
    assert_eq!(
        names,
        [
            json!("batch_00001_.png"),
            json!("batch_00002_.png"),
            json!("batch_00003_.png")
        ]
    );
    let v = sim
        .get("/view?filename=batch_00002_.png&subfolder=t&type=output")
        .await;
    assert_eq!(png_size(&v.bytes), (16, 8));

    let t2i = |seed: u64, prefix: &str| {
        let mut body = header_request_body("ws_t2i_tiny_cold.jsonl");
        body["prompt"]["3"]["inputs"]["seed"] = json!(seed);
        body["prompt"]["9"]["inputs"]["filename_prefix"] = json!(prefix);
        body
    };
    let pixels = |bytes: &[u8]| {
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
            .read_info()
            .unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut buf).unwrap();
        buf
    };
    let mut images = Vec::new();
    for (i, (seed, prefix)) in [(1, "t/a"), (2, "t/b"), (1, "t/c")].into_iter().enumerate() {
        let done = sim.run(&t2i(seed, prefix), &format!("seed-{i}")).await;
        let f = &done["outputs"]["9"]["images"][0];
        let sub = f["subfolder"].as_str().unwrap();
        let v = sim
            .get(&format!(
                "/view?filename={}&subfolder={sub}&type=output",
                f["filename"].as_str().unwrap()
            ))
            .await;
        assert_eq!(png_size(&v.bytes), (64, 64));
        images.push(pixels(&v.bytes));
    }
    assert_ne!(
        images[0], images[1],
        "different seeds, different placeholders"
    );
    assert_eq!(images[0], images[2], "same seed, same placeholder");

    assert_eq!(
        sim.get("/view?filename=pic.png&subfolder=../..&type=input")
            .await
            .status,
        403
    );
    assert_eq!(
        sim.get("/view?filename=pic.png&type=input&channel=rgb")
            .await
            .media_type(),
        "image/png"
    );
    assert_eq!(sim.get("/models/no_such_folder").await.status, 404);
    sim.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_recorded() {
    let sim = Sim::start(fast()).await;
    sim.get("/history?max_items=1").await;
    sim.post_json("/interrupt", &json!({})).await;
    sim.post_raw("/prompt", "not json").await;
    let reqs = sim.handle.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(
        (reqs[0].method.as_str(), reqs[0].path.as_str()),
        ("GET", "/history")
    );
    assert_eq!(reqs[0].query.as_deref(), Some("max_items=1"));
    assert_eq!(reqs[1].body, Some(json!({})));
    assert_eq!(reqs[2].body, None);
    assert_eq!(sim.handle.interrupts(), vec![None]);
    sim.handle.clear_requests();
    assert!(sim.handle.requests().is_empty());
    sim.handle.shutdown().await;
}
