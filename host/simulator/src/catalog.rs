//! The node catalog: ComfyUI's `GET /object_info` document and typed lookups into it.
//!
//! The simulator knows nodes only through this document (by default the bundled copy
//! recorded from ComfyUI 0.3.75, with two checkpoints). Validation, execution order and the
//! model listings all read it here. Invariant: a `Catalog` is immutable once built; a new
//! catalog (e.g. after a simulated restart) is a new value.

use serde_json::{Map, Value};
use thiserror::Error;

/// The catalog bundled with the simulator (ComfyUI 0.3.75, 534 node classes).
const BUNDLED_OBJECT_INFO: &str = include_str!("../data/object_info.json");

/// Why an `object_info` document cannot be used as a catalog.
#[derive(Debug, Error)]
pub enum CatalogError {
    /// The bundled document failed to parse (a build problem, not a user one).
    #[error("the bundled object_info.json is not valid JSON: {0}")]
    Bundled(#[from] serde_json::Error),
    /// The document is not a JSON object of node classes.
    #[error("object_info must be a JSON object mapping class names to objects; {0}")]
    Shape(String),
}

/// Which part of a node's `input` a name was declared in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Category {
    /// `input.required`.
    Required,
    /// `input.optional`.
    Optional,
    /// `input.hidden`.
    Hidden,
}

/// One input declaration: `[input_type, extra_info]` as ComfyUI's `get_input_info` returns it.
#[derive(Debug, Clone)]
pub(crate) struct InputSpec {
    /// The type: a string like `"INT"`, `"COMBO"`, or a list of options (old-style combo).
    pub input_type: Value,
    /// The options object (`{}` when the declaration has none).
    pub extra: Value,
    /// Where the input was declared.
    pub category: Category,
}

/// Folders listed by `GET /models`, in the order ComfyUI 0.3.75 returns them.
pub(crate) const MODEL_FOLDERS: [&str; 21] = [
    "checkpoints",
    "configs",
    "loras",
    "vae",
    "text_encoders",
    "diffusion_models",
    "clip_vision",
    "style_models",
    "embeddings",
    "diffusers",
    "vae_approx",
    "controlnet",
    "gligen",
    "upscale_models",
    "latent_upscale_models",
    "custom_nodes",
    "hypernetworks",
    "photomaker",
    "classifiers",
    "model_patches",
    "audio_encoders",
];

/// Which loader input lists the files of a model folder.
const FOLDER_LOADERS: [(&str, &str, &str); 8] = [
    ("checkpoints", "CheckpointLoaderSimple", "ckpt_name"),
    ("loras", "LoraLoader", "lora_name"),
    ("vae", "VAELoader", "vae_name"),
    ("text_encoders", "CLIPLoader", "clip_name"),
    ("diffusion_models", "UNETLoader", "unet_name"),
    ("clip_vision", "CLIPVisionLoader", "clip_name"),
    ("controlnet", "ControlNetLoader", "control_net_name"),
    ("upscale_models", "UpscaleModelLoader", "model_name"),
];

/// Node classes whose `image` combo lists the files of the input folder.
const INPUT_FILE_NODES: [&str; 2] = ["LoadImage", "LoadImageMask"];

/// An immutable node catalog.
#[derive(Debug, Clone)]
pub(crate) struct Catalog {
    classes: Map<String, Value>,
}

impl Catalog {
    /// The catalog bundled with the simulator (tests; the server builds it from
    /// [`Catalog::bundled_document`] through its machine).
    #[cfg(test)]
    pub fn bundled() -> Result<Self, CatalogError> {
        Self::from_value(Self::bundled_document()?)
    }

    /// The bundled `object_info` document, parsed.
    pub fn bundled_document() -> Result<Value, CatalogError> {
        Ok(serde_json::from_str(BUNDLED_OBJECT_INFO)?)
    }

    /// Builds a catalog from an `object_info` document.
    pub fn from_value(value: Value) -> Result<Self, CatalogError> {
        let Value::Object(classes) = value else {
            return Err(CatalogError::Shape("got a non-object document".into()));
        };
        if let Some((name, _)) = classes.iter().find(|(_, v)| !v.is_object()) {
            return Err(CatalogError::Shape(format!(
                "class {name:?} is described by a non-object value"
            )));
        }
        Ok(Self { classes })
    }

    /// The raw description of a class.
    pub fn class(&self, name: &str) -> Option<&Value> {
        self.classes.get(name)
    }

    /// Whether the class exists.
    pub fn has_class(&self, name: &str) -> bool {
        self.classes.contains_key(name)
    }

    /// Whether the class is an output node (`output_node: true`).
    pub fn is_output_node(&self, name: &str) -> bool {
        self.class(name)
            .and_then(|c| c.get("output_node"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// The class's return types (`output`), each a string or a list.
    pub fn outputs(&self, name: &str) -> Vec<Value> {
        self.class(name)
            .and_then(|c| c.get("output"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    }

    fn section<'a>(&'a self, name: &str, section: &str) -> Option<&'a Map<String, Value>> {
        self.class(name)?.get("input")?.get(section)?.as_object()
    }

    /// Names of the required and optional inputs, required first, each once (ComfyUI's
    /// `set(required) | set(optional)`, iterated in declaration order).
    pub fn input_names(&self, name: &str) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for section in ["required", "optional"] {
            if let Some(m) = self.section(name, section) {
                for key in m.keys() {
                    if !names.contains(key) {
                        names.push(key.clone());
                    }
                }
            }
        }
        names
    }

    /// The declaration of one input, looked up in required, optional, then hidden.
    pub fn input_spec(&self, class: &str, input: &str) -> Option<InputSpec> {
        let sections = [
            ("required", Category::Required),
            ("optional", Category::Optional),
            ("hidden", Category::Hidden),
        ];
        for (section, category) in sections {
            if let Some(decl) = self.section(class, section).and_then(|m| m.get(input)) {
                let (input_type, extra) = match decl {
                    Value::Array(items) => (
                        items.first().cloned().unwrap_or(Value::Null),
                        items
                            .get(1)
                            .cloned()
                            .unwrap_or_else(|| Value::Object(Map::new())),
                    ),
                    other => (other.clone(), Value::Object(Map::new())),
                };
                return Some(InputSpec {
                    input_type,
                    extra,
                    category,
                });
            }
        }
        None
    }

    /// Hidden inputs of old-style nodes as `(name, kind)`, e.g. `("prompt", "PROMPT")`.
    /// V3 nodes declare them as one-element lists and do not receive them as inputs.
    pub fn hidden_inputs(&self, class: &str) -> Vec<(String, String)> {
        self.section(class, "hidden")
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether the class declares a hidden `UNIQUE_ID` input (in either encoding), which puts
    /// the node id into its cache signature.
    pub fn wants_unique_id(&self, class: &str) -> bool {
        self.section(class, "hidden").is_some_and(|m| {
            m.values().any(|v| match v {
                Value::String(s) => s == "UNIQUE_ID",
                Value::Array(a) => a.first().and_then(Value::as_str) == Some("UNIQUE_ID"),
                _ => false,
            })
        })
    }

    /// The options of a combo input in either encoding (old: the type is the list; V3:
    /// `["COMBO", {"options": [...]}]`). `None` if the input is not a combo with options.
    pub fn combo_options(&self, class: &str, input: &str) -> Option<Vec<Value>> {
        let spec = self.input_spec(class, input)?;
        combo_options_of(&spec)
    }

    /// The files listed for a model folder, or `None` if the folder is unknown.
    pub fn models_in(&self, folder: &str) -> Option<Vec<Value>> {
        if !MODEL_FOLDERS.contains(&folder) {
            return None;
        }
        let listed = FOLDER_LOADERS
            .iter()
            .find(|(f, _, _)| *f == folder)
            .and_then(|(_, class, input)| self.combo_options(class, input))
            .unwrap_or_default();
        Some(listed)
    }

    /// The document served by `GET /object_info`: the catalog with the `image` list of the
    /// image loaders replaced by the files currently in the input folder (ComfyUI rescans it on
    /// every request).
    pub fn to_json(&self, input_files: &[String]) -> Value {
        let mut classes = self.classes.clone();
        for class in INPUT_FILE_NODES {
            patch_file_list(&mut classes, class, input_files);
        }
        Value::Object(classes)
    }

    /// One class as served by `GET /object_info/{class}` (with the same patching).
    pub fn class_json(&self, class: &str, input_files: &[String]) -> Option<Value> {
        let mut single = Map::new();
        single.insert(class.to_string(), self.class(class)?.clone());
        if INPUT_FILE_NODES.contains(&class) {
            patch_file_list(&mut single, class, input_files);
        }
        single.remove(class)
    }
}

/// The options of a combo declaration, if it is one.
pub(crate) fn combo_options_of(spec: &InputSpec) -> Option<Vec<Value>> {
    match &spec.input_type {
        Value::Array(options) => Some(options.clone()),
        Value::String(t) if t == "COMBO" => {
            spec.extra.get("options").and_then(Value::as_array).cloned()
        }
        _ => None,
    }
}

fn patch_file_list(classes: &mut Map<String, Value>, class: &str, files: &[String]) {
    let decl = classes
        .get_mut(class)
        .and_then(|c| c.get_mut("input"))
        .and_then(|i| i.get_mut("required"))
        .and_then(|r| r.get_mut("image"))
        .and_then(Value::as_array_mut);
    if let Some(decl) = decl
        && decl.first().is_some_and(Value::is_array)
    {
        decl[0] = Value::Array(files.iter().cloned().map(Value::String).collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_catalog_answers_lookups() {
        let c = Catalog::bundled().expect("bundled catalog parses");
        assert!(c.is_output_node("SaveImage"));
        assert!(!c.is_output_node("EmptyImage"));
        assert_eq!(c.outputs("CheckpointLoaderSimple").len(), 3);
        let spec = c.input_spec("EmptyImage", "width").expect("width exists");
        assert_eq!(spec.input_type, "INT");
        assert_eq!(spec.category, Category::Required);
        assert_eq!(spec.extra["max"], 16384);
        let ckpts = c.models_in("checkpoints").expect("known folder");
        assert_eq!(ckpts.len(), 2);
        assert!(c.models_in("no_such_folder").is_none());
        assert_eq!(c.models_in("configs"), Some(vec![]));
        assert!(c.combo_options("KSampler", "sampler_name").unwrap().len() > 20);
        assert_eq!(c.hidden_inputs("SaveImage")[0].1, "PROMPT");
        let doc = c.to_json(&["a.png".to_string()]);
        assert_eq!(
            doc["LoadImage"]["input"]["required"]["image"][0][0],
            "a.png"
        );
    }

    #[test]
    fn rejects_non_object_documents() {
        assert!(Catalog::from_value(serde_json::json!([])).is_err());
        assert!(Catalog::from_value(serde_json::json!({"X": 1})).is_err());
    }
}
