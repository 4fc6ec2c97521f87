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
