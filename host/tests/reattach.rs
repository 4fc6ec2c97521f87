//! The host's source of post-processors for jobs adopted after a restart
//! (`comfyui_mcp::reattach`): a job built by a post-processing template of the shipped pack
//! gets a processor that really runs the pack's postprocessor; a job whose template, pack or
//! parameters changed since is refused with the reason, never processed by another pack.

mod common;

use comfyui::postprocess::RgbaImage;
use comfyui::reattach::ProcessorSource;
use comfyui::{JobOrigin, JobSnapshot};
use comfyui_mcp::reattach::TemplateProcessors;
use serde_json::{Value, json};

/// Kept alive for the test's span: the simulator and the app's folders.
type Held = (simulator::SimHandle, tempfile::TempDir, tempfile::TempDir);

async fn icon_job() -> (TemplateProcessors, JobSnapshot, Held) {
    let sim = common::simulator(std::time::Duration::ZERO).await;
    sim.hold_queue(true);
    let out = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let app = common::shipped_app(&sim, out.path(), cache.path(), &[]).await;
    let args = json!({"prompt": "a sword", "width": 64, "height": 64, "steps": 1});
    let job = app
        .generate("item-icon", args.as_object().unwrap().clone())
        .await
        .expect("submitted");
    let source = TemplateProcessors::new(app.catalog_store().clone(), app.loader().clone());
    (source, job, (sim, out, cache))
}

fn refusal(source: &TemplateProcessors, job: &JobSnapshot) -> String {
    match source.processor_for(job) {
        Ok(_) => panic!("a processor was made for {job:?}"),
        Err(e) => e.message,
    }
}

#[tokio::test]
async fn a_post_processing_templates_job_gets_the_packs_processor_again() {
    let (source, job, _held) = icon_job().await;
    let processor = source.processor_for(&job).expect("made again");
    // A white square on black: the icon's background becomes transparent.
    let mut pixels = Vec::new();
    for y in 0..16u32 {
        for x in 0..16u32 {
            let inside = (4..12).contains(&x) && (4..12).contains(&y);
            let v = if inside { 255 } else { 0 };
            pixels.extend_from_slice(&[v, v, v, 255]);
        }
    }
    let done = processor
        .process(RgbaImage {
            width: 16,
            height: 16,
            pixels,
        })
        .await
        .expect("processed by the pack");
    assert!(!done.steps.is_empty(), "{done:?}");
    assert_eq!(done.image.pixels[3], 0, "the corner is transparent");
}

#[tokio::test]
async fn a_job_whose_pack_changed_unknown_template_or_parameters_are_refused_naming_why() {
    let (source, job, _held) = icon_job().await;
    let JobOrigin::Template { pack_sha256, .. } = &job.origin else {
        panic!("{:?}", job.origin)
    };
    let mut changed = job.clone();
    if let JobOrigin::Template { pack_sha256, .. } = &mut changed.origin {
        *pack_sha256 = "0".repeat(64);
    }
    let message = refusal(&source, &changed);
    assert!(
        message.contains(&format!("(sha256 {})", "0".repeat(64)))
            && message.contains(&format!("(sha256 {pack_sha256})"))
            && message.contains("only by the pack that built the graph"),
        "{message}"
    );

    let mut gone = job.clone();
    if let JobOrigin::Template { template_id, .. } = &mut gone.origin {
        *template_id = "no-such-template".into();
    }
    let message = refusal(&source, &gone);
    assert!(
        message.starts_with("template `no-such-template` is not served now (available: "),
        "{message}"
    );

    let mut params = job.clone();
    params.parameters["width"] = Value::from("wide");
    let message = refusal(&source, &params);
    assert!(
        message.starts_with("its recorded parameters no longer check: width:"),
        "{message}"
    );

    let mut workflow = job;
    workflow.origin = JobOrigin::Workflow {
        path: "w.json".into(),
        sha256: "1".repeat(64),
    };
    assert_eq!(
        refusal(&source, &workflow),
        "it was not built by a template"
    );
}

/// A job of the test pack `mini-abi2`'s `invert` (an image parameter, post-processed),
/// submitted from a 4x2 PNG.
async fn invert_job() -> (TemplateProcessors, JobSnapshot, Held, tempfile::TempDir) {
    let sim = common::simulator(std::time::Duration::ZERO).await;
    sim.hold_queue(true);
    let out = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let templates = tempfile::tempdir().unwrap();
    std::fs::copy(
        common::repo().join("tests/packs/mini-abi2.wasm"),
        templates.path().join("mini-abi2.wasm"),
    )
    .unwrap();
    let settings = common::settings(
        sim.base_url(),
        out.path(),
        templates.path(),
        cache.path(),
        &[],
    );
    let app = common::start_app(&settings).await;
    let mut png = Vec::new();
    image::DynamicImage::ImageRgba8(image::RgbaImage::new(4, 2))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    use base64::Engine as _;
    let args = json!({"image": base64::engine::general_purpose::STANDARD.encode(&png)});
    let job = app
        .generate("invert", args.as_object().unwrap().clone())
        .await
        .expect("submitted");
    let source = TemplateProcessors::new(app.catalog_store().clone(), app.loader().clone());
    (source, job, (sim, out, cache), templates)
}

#[tokio::test]
async fn an_image_parameter_is_rebuilt_from_its_recorded_upload() {
    let (source, job, _held, _templates) = invert_job().await;
    let recorded = &job.parameters["image"];
    assert_eq!(
        (recorded["width"].as_u64(), recorded["has_alpha"].as_bool()),
        (Some(4), Some(true))
    );
    let processor = source
        .processor_for(&job)
        .expect("made again from the recorded image");
    let done = processor
        .process(RgbaImage {
            width: 1,
            height: 1,
            pixels: vec![10, 20, 30, 255],
        })
        .await
        .expect("processed by the pack");
    assert_eq!(done.image.pixels, vec![245, 235, 225, 255], "inverted");

    let mut damaged = job;
    damaged.parameters["image"] = json!("just-a-name.png");
    let message = refusal(&source, &damaged);
    assert_eq!(
        message,
        "its recorded image parameter `image` is not an uploaded image's record"
    );
}
