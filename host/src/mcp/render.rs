//! What jobs and templates look like to clients: the status JSON of a job, its image
//! entries, the inline thumbnails and resource links of finished images, and the parameter
//! list of a template.
//!
//! Invariants: an image without an inline thumbnail (too large, unreadable) is still
//! linked, and its entry says why the thumbnail was left out; thumbnails are made on the
//! shared [`ThumbnailPool`], never on an async worker.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use comfyui::{JobSnapshot, JobState};
use pack_runtime::TemplateInfo;
use rmcp::model::{ContentBlock, Resource};
use serde_json::{Map, Value, json};

use super::thumbnails::ThumbnailPool;
use crate::uris;

/// The status JSON of a job, as `get_workflow_status` and the `comfyui://jobs/…` resource
/// report it: `prompt_id`, `state`, `progress` (0..1), `queue_position`, `execution_time`
/// (seconds, `null` until known), `images` (see [`image_entries`]), `metadata`,
/// `parameters`, timestamps, and `error` (`{kind, node_id, node_type, exception_type,
/// message}`; `kind` is `execution`, `execution_timeout` or `postprocess_failed`) when it
/// failed. A job whose template post-processes its images also has `postprocessing`
/// (`{done, total}` images) and, once the stage ran, `postprocess_ms`.
pub fn job_json(job: &JobSnapshot) -> Value {
    let mut out = Map::new();
    out.insert("prompt_id".into(), json!(job.prompt_id));
    out.insert("state".into(), json!(job.state.as_str()));
    out.insert("progress".into(), json!(job.progress.clamp(0.0, 1.0)));
    out.insert("queue_position".into(), json!(job.queue_position));
    out.insert("execution_time".into(), json!(job.execution_time));
    if !job.backend.is_empty() {
        out.insert("backend".into(), json!(job.backend));
    }
    if let Some(stage) = &job.postprocessing {
        out.insert("postprocessing".into(), json!(stage));
        out.insert("postprocess_ms".into(), json!(job.postprocess_ms));
    }
    out.insert("images".into(), Value::Array(image_entries(job)));
    let metadata = match &job.metadata {
        Value::Object(m) => Value::Object(m.clone()),
        _ => json!({}),
    };
    out.insert("metadata".into(), metadata);
    out.insert("parameters".into(), job.parameters.clone());
    if let Some(error) = &job.error {
        out.insert(
            "error".into(),
            json!({
                "kind": error.kind,
                "node_id": error.node_id,
                "node_type": error.node_type,
                "exception_type": error.exception_type,
                "message": error.message,
            }),
        );
    }
    if job.node_errors.as_object().is_some_and(|m| !m.is_empty()) {
        out.insert("node_errors".into(), job.node_errors.clone());
    }
    if !job.warnings.is_empty() {
        out.insert("warnings".into(), json!(job.warnings));
    }
    out.insert("submitted_at".into(), json!(job.submitted_at));
    out.insert("started_at".into(), json!(job.started_at));
    out.insert("finished_at".into(), json!(job.finished_at));
    Value::Object(out)
}

/// The result JSON of a generation (`generate_image`, a template tool, `load_workflow`):
/// [`job_json`] plus `status` (the state) and `execution_time` as a number (0.0 until the
/// job has run).
pub fn generation_json(job: &JobSnapshot) -> Value {
    let mut out = job_json(job);
    out["status"] = json!(job.state.as_str());
    out["execution_time"] = json!(job.execution_time.unwrap_or(0.0));
    out
}

/// One entry per image ComfyUI reported, in order: `{filename, subfolder, type}` and, once
/// the file is on disk, `path` (absolute), `uri` (`comfyui://images/<prompt_id>/<file>`),
/// `width`, `height`, `bytes` and, for a post-processed image, `postprocess` (`{steps:
/// [{name, detail}], ms, processor_ms, source_width, source_height, raw_filename?}`).
pub fn image_entries(job: &JobSnapshot) -> Vec<Value> {
    job.images
        .iter()
        .enumerate()
        .map(|(i, image)| {
            let mut entry = json!({
                "filename": image.filename,
                "subfolder": image.subfolder,
                "type": image.kind,
            });
            if let Some(file) = job.files.get(i) {
                entry["path"] = json!(absolute(&file.path).display().to_string());
                entry["uri"] = json!(uris::image_uri(&job.prompt_id, &file.filename));
                entry["width"] = json!(file.width);
                entry["height"] = json!(file.height);
                entry["bytes"] = json!(file.bytes);
                if let Some(post) = &file.postprocess {
                    entry["postprocess"] = json!(post);
                }
            }
            entry
        })
        .collect()
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// The content blocks of a finished job's images (an `image` block with the thumbnail and
/// a `resource_link` to the full image, per image) and the updated structured result: each
/// `images[i]` gains `thumbnail` (`"inline image/png"`, `"inline image/jpeg"` or
/// `"omitted: <reason>"`). Jobs that are not completed get no blocks.
pub async fn attach_images(
    pool: &ThumbnailPool,
    job: &JobSnapshot,
    mut value: Value,
) -> (Value, Vec<ContentBlock>) {
    if job.state != JobState::Completed || job.files.is_empty() {
        return (value, Vec::new());
    }
    let mut blocks = Vec::with_capacity(job.files.len() * 2);
    for (i, file) in job.files.iter().enumerate() {
        let note = match pool.thumbnail_of_file(file.path.clone()).await {
            Ok(thumb) => {
                let data = base64::engine::general_purpose::STANDARD.encode(&thumb.data);
                blocks.push(ContentBlock::image(data, thumb.mime_type));
                format!("inline {}", thumb.mime_type)
            }
            Err(e) => {
                tracing::warn!(prompt_id = %job.prompt_id, file = %file.filename, error = %e, "no inline thumbnail");
                format!("omitted: {e}")
            }
        };
        let uri = uris::image_uri(&job.prompt_id, &file.filename);
        blocks.push(ContentBlock::resource_link(
            Resource::new(uri, file.filename.clone())
                .with_mime_type("image/png")
                .with_size(file.bytes)
                .with_description(format!(
                    "Full-size image {}x{} of job {}",
                    file.width, file.height, job.prompt_id
                )),
        ));
        if let Some(entry) = value
            .get_mut("images")
            .and_then(Value::as_array_mut)
            .and_then(|images| images.get_mut(i))
        {
            entry["thumbnail"] = json!(note);
        }
    }
    (value, blocks)
}

/// Resource links (no thumbnails) to a completed job's images.
pub fn image_links(job: &JobSnapshot) -> Vec<ContentBlock> {
    if job.state != JobState::Completed {
        return Vec::new();
    }
    job.files
        .iter()
        .map(|file| {
            ContentBlock::resource_link(
                Resource::new(
                    uris::image_uri(&job.prompt_id, &file.filename),
                    file.filename.clone(),
                )
                .with_mime_type("image/png")
                .with_size(file.bytes),
            )
        })
        .collect()
}

/// The `parameters` list of a template as `list_workflows` and template resources show
/// it: `{name, type, required, description, default?, min?, max?, multiple_of?, choices?,
/// aliases?}`.
pub fn parameters_json(info: &TemplateInfo) -> Vec<Value> {
    info.params
        .iter()
        .map(|p| {
            let mut out = json!({
                "name": p.name,
                "type": p.kind.json_type(),
                "required": p.required,
                "description": p.description,
            });
            if let Some(d) = &p.default {
                out["default"] = d.to_json();
            }
            if let Some(min) = p.minimum {
                out["min"] = number(min, p.kind);
            }
            if let Some(max) = p.maximum {
                out["max"] = number(max, p.kind);
            }
            if let Some(m) = p.multiple_of {
                out["multiple_of"] = json!(m);
            }
            if !p.choices.is_empty() {
                out["choices"] = json!(p.choices);
            }
            if !p.aliases.is_empty() {
                let aliases: Map<String, Value> = p
                    .aliases
                    .iter()
                    .map(|a| (a.name.clone(), json!(a.target)))
                    .collect();
                out["aliases"] = Value::Object(aliases);
            }
            out
        })
        .collect()
}

fn number(x: f64, kind: pack_runtime::ParamKind) -> Value {
    if kind == pack_runtime::ParamKind::Integer && x.fract() == 0.0 && x.abs() < 9.0e15 {
        json!(x as i64)
    } else {
        json!(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use comfyui::{ImageRef, JobFailure, JobOrigin, SavedImage};

    fn job(state: JobState) -> JobSnapshot {
        JobSnapshot {
            prompt_id: "p-1".into(),
            state,
            progress: 0.5,
            queue_position: Some(0),
            execution_time: None,
            postprocess_ms: None,
            postprocessing: None,
            images: vec![ImageRef {
                filename: "a.png".into(),
                subfolder: String::new(),
                kind: "output".into(),
            }],
            files: vec![SavedImage {
                path: PathBuf::from("/out/p-1/a.png"),
                filename: "a.png".into(),
                width: 64,
                height: 32,
                bytes: 100,
                postprocess: None,
            }],
            error: None,
            node_errors: json!({}),
            submitted_at: 1.0,
            started_at: None,
            finished_at: None,
            origin: JobOrigin::Workflow {
                path: "w.json".into(),
                sha256: "00".into(),
            },
            parameters: json!({"seed": 1}),
            metadata: json!({"seed": 1, "template": "t"}),
            backend: "sim".into(),
            warnings: Vec::new(),
        }
    }

    #[test]
    fn job_json_reports_images_with_uri_and_size() {
        let v = job_json(&job(JobState::Completed));
        assert_eq!(v["state"], "completed");
        assert_eq!(v["execution_time"], Value::Null);
        let img = &v["images"][0];
        assert_eq!(img["filename"], "a.png");
        assert_eq!(img["type"], "output");
        assert_eq!(img["uri"], "comfyui://images/p-1/a.png");
        assert_eq!(img["width"], 64);
        assert_eq!(img["path"], "/out/p-1/a.png");
        assert!(v.get("error").is_none());
    }

    #[test]
    fn generation_json_has_status_and_zero_time() {
        let v = generation_json(&job(JobState::Queued));
        assert_eq!(v["status"], "queued");
        assert_eq!(v["execution_time"], 0.0);
        assert_eq!(v["metadata"]["template"], "t");
    }

    #[test]
    fn failed_job_reports_error_fields() {
        let mut j = job(JobState::Failed);
        j.error = Some(JobFailure {
            kind: comfyui::FailureKind::Execution,
            node_id: Some("8".into()),
            node_type: Some("VAEDecode".into()),
            exception_type: Some("RuntimeError".into()),
            message: "boom".into(),
        });
        let v = job_json(&j);
        assert_eq!(v["error"]["node_id"], "8");
        assert_eq!(v["error"]["node_type"], "VAEDecode");
        assert_eq!(v["error"]["message"], "boom");
    }

    #[test]
    fn post_processed_jobs_report_the_stage_and_each_image_s_steps() {
        use comfyui::postprocess::{ImagePostprocess, PostprocessProgress, PostprocessStep};
        let plain = job_json(&job(JobState::Completed));
        assert!(plain.get("postprocess_ms").is_none() && plain.get("postprocessing").is_none());
        assert!(plain["images"][0].get("postprocess").is_none());
        let mut j = job(JobState::Running);
        j.postprocessing = Some(PostprocessProgress { done: 0, total: 1 });
        let running = job_json(&j);
        assert_eq!(running["postprocessing"], json!({"done": 0, "total": 1}));
        assert_eq!(running["postprocess_ms"], Value::Null, "not run yet");
        j.state = JobState::Completed;
        j.postprocessing = Some(PostprocessProgress { done: 1, total: 1 });
        j.postprocess_ms = Some(8.5);
        j.files[0].postprocess = Some(ImagePostprocess {
            steps: vec![PostprocessStep {
                name: "palette".into(),
                detail: "16 colours".into(),
            }],
            ms: 8.0,
            processor_ms: 5.0,
            source_width: 128,
            source_height: 64,
            raw_filename: None,
        });
        let done = job_json(&j);
        assert_eq!(done["postprocess_ms"], 8.5);
        assert_eq!(
            done["images"][0]["postprocess"],
            json!({"steps": [{"name": "palette", "detail": "16 colours"}], "ms": 8.0,
                   "processor_ms": 5.0, "source_width": 128, "source_height": 64})
        );
    }
}
