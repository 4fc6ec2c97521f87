//! The guide's "Missing model file" error: a graph (a pack's or a workflow file's) names a
//! model file ComfyUI does not have. Both places that can notice it are explained here:
//! the graph check ([`AppError::InvalidGraph`], a `value_not_in_list` defect) and ComfyUI's own
//! validation answer ([`ClientError::Rejected`], `prompt_outputs_failed_validation` with a
//! `value_not_in_list` node error). Either becomes [`AppError::MissingModel`], which names the
//! model folder and the files installed there, closest matches first.
//!
//! Which inputs take model files: an input whose choices are all files of one model folder of
//! the connected ComfyUI (`GET /models/{folder}`; the smallest such folder wins), or, when
//! ComfyUI lists no choices at all (nothing of that kind is installed), a loader input of
//! [`LOADER_INPUTS`].
//!
//! Budgets: at most [`ModelLimits::missing_model_choices`] installed names are listed per
//! missing file (the count of all is always given); at most `max_entries` missing files are
//! explained per error (the graph check's error cap); names are compared on their first
//! [`COMPARED_CHARS`] characters, so ranking a folder costs at most that squared per file.
//!
//! Invariants: an error that names no missing model file is returned unchanged; the original
//! error is kept as the cause (its message follows, its JSON is under `details.cause`).

use comfyui::error::rejected_node_errors;
use comfyui::graph::{GraphErrorKind, GraphErrors, bounded_edit_distance};
use comfyui::nodes::NodeCatalog;
use comfyui::{ClientError, ModelSnapshot};
use serde_json::{Value, json};

use crate::error::AppError;

/// Characters of a name compared when ranking installed files.
pub const COMPARED_CHARS: usize = 64;

/// Default of [`ModelLimits::missing_model_choices`].
pub const DEFAULT_MISSING_MODEL_CHOICES: usize = 10;

/// Default of [`ModelLimits::max_listed_models`].
pub const DEFAULT_MAX_LISTED_MODELS: usize = 500;

/// Loader inputs that take model files when ComfyUI lists no choices for them:
/// `(class, input, folder)`; a `*` class matches any class.
pub const LOADER_INPUTS: [(&str, &str, &str); 9] = [
    ("*", "ckpt_name", "checkpoints"),
    ("*", "lora_name", "loras"),
    ("*", "vae_name", "vae"),
    ("*", "unet_name", "diffusion_models"),
    ("*", "control_net_name", "controlnet"),
    ("CLIPVisionLoader", "clip_name", "clip_vision"),
    ("*", "clip_name", "text_encoders"),
    ("UpscaleModelLoader", "model_name", "upscale_models"),
    ("*", "style_model_name", "style_models"),
];

/// The model-file budgets of the app (this explanation, and the model lists of `list_models`
/// and `comfyui://models/{folder}`): plain data, defaults written once in
/// [`ModelLimits::DEFAULT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelLimits {
    /// Installed file names listed per missing model file, closest first.
    /// Server setting: `COMFYUI_MCP_MISSING_MODEL_CHOICES`.
    pub missing_model_choices: usize,
    /// File names listed per model folder; the others are counted.
    /// Server setting: `COMFYUI_MCP_MAX_LISTED_MODELS`.
    pub max_listed_models: usize,
}

impl ModelLimits {
    /// The defaults.
    pub const DEFAULT: ModelLimits = ModelLimits {
        missing_model_choices: DEFAULT_MISSING_MODEL_CHOICES,
        max_listed_models: DEFAULT_MAX_LISTED_MODELS,
    };
}

impl Default for ModelLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// One model file a graph asks for that ComfyUI does not have.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MissingModel {
    /// The node asking for it.
    pub node_id: String,
    /// That node's class.
    pub class_type: String,
    /// The input naming the file.
    pub input: String,
    /// The file name asked for.
    pub requested: String,
    /// The model folder of that input (`checkpoints`, `loras`, ...).
    pub folder: String,
    /// Installed files of that folder, closest to `requested` first, at most the cap.
    pub installed: Vec<String>,
    /// How many files that folder holds in all.
    pub installed_count: usize,
}

impl MissingModel {
    /// One line: where, what was asked for, and what is installed.
    pub fn line(&self) -> String {
        let installed = if self.installed_count == 0 {
            format!("nothing is installed in models/{}", self.folder)
        } else {
            let more = if self.installed_count > self.installed.len() {
                ", ..."
            } else {
                ""
            };
            let noun = if self.installed_count == 1 {
                "file"
            } else {
                "files"
            };
            format!(
                "installed in models/{} (closest first): {}{more} ({} {noun})",
                self.folder,
                self.installed.join(", "),
                self.installed_count
            )
        };
        format!(
            "node {} ({}) input `{}` asks for {:?}, which ComfyUI does not have; {installed}",
            self.node_id, self.class_type, self.input, self.requested
        )
    }

    /// All lines of a report, then what to do.
    pub fn describe(models: &[MissingModel]) -> String {
        let mut out: Vec<String> = models.iter().map(MissingModel::line).collect();
        out.push(
            "pick an installed file (list_models lists every folder) or put the file into ComfyUI's models folder"
                .to_owned(),
        );
        out.join("\n")
    }
}

/// `error` as [`AppError::MissingModel`] when it is about model files ComfyUI does not have;
/// otherwise `error` unchanged. `nodes` is the catalog the graph was checked against.
pub fn explain(
    error: AppError,
    nodes: &NodeCatalog,
    models: &ModelSnapshot,
    limits: &ModelLimits,
    max_entries: usize,
) -> AppError {
    let missing = match &error {
        AppError::InvalidGraph(errors) => from_graph_errors(errors, nodes, models, limits),
        AppError::ComfyUi(ClientError::Rejected { node_errors, .. }) => {
            from_node_errors(node_errors, models, limits)
        }
        _ => Vec::new(),
    };
    if missing.is_empty() {
        return error;
    }
    AppError::MissingModel {
        models: missing.into_iter().take(max_entries.max(1)).collect(),
        cause: Box::new(error),
    }
}

fn from_graph_errors(
    errors: &GraphErrors,
    nodes: &NodeCatalog,
    models: &ModelSnapshot,
    limits: &ModelLimits,
) -> Vec<MissingModel> {
    errors
        .iter()
        .filter(|e| e.kind == GraphErrorKind::ValueNotInList)
        .filter_map(|e| {
            let (node_id, class, input, requested) = (
                e.node_id.as_deref()?,
                e.class_type.as_deref()?,
                e.input.as_deref()?,
                e.received.as_deref()?,
            );
            let choices = nodes.choices(class, input)?;
            let folder = folder_of(class, input, choices, models)?;
            Some(missing(
                node_id, class, input, requested, folder, models, limits,
            ))
        })
        .collect()
}

fn from_node_errors(
    node_errors: &Value,
    models: &ModelSnapshot,
    limits: &ModelLimits,
) -> Vec<MissingModel> {
    let mut out = Vec::new();
    for (node_id, class, e) in rejected_node_errors(node_errors) {
        if e.get("type").and_then(Value::as_str) != Some("value_not_in_list") {
            continue;
        }
        let extra = e.get("extra_info");
        let field = |name: &str| extra.and_then(|x| x.get(name));
        let (Some(input), Some(requested)) = (
            field("input_name").and_then(Value::as_str),
            field("received_value").and_then(Value::as_str),
        ) else {
            continue;
        };
        let choices: Vec<String> = field("input_config")
            .and_then(|c| c.get(0))
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(folder) = folder_of(class, input, &choices, models) {
            out.push(missing(
                node_id, class, input, requested, folder, models, limits,
            ));
        }
    }
    out
}

fn missing(
    node_id: &str,
    class: &str,
    input: &str,
    requested: &str,
    folder: &str,
    models: &ModelSnapshot,
    limits: &ModelLimits,
) -> MissingModel {
    let files = models.folders.get(folder).map(Vec::as_slice).unwrap_or(&[]);
    MissingModel {
        node_id: node_id.to_owned(),
        class_type: class.to_owned(),
        input: input.to_owned(),
        requested: requested.to_owned(),
        folder: folder.to_owned(),
        installed: closest_first(requested, files, limits.missing_model_choices),
        installed_count: files.len(),
    }
}

/// The model folder an input's files come from (see the module docs), if it takes model files.
pub fn folder_of<'m>(
    class: &str,
    input: &str,
    choices: &[String],
    models: &'m ModelSnapshot,
) -> Option<&'m str> {
    if !choices.is_empty() {
        return models
            .folders
            .iter()
            .filter(|(_, files)| choices.iter().all(|c| files.contains(c)))
            .min_by_key(|(_, files)| files.len())
            .map(|(folder, _)| folder.as_str());
    }
    let (_, _, folder) = LOADER_INPUTS
        .iter()
        .find(|(c, i, _)| *i == input && (*c == "*" || *c == class))?;
    models
        .folders
        .get_key_value(*folder)
        .map(|(name, _)| name.as_str())
}

/// At most `cap` of `files`, closest to `requested` first: names containing the asked-for
/// name (or contained in it) before the others, then by edit distance of their lower-case
/// stems, then by name.
pub fn closest_first(requested: &str, files: &[String], cap: usize) -> Vec<String> {
    let wanted = stem(requested);
    let mut ranked: Vec<(bool, usize, &String)> = files
        .iter()
        .map(|file| {
            let have = stem(file);
            let related = !wanted.is_empty()
                && !have.is_empty()
                && (contains(&have, &wanted) || contains(&wanted, &have));
            // Both stems are at most COMPARED_CHARS long, so the bound never cuts.
            let distance =
                bounded_edit_distance(&wanted, &have, COMPARED_CHARS).unwrap_or(COMPARED_CHARS);
            (!related, distance, file)
        })
        .collect();
    ranked.sort();
    ranked
        .into_iter()
        .take(cap)
        .map(|(_, _, file)| file.clone())
        .collect()
}

/// Lower-case characters of a file name without its folder and extension, at most
/// [`COMPARED_CHARS`] of them.
fn stem(name: &str) -> Vec<char> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let base = match base.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem,
        _ => base,
    };
    base.chars()
        .flat_map(char::to_lowercase)
        .take(COMPARED_CHARS)
        .collect()
}

fn contains(haystack: &[char], needle: &[char]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The JSON of a report: one entry per missing file.
pub fn to_json(models: &[MissingModel]) -> Value {
    json!(models)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(folders: &[(&str, &[&str])]) -> ModelSnapshot {
        ModelSnapshot::from_lists(folders)
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn closest_files_come_first_and_the_list_is_capped() {
        let files = strings(&[
            "anything-v5.safetensors",
            "dreamshaper_8.safetensors",
            "sd15/v1-5-pruned.ckpt",
            "dreamshaper_7.safetensors",
        ]);
        let got = closest_first("dreamshaper_8.ckpt", &files, 2);
        assert_eq!(
            got,
            strings(&["dreamshaper_8.safetensors", "dreamshaper_7.safetensors"])
        );
        assert_eq!(closest_first("x", &files, 10).len(), 4);
        assert!(closest_first("x", &files, 0).is_empty());
        let long = "a".repeat(10_000);
        assert_eq!(closest_first(&long, &files, 1).len(), 1);
    }

    #[test]
    fn the_folder_is_the_smallest_one_holding_every_choice_else_the_loader_table() {
        let models = snapshot(&[
            ("checkpoints", &["a.safetensors", "b.safetensors"]),
            ("everything", &["a.safetensors", "b.safetensors", "c.pt"]),
            ("loras", &[]),
        ]);
        let choices = strings(&["a.safetensors", "b.safetensors"]);
        assert_eq!(
            folder_of("CheckpointLoaderSimple", "ckpt_name", &choices, &models),
            Some("checkpoints")
        );
        assert_eq!(
            folder_of("LoraLoader", "lora_name", &[], &models),
            Some("loras")
        );
        assert_eq!(folder_of("KSampler", "sampler_name", &[], &models), None);
        let samplers = strings(&["euler", "heun"]);
        assert_eq!(
            folder_of("KSampler", "sampler_name", &samplers, &models),
            None
        );
    }

    /// ComfyUI's own answer, recorded from a real ComfyUI with two checkpoints installed.
    #[test]
    fn comfyui_rejection_of_a_checkpoint_names_the_installed_ones() {
        let recorded: Value = serde_json::from_str(include_str!(
            "../../tests/transcripts/error_invalid_enum_ckpt_name_with_models_present.json"
        ))
        .expect("transcript");
        let body = &recorded["response"]["json"];
        let models = snapshot(&[(
            "checkpoints",
            &[
                "random-sd15-full.safetensors",
                "tiny-random-sd15.safetensors",
            ],
        )]);
        let error = AppError::ComfyUi(ClientError::Rejected {
            url: "http://127.0.0.1:8188".into(),
            error: Box::new(body["error"].clone()),
            node_errors: Box::new(body["node_errors"].clone()),
        });
        let explained = explain(
            error,
            &NodeCatalog::default(),
            &models,
            &ModelLimits::DEFAULT,
            50,
        );
        let AppError::MissingModel { models, cause } = &explained else {
            panic!("expected MissingModel, got {explained}");
        };
        assert_eq!(models.len(), 1);
        assert_eq!(models[0].node_id, "4");
        assert_eq!(models[0].folder, "checkpoints");
        assert_eq!(models[0].requested, "nope.safetensors");
        assert_eq!(models[0].installed_count, 2);
        assert!(matches!(**cause, AppError::ComfyUi(_)));
        let message = explained.to_string();
        assert!(message.starts_with("Missing model file"), "{message}");
        assert!(
            message.contains("tiny-random-sd15.safetensors"),
            "{message}"
        );
        assert_eq!(explained.to_json()["kind"], "missing_model");
    }

    #[test]
    fn other_errors_pass_through_unchanged() {
        let error = AppError::InvalidRequest("no".into());
        let got = explain(
            error,
            &NodeCatalog::default(),
            &ModelSnapshot::default(),
            &ModelLimits::DEFAULT,
            50,
        );
        assert!(matches!(got, AppError::InvalidRequest(_)));
    }
}
