//! Simulated machines: one ComfyUI install differs from another by the model files it has and
//! the node classes (custom nodes) it lacks. [`Machine`] turns the `object_info` document a
//! simulator starts from into that machine's, so a test can build a heterogeneous farm from
//! simulators: `SimConfig::{checkpoints, loras, omit_nodes}`, or `comfyui-mcp simulate
//! --checkpoints a,b --loras c --omit-nodes X,Y`.
//!
//! What changes, exactly as a real install would show it:
//! - checkpoints: every combo input named `ckpt_name` (CheckpointLoaderSimple,
//!   CheckpointLoader, unCLIPCheckpointLoader, ImageOnlyCheckpointLoader, the hook loaders)
//!   lists these files, so `/models/checkpoints` reports them and a graph naming another
//!   file is refused `value_not_in_list`, as ComfyUI does;
//! - loras: every combo input named `lora_name` likewise (`/models/loras`);
//! - omitted node classes are absent from `/object_info`, and a graph using one is refused
//!   `invalid_prompt` ("node ... does not exist"), as ComfyUI does for a missing custom node.
//!
//! Invariant: applied once, before the catalog is built; `None` keeps the document's list.

use serde_json::{Map, Value};

/// How a simulated machine differs from the starting `object_info` document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Machine {
    /// Checkpoint files the machine has (`None`: the document's).
    pub checkpoints: Option<Vec<String>>,
    /// LoRA files the machine has (`None`: the document's).
    pub loras: Option<Vec<String>>,
    /// Node classes the machine lacks.
    pub omit_nodes: Vec<String>,
}

impl Machine {
    /// True when the machine is the document unchanged.
    pub fn is_stock(&self) -> bool {
        self.checkpoints.is_none() && self.loras.is_none() && self.omit_nodes.is_empty()
    }

    /// The machine's `object_info` made from `doc` (a JSON object of node classes; anything
    /// else is returned unchanged, for the catalog to refuse).
    pub fn apply(&self, mut doc: Value) -> Value {
        let Value::Object(classes) = &mut doc else {
            return doc;
        };
        for name in &self.omit_nodes {
            classes.remove(name);
        }
        if let Some(files) = &self.checkpoints {
            set_combo(classes, "ckpt_name", files);
        }
        if let Some(files) = &self.loras {
            set_combo(classes, "lora_name", files);
        }
        doc
    }
}

/// Sets the options of every combo input called `input` (in either encoding) to `files`.
fn set_combo(classes: &mut Map<String, Value>, input: &str, files: &[String]) {
    let options: Vec<Value> = files.iter().cloned().map(Value::String).collect();
    for class in classes.values_mut() {
        for section in ["required", "optional"] {
            let Some(decl) = class
                .get_mut("input")
                .and_then(|i| i.get_mut(section))
                .and_then(|s| s.get_mut(input))
                .and_then(Value::as_array_mut)
            else {
                continue;
            };
            match decl.first() {
                // Old style: the type is the list of options.
                Some(Value::Array(_)) => decl[0] = Value::Array(options.clone()),
                // V3: ["COMBO", {"options": [...]}].
                Some(Value::String(t)) if t == "COMBO" => {
                    if let Some(extra) = decl.get_mut(1).and_then(Value::as_object_mut) {
                        extra.insert("options".into(), Value::Array(options.clone()));
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn doc() -> Value {
        json!({
            "CheckpointLoaderSimple": {"input": {"required": {"ckpt_name": [["a.safetensors"], {"tooltip": "t"}]}}},
            "ImageOnlyCheckpointLoader": {"input": {"required": {"ckpt_name": [["a.safetensors"]]}}},
            "V3Loader": {"input": {"optional": {"ckpt_name": ["COMBO", {"options": ["a.safetensors"]}]}}},
            "LoraLoader": {"input": {"required": {"lora_name": [[]]}}},
            "Custom": {"input": {"required": {}}},
        })
    }

    #[test]
    fn every_loader_lists_the_machines_files_and_omitted_classes_are_gone() {
        let machine = Machine {
            checkpoints: Some(vec!["b.safetensors".into(), "c.ckpt".into()]),
            loras: Some(vec!["l.safetensors".into()]),
            omit_nodes: vec!["Custom".into(), "NotThere".into()],
        };
        let out = machine.apply(doc());
        let files = json!(["b.safetensors", "c.ckpt"]);
        assert_eq!(
            out["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0],
            files
        );
        assert_eq!(
            out["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][1],
            json!({"tooltip": "t"})
        );
        assert_eq!(
            out["ImageOnlyCheckpointLoader"]["input"]["required"]["ckpt_name"][0],
            files
        );
        assert_eq!(
            out["V3Loader"]["input"]["optional"]["ckpt_name"][1]["options"],
            files
        );
        assert_eq!(
            out["LoraLoader"]["input"]["required"]["lora_name"][0],
            json!(["l.safetensors"])
        );
        assert!(out.get("Custom").is_none());
    }

    #[test]
    fn a_stock_machine_changes_nothing_and_an_empty_list_empties() {
        assert!(Machine::default().is_stock());
        assert_eq!(Machine::default().apply(doc()), doc());
        let none = Machine {
            checkpoints: Some(vec![]),
            ..Machine::default()
        };
        let out = none.apply(doc());
        assert_eq!(
            out["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0],
            json!([])
        );
    }
}
