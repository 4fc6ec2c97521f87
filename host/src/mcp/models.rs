//! The connected ComfyUI's model files, for agents picking a `checkpoint` (or a LoRA, VAE,
//! upscaler, ...): the `list_models` tool and the `comfyui://models/{folder}` resources, both
//! from the backend's cached [`ModelSnapshot`] (`GET /models`, `GET /models/{folder}`).
//!
//! Invariants: a folder's list never holds more than
//! [`ModelLimits::max_listed_models`](crate::missing_model::ModelLimits) names (the rest are
//! counted in `omitted`, `count` is always the full number); an unknown folder is an error
//! naming the folders ComfyUI has; an unreachable ComfyUI is the app's usual unreachable
//! error; a folder name from a client is cut to [`SHOWN_FOLDER_CHARS`] characters in messages.
//! The tool's outcome is typed ([`Outcome`]), so MCP and the plain HTTP API render it alike.

use std::sync::Arc;

use comfyui::ModelSnapshot;
use rmcp::model::{JsonObject, Resource, ResourceContents, ResourceTemplate};
use serde_json::{Value, json};

use super::outcome::Outcome;
use crate::app::App;
use crate::error::AppError;
use crate::uris::{SCHEME, models_uri};

/// The tool listing model files.
pub const LIST_MODELS: &str = "list_models";

/// A client's folder name longer than this (in characters) is cut in messages.
pub const SHOWN_FOLDER_CHARS: usize = 120;

/// One folder: its name, URI, full count, at most `cap` names and how many were left out.
pub fn folder_json(folder: &str, files: &[String], cap: usize) -> Value {
    let listed: Vec<&String> = files.iter().take(cap).collect();
    json!({
        "folder": folder,
        "uri": models_uri(folder),
        "count": files.len(),
        "files": listed,
        "omitted": files.len() - listed.len(),
    })
}

/// Every folder (or just `folder`) of the connected ComfyUI, capped per folder. On a farm
/// the folders are merged and each gets `where`: the backends having each listed file.
pub async fn list(app: &App, folder: Option<&str>) -> Result<Value, AppError> {
    let by_backend = if app.farm().is_farm() {
        app.models_by_backend().await?
    } else {
        Vec::new()
    };
    let models = app.models().await?;
    let cap = app.model_limits().max_listed_models;
    let one = |name: &str, files: &[String]| {
        let mut entry = folder_json(name, files, cap);
        if !by_backend.is_empty() {
            entry["where"] = where_json(name, &files[..files.len().min(cap)], &by_backend);
        }
        entry
    };
    let folders: Vec<Value> = match folder {
        None => models
            .folders
            .iter()
            .map(|(name, files)| one(name, files))
            .collect(),
        Some(name) => vec![one(name, files_of(&models, name)?)],
    };
    Ok(json!({
        "folders": folders,
        "max_per_folder": cap,
    }))
}

/// `{file: [backend names]}` for `files` of `folder`.
fn where_json(
    folder: &str,
    files: &[String],
    by_backend: &[(String, Arc<ModelSnapshot>)],
) -> Value {
    let entries = files.iter().map(|file| {
        let names: Vec<&str> = by_backend
            .iter()
            .filter(|(_, models)| models.folders.get(folder).is_some_and(|f| f.contains(file)))
            .map(|(name, _)| name.as_str())
            .collect();
        (file.clone(), json!(names))
    });
    Value::Object(entries.collect())
}

fn files_of<'m>(models: &'m ModelSnapshot, folder: &str) -> Result<&'m [String], AppError> {
    models
        .folders
        .get(folder)
        .map(Vec::as_slice)
        .ok_or_else(|| AppError::UnknownModelFolder {
            folder: folder.chars().take(SHOWN_FOLDER_CHARS).collect(),
            available: folder_names(models),
        })
}

fn folder_names(models: &ModelSnapshot) -> String {
    if models.folders.is_empty() {
        return "none (ComfyUI lists no model folders)".to_owned();
    }
    models
        .folders
        .keys()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `list_models` tool.
pub async fn call(app: &App, folder: Option<&str>) -> Outcome {
    match list(app, folder).await {
        Ok(value) => Outcome::success(value),
        Err(e) => e.into(),
    }
}

/// The `comfyui://models/<folder>` resources, one per folder of the model files last fetched
/// from ComfyUI (never waiting for it: a hanging ComfyUI does not hold up `resources/list`);
/// none before ComfyUI first answered.
pub fn resources(app: &App) -> Vec<Resource> {
    let Some(models) = app.known_models() else {
        return Vec::new();
    };
    models
        .folders
        .iter()
        .map(|(folder, files)| {
            Resource::new(models_uri(folder), format!("models/{folder}"))
                .with_title(format!("ComfyUI models: {folder}"))
                .with_description(format!(
                    "The {} file(s) in ComfyUI's models/{folder} folder (e.g. values for `checkpoint`)",
                    files.len()
                ))
                .with_mime_type("application/json")
        })
        .collect()
}

/// The resource template of model folders.
pub fn resource_template() -> ResourceTemplate {
    ResourceTemplate::new(format!("{SCHEME}models/{{folder}}"), "models")
        .with_title("Model files")
        .with_description(
            "The model files in one of ComfyUI's model folders (checkpoints, loras, vae, ...), as list_models reports them",
        )
        .with_mime_type("application/json")
}

/// Reads `comfyui://models/<folder>`.
pub async fn read(app: &App, uri: &str, folder: &str) -> Result<ResourceContents, AppError> {
    let models = app.models().await?;
    let value = folder_json(
        folder,
        files_of(&models, folder)?,
        app.model_limits().max_listed_models,
    );
    let text = serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string());
    Ok(ResourceContents::text(text, uri).with_mime_type("application/json"))
}

/// Input schema of `list_models`.
pub fn input_schema() -> Arc<JsonObject> {
    object(json!({
        "type": "object",
        "properties": {
            "folder": {
                "type": "string",
                "description": "Only this model folder (e.g. \"checkpoints\", \"loras\", \"vae\", \"upscale_models\"); omitted: every folder ComfyUI has.",
            },
        },
        "additionalProperties": false,
    }))
}

/// Output schema of `list_models`.
pub fn output_schema() -> Arc<JsonObject> {
    object(json!({
        "type": "object",
        "properties": {
            "folders": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "folder": {"type": "string"},
                        "uri": {"type": "string", "description": "comfyui://models/<folder>: the same list as a resource."},
                        "count": {"type": "integer", "description": "Files in the folder in all."},
                        "files": {"type": "array", "items": {"type": "string"}},
                        "omitted": {"type": "integer", "description": "Files beyond max_per_folder, not listed."},
                    },
                    "required": ["folder", "count", "files", "omitted"],
                },
            },
            "max_per_folder": {"type": "integer"},
            "error": {
                "type": "object",
                "properties": {"kind": {"type": "string"}, "message": {"type": "string"}, "details": {}},
            },
        },
        "anyOf": [{"required": ["folders"]}, {"required": ["error"]}],
    }))
}

fn object(value: Value) -> Arc<JsonObject> {
    match value {
        Value::Object(map) => Arc::new(map),
        _ => unreachable!("schemas are built as JSON objects"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_lists_are_capped_and_counted() {
        let files: Vec<String> = (0..5).map(|i| format!("m{i}.safetensors")).collect();
        let value = folder_json("checkpoints", &files, 2);
        assert_eq!(value["count"], 5);
        assert_eq!(value["omitted"], 3);
        assert_eq!(value["files"], json!(["m0.safetensors", "m1.safetensors"]));
        assert_eq!(value["uri"], "comfyui://models/checkpoints");
        let all = folder_json("loras", &files, 5);
        assert_eq!(all["omitted"], 0);
        assert_eq!(all["files"].as_array().map(Vec::len), Some(5));
    }

    #[test]
    fn unknown_folders_name_the_ones_that_exist() {
        let mut models = ModelSnapshot::default();
        models.folders.insert("checkpoints".into(), vec![]);
        models
            .folders
            .insert("loras".into(), vec!["a.safetensors".into()]);
        let long = "x".repeat(10_000);
        let Err(e) = files_of(&models, &long) else {
            panic!("unknown folder accepted");
        };
        let message = e.to_string();
        assert!(
            message.ends_with("its folders: checkpoints, loras"),
            "{message}"
        );
        assert!(message.len() < 300, "{message}");
        assert_eq!(e.to_json()["kind"], "unknown_model_folder");
        assert_eq!(
            files_of(&models, "loras").map(<[String]>::len).ok(),
            Some(1)
        );
    }
}
