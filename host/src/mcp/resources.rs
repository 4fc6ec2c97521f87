//! The `comfyui://` resources: templates (`comfyui://templates/<id>`), the catalog's pack
//! problems (`comfyui://catalog/errors`), jobs (`comfyui://jobs/<prompt_id>`) and their
//! images (`comfyui://images/<prompt_id>/<filename>`), ComfyUI's model folders
//! (`comfyui://models/<folder>`, see [`models`](super::models)), plus the bounded list of
//! recent jobs (of the job store: every server's) that `resources/list` shows.
//!
//! Invariants: URI path segments are percent-encoded when built and decoded when parsed,
//! so any template id or file name round-trips; an image is only ever read through
//! [`App::image_path`](crate::app::App::image_path), which serves files of our own jobs
//! only; `resources/list` never shows more than [`RECENT_JOBS`] jobs.

use base64::Engine as _;
use rmcp::ErrorData as McpError;
use rmcp::model::{
    ListResourceTemplatesResult, ListResourcesResult, ReadResourceResult, Resource,
    ResourceContents, ResourceTemplate,
};
use serde_json::{Value, json};

use super::models;
use super::render;
use crate::app::App;
use crate::catalog::TemplateEntry;
use crate::error::AppError;
pub use crate::uris::{
    ERRORS_URI, ResourceRef, SCHEME, image_uri, job_uri, parse_uri, template_uri,
};

/// How many recent jobs `resources/list` shows.
pub const RECENT_JOBS: usize = 50;

/// `resources/list`: every template, the catalog errors, and the recent jobs with their
/// images.
pub async fn list(app: &App) -> ListResourcesResult {
    let catalog = app.catalog();
    let mut items: Vec<Resource> = catalog
        .templates()
        .iter()
        .map(|t| {
            Resource::new(template_uri(&t.info.id), t.info.id.clone())
                .with_title(t.info.name.clone())
                .with_description(format!(
                    "Template `{}` of pack {} {}: its parameters and JSON Schema. {}",
                    t.info.id, t.pack.name, t.pack.version, t.info.description
                ))
                .with_mime_type("application/json")
        })
        .collect();
    items.push(
        Resource::new(ERRORS_URI, "catalog-errors")
            .with_title("Pack problems")
            .with_description(format!(
                "Packs that failed to load or self-test, and template id clashes ({} now)",
                catalog.errors().len()
            ))
            .with_mime_type("application/json"),
    );
    // The newest jobs of the job store (every server's), then one queue snapshot for all of
    // them (not one `GET /queue` per queued job).
    let query = comfyui::store::JobQuery {
        limit: RECENT_JOBS,
        ..Default::default()
    };
    let ids: Vec<String> = match app.comfy().list_jobs(query).await {
        Ok(page) => page.jobs.into_iter().map(|j| j.prompt_id).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "resources/list: the job store could not be read");
            Vec::new()
        }
    };
    let jobs = app.comfy().statuses(&ids).await;
    for (id, job) in ids.into_iter().zip(jobs) {
        // Unknown now (pruned meanwhile), or unreadable (logged where it was read).
        let Ok(Some(job)) = job else {
            continue;
        };
        items.push(
            Resource::new(job_uri(&id), format!("job {id}"))
                .with_description(format!("Status of job {id} ({})", job.state))
                .with_mime_type("application/json"),
        );
        for file in &job.files {
            items.push(
                Resource::new(image_uri(&id, &file.filename), file.filename.clone())
                    .with_description(format!("Image {}x{} of job {id}", file.width, file.height))
                    .with_mime_type("image/png")
                    .with_size(file.bytes),
            );
        }
    }
    items.extend(models::resources(app));
    ListResourcesResult::with_all_items(items)
}

/// `resources/templates/list`: jobs and images by prompt id.
pub fn templates() -> ListResourceTemplatesResult {
    ListResourceTemplatesResult::with_all_items(vec![
        ResourceTemplate::new(format!("{SCHEME}jobs/{{prompt_id}}"), "job")
            .with_title("Job status")
            .with_description(
                "Status JSON of a job submitted through this server (same as get_workflow_status)",
            )
            .with_mime_type("application/json"),
        ResourceTemplate::new(
            format!("{SCHEME}images/{{prompt_id}}/{{filename}}"),
            "image",
        )
        .with_title("Job image")
        .with_description("A full-size PNG image of a finished job")
        .with_mime_type("image/png"),
        ResourceTemplate::new(format!("{SCHEME}templates/{{id}}"), "template")
            .with_title("Template")
            .with_description("A template's description, parameters and JSON Schema")
            .with_mime_type("application/json"),
        models::resource_template(),
    ])
}

/// The JSON document of a template resource.
pub fn template_json(entry: &TemplateEntry) -> Value {
    json!({
        "id": entry.info.id,
        "name": entry.info.name,
        "description": entry.info.description,
        "category": entry.info.category,
        "tags": entry.info.tags,
        "default_width": entry.info.default_width,
        "default_height": entry.info.default_height,
        "pack": {
            "name": entry.pack.name,
            "version": entry.pack.version,
            "sha256": entry.pack.sha256,
        },
        "parameters": render::parameters_json(&entry.info),
        "input_schema": entry.input_schema,
    })
}

fn json_contents(uri: &str, value: &Value) -> ResourceContents {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    ResourceContents::text(text, uri).with_mime_type("application/json")
}

fn not_found(uri: &str, why: impl std::fmt::Display) -> McpError {
    McpError::resource_not_found(
        format!("resource {uri} not found: {why}"),
        Some(json!({ "uri": uri })),
    )
}

/// `resources/read`.
pub async fn read(app: &App, uri: &str) -> Result<ReadResourceResult, McpError> {
    let Some(target) = parse_uri(uri) else {
        return Err(not_found(
            uri,
            "this server serves comfyui://templates/<id>, comfyui://catalog/errors, comfyui://jobs/<prompt_id>, comfyui://images/<prompt_id>/<filename> and comfyui://models/<folder>",
        ));
    };
    let contents = match target {
        ResourceRef::Template(id) => {
            let catalog = app.catalog();
            let entry = catalog.template(&id).ok_or_else(|| {
                not_found(
                    uri,
                    format!(
                        "unknown template `{id}`; available templates: {}",
                        catalog.template_ids()
                    ),
                )
            })?;
            json_contents(uri, &template_json(entry))
        }
        ResourceRef::CatalogErrors => {
            let catalog = app.catalog();
            let errors: Vec<Value> = catalog
                .errors()
                .iter()
                .map(|p| json!({"path": p.path.display().to_string(), "error": p.error}))
                .collect();
            json_contents(uri, &json!({ "errors": errors }))
        }
        ResourceRef::Models(folder) => {
            models::read(app, uri, &folder).await.map_err(|e| match e {
                AppError::UnknownModelFolder { .. } => not_found(uri, e),
                e => McpError::internal_error(e.to_string(), Some(e.to_json())),
            })?
        }
        ResourceRef::Job(id) => {
            let job = app.status(&id).await.map_err(|e| not_found(uri, e))?;
            json_contents(uri, &render::job_json(&job))
        }
        ResourceRef::Image {
            prompt_id,
            filename,
        } => {
            let path = app
                .image_path(&prompt_id, &filename)
                .await
                .map_err(|e| not_found(uri, e))?;
            let bytes = tokio::fs::read(&path).await.map_err(|e| {
                McpError::internal_error(
                    format!("could not read image {}: {e}", path.display()),
                    None,
                )
            })?;
            let blob = base64::engine::general_purpose::STANDARD.encode(bytes);
            ResourceContents::blob(blob, uri).with_mime_type("image/png")
        }
    };
    Ok(ReadResourceResult::new(vec![contents]))
}
