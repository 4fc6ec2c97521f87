//! `ComfyClient` against the simulator: every call's happy path and its error reporting.

mod common;

use std::time::Duration;

use comfyui::{ClientError, ComfyClient, ComfyConfig, ImageRef};
use common::*;
use serde_json::json;
use simulator::SimConfig;

fn client(url: &str) -> ComfyClient {
    ComfyClient::new(&ComfyConfig::new(url).unwrap()).unwrap()
}

fn fast() -> SimConfig {
    SimConfig {
        step_delay: Duration::ZERO,
        ..SimConfig::default()
    }
}

#[tokio::test]
async fn catalog_models_and_stats() {
    let sim = sim(fast()).await;
    let c = client(&sim.base_url());
    let info = c.object_info().await.unwrap();
    assert!(info.get("KSampler").is_some());
    assert!(
        comfyui::nodes::NodeCatalog::from_object_info(&info)
            .unwrap()
            .contains("SaveImage")
    );
    let stats = c.system_stats().await.unwrap();
    assert!(stats["system"]["comfyui_version"].is_string());
    let folders = c.model_folders().await.unwrap();
    assert!(folders.iter().any(|f| f == "checkpoints"));
    let ckpts = c.models("checkpoints").await.unwrap().unwrap();
    assert!(
        ckpts.iter().any(|f| f == "tiny-random-sd15.safetensors"),
        "{ckpts:?}"
    );
    assert_eq!(c.models("no_such_folder").await.unwrap(), None);
    assert_eq!(c.history("never-submitted").await.unwrap(), None);
}

#[tokio::test]
async fn submit_history_view_roundtrip() {
    let sim = sim(fast()).await;
    let c = client(&sim.base_url());
    let id = uuid::Uuid::new_v4().to_string();
    let acc = c
        .submit(&id, &invert_graph("rt/inv"), "rt-client")
        .await
        .unwrap();
    assert_eq!(acc.prompt_id, id, "ComfyUI uses the id we chose");
    assert_eq!(acc.node_errors, json!({}));
    let mut entry = None;
    for _ in 0..500 {
        if let Some(e) = c.history(&id).await.unwrap() {
            entry = Some(e);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let entry = entry.expect("job shows up in history");
    assert_eq!(entry.outcome(), comfyui::HistoryOutcome::Success);
    let images = entry.images();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].subfolder, "rt");
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("x.png");
    let n = c.download_view(&images[0], &dest).await.unwrap();
    let bytes = std::fs::read(&dest).unwrap();
    assert_eq!(n, bytes.len() as u64);
    assert_eq!(&bytes[..4], b"\x89PNG");

    let missing = ImageRef::output("nope.png", "");
    let err = c.download_view(&missing, &dest).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Http { status: 404, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("GET /view?filename=nope.png"),
        "{err}"
    );
}

#[tokio::test]
async fn upload_then_load_image() {
    let sim = sim(fast()).await;
    let c = client(&sim.base_url());
    let mut png = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut png, 8, 8);
        enc.set_color(png::ColorType::Rgb);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(&[200u8; 8 * 8 * 3]).unwrap();
    }
    let r = c
        .upload_image(png, "ref.png", "mcp_up", true)
        .await
        .unwrap();
    assert_eq!(
        r,
        ImageRef {
            filename: "ref.png".into(),
            subfolder: "mcp_up".into(),
            kind: "input".into()
        }
    );
    let graph = json!({
        "1": {"class_type": "LoadImage", "inputs": {"image": "mcp_up/ref.png"}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "up"}}
    });
    let id = uuid::Uuid::new_v4().to_string();
    c.submit(&id, &graph, "up-client").await.unwrap();
}

#[tokio::test]
async fn queue_delete_and_interrupt_calls() {
    let sim = sim(fast()).await;
    let c = client(&sim.base_url());
    sim.hold_queue(true);
    let ids: Vec<String> = (0..3).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    for (i, id) in ids.iter().enumerate() {
        c.submit(id, &empty_image_graph(1, &format!("q{i}")), "q")
            .await
            .unwrap();
    }
    let q = c.queue().await.unwrap();
    assert!(q.running().is_empty());
    let order: Vec<&str> = q.pending().iter().map(|e| e.prompt_id.as_str()).collect();
    assert_eq!(
        order,
        ids.iter().map(String::as_str).collect::<Vec<_>>(),
        "run order"
    );
    assert_eq!(q.position(&ids[2]), Some(2));
    assert_eq!(q.pending()[0].client_id.as_deref(), Some("q"));
    c.delete_queued(&[&ids[1]]).await.unwrap();
    let q = c.queue().await.unwrap();
    assert!(!q.contains(&ids[1]) && q.contains(&ids[0]) && q.contains(&ids[2]));
    c.interrupt(Some(&ids[0])).await.unwrap();
    c.interrupt(None).await.unwrap();
    assert_eq!(sim.interrupts(), vec![Some(ids[0].clone()), None]);
    sim.hold_queue(false);
}

#[tokio::test]
async fn errors_name_url_request_and_answer() {
    let sim = sim(fast()).await;
    let c = client(&sim.base_url());
    sim.faults().fail_http(1, 500);
    let err = c.queue().await.unwrap_err();
    let ClientError::Http {
        status,
        body,
        request,
        url,
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!((*status, request.as_str()), (500, "GET /queue"));
    assert_eq!(url, &format!("{}/", sim.base_url()));
    assert!(!body.is_empty());

    // An answer slower than the timeout.
    sim.faults().http_delay(Duration::from_secs(5));
    let slow = ComfyClient::new(
        &ComfyConfig::new(&sim.base_url())
            .unwrap()
            .with_timeout(Duration::from_millis(200))
            .unwrap(),
    )
    .unwrap();
    let err = slow.system_stats().await.unwrap_err();
    assert!(matches!(err, ClientError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("GET /system_stats"), "{err}");
    sim.faults().http_delay(Duration::ZERO);

    // Nobody listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = client(&format!("http://127.0.0.1:{port}/base"));
    let err = down.submit("x", &json!({}), "c").await.unwrap_err();
    assert!(err.is_unreachable(), "{err}");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "ComfyUI at http://127.0.0.1:{port}/base/ is unreachable (POST /prompt)"
        )),
        "{text}"
    );

    // The 500 text/plain answer to a body ComfyUI cannot handle is passed on, not `Rejected`.
    let err = c.submit("y", &json!([1, 2]), "c").await.unwrap_err();
    assert!(
        matches!(err, ClientError::Http { status: 500, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("Server got itself in trouble"),
        "{err}"
    );
}
