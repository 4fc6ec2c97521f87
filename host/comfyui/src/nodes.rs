//! The node catalog: ComfyUI's `GET /object_info` parsed into typed node classes.
//!
//! A [`NodeCatalog`] answers "which node classes exist, what inputs do they take, what do they
//! output" for the graph checker ([`crate::graph`]) and for anyone who needs the choices of a
//! combo input (samplers, schedulers, checkpoints).
//!
//! Invariants and parsing rules (see the recorded `object_info` of ComfyUI 0.3.75):
//! - Parsing never panics and never fails because of one odd class or input: what cannot be
//!   understood is skipped with a `tracing::debug!` line. Only a body that is not a JSON object
//!   is an error.
//! - Inputs are kept in `input_order` (required first, then optional); inputs missing from
//!   `input_order` follow in the order of the `input` map. Hidden inputs (`PROMPT`, `UNIQUE_ID`,
//!   ...) are filled in by ComfyUI itself, so they are listed apart in [`NodeClass::hidden`] and
//!   never appear in [`NodeClass::inputs`].
//! - Both combo encodings become [`InputKind::Combo`]: the old `[["a", "b"], {...}]` and the V3
//!   `["COMBO", {"options": ["a", "b"], ...}]`. Numeric options are kept as their JSON text.
//!   A combo is *open* (any value accepted) when its list is unknown (V3 without `options`) or
//!   when it lists files that can be uploaded (`image_upload`, `video_upload`, ...): files
//!   uploaded after the catalog was read are valid, and ComfyUI checks them itself.
//! - Numeric limits are `f64`. `u64::MAX` (KSampler's seed) becomes 2^64 as an `f64`, which still
//!   orders correctly against every integer a JSON graph can carry; the graph checker compares
//!   integers against limits exactly.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use serde_json::{Map, Value};

/// The `object_info` of a stock ComfyUI 0.3.75 (534 classes, no models installed).
const BUNDLED_OBJECT_INFO: &[u8] = include_bytes!("../data/object_info.json");

/// Why an `object_info` document (or a change to a catalog) was refused.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The bytes are not JSON at all.
    #[error("object_info is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The document is JSON but not an object of class definitions.
    #[error(
        "object_info must be a JSON object mapping node class names to class definitions, got {found}"
    )]
    NotAnObject {
        /// The JSON type that was found instead.
        found: &'static str,
    },
    /// [`NodeCatalog::set_choices`] named a class that is not in the catalog.
    #[error("node class {class:?} is not in the catalog ({count} classes)")]
    UnknownClass {
        /// The class that was asked for.
        class: String,
        /// How many classes the catalog has.
        count: usize,
    },
    /// [`NodeCatalog::set_choices`] named an input the class does not have.
    #[error("node class {class:?} has no input {input:?}; its inputs are: {known}")]
    UnknownInput {
        /// The class.
        class: String,
        /// The input that was asked for.
        input: String,
        /// The names of the inputs the class does have, comma separated.
        known: String,
    },
    /// [`NodeCatalog::set_choices`] named an input that is not a combo.
    #[error(
        "input {input:?} of node class {class:?} is {kind}, not a combo; only combos have choices"
    )]
    NotACombo {
        /// The class.
        class: String,
        /// The input.
        input: String,
        /// What the input is instead (e.g. `INT`).
        kind: String,
    },
}

/// Every node class one ComfyUI server offers, by class name.
#[derive(Debug, Clone, Default)]
pub struct NodeCatalog {
    classes: HashMap<String, NodeClass>,
}

/// One node class (`class_type`) as described by `object_info`.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeClass {
    /// The class name used as `class_type` in a graph, e.g. `KSampler`.
    pub name: String,
    /// The name the ComfyUI frontend shows, e.g. `Load Checkpoint`.
    pub display_name: String,
    /// Menu category, e.g. `sampling`.
    pub category: String,
    /// Free-text description (often empty).
    pub description: String,
    /// True for nodes that produce a result (SaveImage, PreviewImage): a graph runs only the
    /// nodes that output nodes depend on.
    pub output_node: bool,
    /// Output types by index, e.g. `["MODEL", "CLIP", "VAE"]`.
    pub outputs: Vec<String>,
    /// Output names by index (same length as `outputs` in well-formed data).
    pub output_names: Vec<String>,
    /// Whether each output is a list (batch) output.
    pub output_is_list: Vec<bool>,
    /// Inputs a graph provides, required first, in `input_order`.
    pub inputs: Vec<InputSpec>,
    /// Hidden inputs ComfyUI fills in itself (e.g. `prompt`, `unique_id`); a graph never
    /// provides them.
    pub hidden: Vec<String>,
    /// An API node: runs on a paid remote service and needs a Comfy.org account.
    pub api_node: bool,
    /// Marked deprecated by ComfyUI.
    pub deprecated: bool,
    /// Marked experimental by ComfyUI.
    pub experimental: bool,
}

/// One input of a node class.
#[derive(Debug, Clone, PartialEq)]
pub struct InputSpec {
    /// The key in the node's `inputs` object.
    pub name: String,
    /// Required inputs must be present in the graph; optional ones may be left out.
    pub required: bool,
    /// What the input accepts.
    pub kind: InputKind,
}

/// What an input accepts: a literal of some type, or a link to an output of some type.
///
/// Literal inputs (`Int`, `Float`, `String`, `Boolean`, `Combo`) may also be fed by a link.
#[derive(Debug, Clone, PartialEq)]
pub enum InputKind {
    /// A whole number, within the limits when they are given.
    Int {
        /// Smallest allowed value.
        min: Option<f64>,
        /// Largest allowed value (u64::MAX is stored as 2^64).
        max: Option<f64>,
        /// UI step; ComfyUI does not enforce it.
        step: Option<f64>,
    },
    /// A number, within the limits when they are given.
    Float {
        /// Smallest allowed value.
        min: Option<f64>,
        /// Largest allowed value.
        max: Option<f64>,
        /// UI step; ComfyUI does not enforce it.
        step: Option<f64>,
    },
    /// Text.
    String {
        /// The UI shows a multi-line box (prompts).
        multiline: bool,
    },
    /// `true` or `false`.
    Boolean,
    /// One value out of a list.
    Combo {
        /// The allowed values (numbers as their JSON text). Empty when unknown.
        options: Vec<String>,
        /// True when the list is unknown or may be stale (uploadable files): any value passes.
        open: bool,
    },
    /// A link to an output of this type, e.g. `MODEL`, `IMAGE`, `*` (anything), or a
    /// comma-separated list of types.
    Link(String),
}

impl InputKind {
    /// The ComfyUI type name: `INT`, `FLOAT`, `STRING`, `BOOLEAN`, `COMBO` or the link type.
    pub fn type_name(&self) -> &str {
        match self {
            InputKind::Int { .. } => "INT",
            InputKind::Float { .. } => "FLOAT",
            InputKind::String { .. } => "STRING",
            InputKind::Boolean => "BOOLEAN",
            InputKind::Combo { .. } => "COMBO",
            InputKind::Link(ty) => ty,
        }
    }
}

impl NodeClass {
    /// The input called `name`, if the class has one (hidden inputs excluded).
    pub fn input(&self, name: &str) -> Option<&InputSpec> {
        self.inputs.iter().find(|spec| spec.name == name)
    }

    /// Parses one class definition; `None` when `def` is not an object.
    fn parse(key: &str, def: &Value) -> Option<NodeClass> {
        let Some(def) = def.as_object() else {
            tracing::debug!(
                class = key,
                "object_info: class definition is not an object; skipped"
            );
            return None;
        };
        let text = |field: &str| {
            def.get(field)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        let flag = |field: &str| def.get(field).and_then(Value::as_bool).unwrap_or(false);
        let name = def
            .get("name")
            .and_then(Value::as_str)
            .filter(|name| !name.is_empty())
            .unwrap_or(key)
            .to_owned();
        let (inputs, hidden) = parse_inputs(key, def.get("input"), def.get("input_order"));
        Some(NodeClass {
            display_name: text("display_name"),
            category: text("category"),
            description: text("description"),
            output_node: flag("output_node"),
            outputs: type_list(key, def.get("output")),
            output_names: type_list(key, def.get("output_name")),
            output_is_list: def
                .get("output_is_list")
                .and_then(Value::as_array)
                .map(|list| list.iter().map(|v| v.as_bool().unwrap_or(false)).collect())
                .unwrap_or_default(),
            inputs,
            hidden,
            api_node: flag("api_node"),
            deprecated: flag("deprecated"),
            experimental: flag("experimental"),
            name,
        })
    }
}

impl NodeCatalog {
    /// Builds a catalog from a parsed `GET /object_info` body.
    ///
    /// Unknown fields are ignored; classes or inputs of an unexpected shape are skipped (with a
    /// debug log line), never a panic. Fails only when `json` is not an object.
    pub fn from_object_info(json: &Value) -> Result<NodeCatalog, CatalogError> {
        let Some(root) = json.as_object() else {
            return Err(CatalogError::NotAnObject {
                found: json_type(json),
            });
        };
        let mut classes = HashMap::with_capacity(root.len());
        for (key, def) in root {
            if let Some(class) = NodeClass::parse(key, def) {
                // Graphs name classes by the object_info key, which is the class mapping name.
                classes.insert(key.clone(), class);
            }
        }
        Ok(NodeCatalog { classes })
    }

    /// Builds a catalog from the raw bytes of a `GET /object_info` body.
    pub fn from_slice(bytes: &[u8]) -> Result<NodeCatalog, CatalogError> {
        let json: Value = serde_json::from_slice(bytes)?;
        NodeCatalog::from_object_info(&json)
    }

    /// The catalog of a stock ComfyUI 0.3.75 (534 classes, no models installed, so file lists
    /// such as `CheckpointLoaderSimple.ckpt_name` are empty). Parsed once, then shared.
    pub fn bundled() -> Arc<NodeCatalog> {
        static BUNDLED: OnceLock<Arc<NodeCatalog>> = OnceLock::new();
        BUNDLED
            .get_or_init(|| {
                // The bytes are compiled in and covered by tests, so failure is a build defect.
                Arc::new(
                    NodeCatalog::from_slice(BUNDLED_OBJECT_INFO)
                        .expect("the bundled object_info.json is a valid object_info document"),
                )
            })
            .clone()
    }

    /// True when the catalog has a class with this name.
    pub fn contains(&self, class: &str) -> bool {
        self.classes.contains_key(class)
    }

    /// The class with this name.
    pub fn class(&self, name: &str) -> Option<&NodeClass> {
        self.classes.get(name)
    }

    /// Number of classes.
    pub fn len(&self) -> usize {
        self.classes.len()
    }

    /// True when the catalog has no classes.
    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }

    /// All class names, sorted.
    pub fn class_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.classes.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// All classes, in no particular order.
    pub fn classes(&self) -> impl Iterator<Item = &NodeClass> {
        self.classes.values()
    }

    /// The options of a combo input; `None` when the class or input is unknown or the input is
    /// not a combo. An open combo with an unknown list gives an empty slice.
    pub fn choices(&self, class: &str, input: &str) -> Option<&[String]> {
        match &self.class(class)?.input(input)?.kind {
            InputKind::Combo { options, .. } => Some(options),
            _ => None,
        }
    }

    /// Replaces the options of a combo input, e.g. to declare the checkpoints a server has
    /// (`CheckpointLoaderSimple`, `ckpt_name`). The combo becomes closed: only `options` pass.
    pub fn set_choices(
        &mut self,
        class: &str,
        input: &str,
        options: Vec<String>,
    ) -> Result<(), CatalogError> {
        let count = self.classes.len();
        let node = self
            .classes
            .get_mut(class)
            .ok_or_else(|| CatalogError::UnknownClass {
                class: class.to_owned(),
                count,
            })?;
        let known = node
            .inputs
            .iter()
            .map(|spec| spec.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let spec = node
            .inputs
            .iter_mut()
            .find(|spec| spec.name == input)
            .ok_or_else(|| CatalogError::UnknownInput {
                class: class.to_owned(),
                input: input.to_owned(),
                known,
            })?;
        match &mut spec.kind {
            InputKind::Combo {
                options: current,
                open,
            } => {
                *current = options;
                *open = false;
                Ok(())
            }
            other => Err(CatalogError::NotACombo {
                class: class.to_owned(),
                input: input.to_owned(),
                kind: other.type_name().to_owned(),
            }),
        }
    }
}

/// The JSON type of a value, for messages.
pub fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses `output` / `output_name`: a list of type names. A list in place of a type (custom
/// nodes that output their option list) is a combo.
fn type_list(class: &str, value: Option<&Value>) -> Vec<String> {
    let Some(list) = value.and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .map(|item| match item {
            Value::String(ty) => ty.clone(),
            Value::Array(_) => "COMBO".to_owned(),
            other => {
                tracing::debug!(class, value = %other, "object_info: odd output type kept as text");
                other.to_string()
            }
        })
        .collect()
}

/// Parses `input` and `input_order` into the ordered inputs and the hidden input names.
fn parse_inputs(
    class: &str,
    input: Option<&Value>,
    order: Option<&Value>,
) -> (Vec<InputSpec>, Vec<String>) {
    let Some(input) = input.and_then(Value::as_object) else {
        return (Vec::new(), Vec::new());
    };
    let section = |name: &str| input.get(name).and_then(Value::as_object);
    let order_of = |name: &str| -> Vec<&str> {
        order
            .and_then(|order| order.get(name))
            .and_then(Value::as_array)
            .map(|list| list.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    };
    let mut inputs = Vec::new();
    for (name, required) in [("required", true), ("optional", false)] {
        let Some(specs) = section(name) else { continue };
        let listed = order_of(name);
        let names = listed
            .iter()
            .copied()
            .filter(|n| specs.contains_key(*n))
            .chain(
                specs
                    .keys()
                    .map(String::as_str)
                    .filter(|n| !listed.contains(n)),
            );
        for input_name in names {
            if inputs
                .iter()
                .any(|spec: &InputSpec| spec.name == input_name)
            {
                continue; // the same name in required and optional: the first one wins
            }
            let Some(spec) = specs.get(input_name) else {
                continue;
            };
            if let Some(kind) = parse_kind(class, input_name, spec) {
                inputs.push(InputSpec {
                    name: input_name.to_owned(),
                    required,
                    kind,
                });
            }
        }
    }
    let hidden = section("hidden")
        .map(|specs| specs.keys().cloned().collect())
        .unwrap_or_default();
    (inputs, hidden)
}

/// Parses one input spec: `[type, {options}]` or `[type]`, where type is a name or an option list.
fn parse_kind(class: &str, input: &str, spec: &Value) -> Option<InputKind> {
    let Some((first, rest)) = spec.as_array().and_then(|list| list.split_first()) else {
        tracing::debug!(
            class,
            input,
            "object_info: input spec is not a non-empty list; skipped"
        );
        return None;
    };
    static EMPTY: OnceLock<Map<String, Value>> = OnceLock::new();
    let extra = rest
        .first()
        .and_then(Value::as_object)
        .unwrap_or_else(|| EMPTY.get_or_init(Map::new));
    let limit = |key: &str| extra.get(key).and_then(Value::as_f64);
    let uploadable = extra
        .iter()
        .any(|(key, value)| key.ends_with("_upload") && value.as_bool() == Some(true));
    let kind = match first {
        Value::Array(options) => InputKind::Combo {
            options: option_list(class, input, options),
            open: uploadable,
        },
        Value::String(ty) => match ty.as_str() {
            "INT" => InputKind::Int {
                min: limit("min"),
                max: limit("max"),
                step: limit("step"),
            },
            "FLOAT" => InputKind::Float {
                min: limit("min"),
                max: limit("max"),
                step: limit("step"),
            },
            "STRING" => InputKind::String {
                multiline: extra.get("multiline").and_then(Value::as_bool) == Some(true),
            },
            "BOOLEAN" => InputKind::Boolean,
            "COMBO" => match extra.get("options").and_then(Value::as_array) {
                Some(options) => InputKind::Combo {
                    options: option_list(class, input, options),
                    open: uploadable,
                },
                None => InputKind::Combo {
                    options: Vec::new(),
                    open: true,
                },
            },
            other => InputKind::Link(other.to_owned()),
        },
        other => {
            tracing::debug!(class, input, value = %other, "object_info: unknown input type; skipped");
            return None;
        }
    };
    Some(kind)
}

/// Combo options as text: strings as they are, numbers as their JSON text.
fn option_list(class: &str, input: &str, options: &[Value]) -> Vec<String> {
    options
        .iter()
        .filter_map(|option| match option {
            Value::String(text) => Some(text.clone()),
            Value::Number(number) => Some(number.to_string()),
            Value::Bool(flag) => Some(flag.to_string()),
            other => {
                tracing::debug!(class, input, value = %other, "object_info: odd combo option; skipped");
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tolerates_odd_shapes_without_panicking() {
        let catalog = NodeCatalog::from_object_info(&json!({
            "Broken": 5,
            "NoInputs": {"output": ["IMAGE"], "output_node": true},
            "OddInputs": {
                "input": {"required": {"a": 3, "b": [], "c": [{"x": 1}], "d": ["INT", 7], "e": ["MODEL"]}},
                "output": [["x", "y"], 3]
            }
        }))
        .unwrap();
        assert_eq!(catalog.len(), 2);
        assert!(!catalog.contains("Broken"));
        assert!(catalog.class("NoInputs").unwrap().output_node);
        let odd = catalog.class("OddInputs").unwrap();
        let names: Vec<_> = odd.inputs.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["d", "e"]);
        assert_eq!(
            odd.inputs[0].kind,
            InputKind::Int {
                min: None,
                max: None,
                step: None
            }
        );
        assert_eq!(odd.outputs, ["COMBO", "3"]);
    }

    #[test]
    fn refuses_a_body_that_is_not_an_object() {
        let err = NodeCatalog::from_object_info(&json!([1, 2])).unwrap_err();
        assert!(matches!(
            err,
            CatalogError::NotAnObject { found: "an array" }
        ));
        assert!(matches!(
            NodeCatalog::from_slice(b"{not json"),
            Err(CatalogError::Json(_))
        ));
    }

    #[test]
    fn input_order_puts_required_first_and_keeps_unlisted_inputs() {
        let catalog = NodeCatalog::from_object_info(&json!({
            "N": {
                "input": {
                    "optional": {"o": ["BOOLEAN"]},
                    "required": {"b": ["STRING", {"multiline": true}], "a": ["FLOAT"], "z": ["IMAGE"]},
                    "hidden": {"prompt": "PROMPT", "uid": ["UNIQUE_ID"]}
                },
                "input_order": {"required": ["a", "b"], "optional": ["o"]}
            }
        }))
        .unwrap();
        let class = catalog.class("N").unwrap();
        let order: Vec<_> = class
            .inputs
            .iter()
            .map(|i| (i.name.as_str(), i.required))
            .collect();
        assert_eq!(order, [("a", true), ("b", true), ("z", true), ("o", false)]);
        assert_eq!(class.hidden, ["prompt", "uid"]);
        assert_eq!(class.inputs[1].kind, InputKind::String { multiline: true });
    }

    #[test]
    fn set_choices_closes_a_combo_and_refuses_other_inputs() {
        let mut catalog = NodeCatalog::from_object_info(&json!({
            "L": {"input": {"required": {"f": [[]], "n": ["INT"]}}}
        }))
        .unwrap();
        catalog
            .set_choices("L", "f", vec!["a.safetensors".into()])
            .unwrap();
        assert_eq!(catalog.choices("L", "f").unwrap(), ["a.safetensors"]);
        assert!(matches!(
            catalog.set_choices("L", "n", vec![]),
            Err(CatalogError::NotACombo { .. })
        ));
        assert!(matches!(
            catalog.set_choices("L", "x", vec![]),
            Err(CatalogError::UnknownInput { .. })
        ));
        assert!(matches!(
            catalog.set_choices("M", "f", vec![]),
            Err(CatalogError::UnknownClass { .. })
        ));
    }
}
