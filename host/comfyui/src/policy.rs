//! The node policy: which node classes a graph may use at all, whoever wrote it (a pack or a
//! `load_workflow` file). It is enforced before a graph is submitted, next to the graph check.
//!
//! By default two kinds of class are refused:
//! - **Savers of models and datasets** ([`Refusal::SavesFiles`]): classes that write model
//!   weights, latents or datasets to the ComfyUI server's disk, in folders the graph names
//!   (`folder_name`, `filename_prefix` subfolders), not images that this server collects. The
//!   stock ones are listed in [`REFUSED_CLASSES`]; any other *output* class whose category is
//!   one of [`REFUSED_OUTPUT_CATEGORIES`] (custom model-merging or dataset savers) counts too.
//! - **Paid API nodes** ([`Refusal::PaidApi`]): classes with `"api_node": true` in
//!   `object_info`, which run on a paid remote service charged to the ComfyUI account.
//!
//! Both can be allowed: a class by name ([`NodePolicy::allowed_classes`], server setting
//! `COMFYUI_MCP_ALLOW_NODES=Class1,Class2`), every API node at once
//! ([`NodePolicy::allow_api_nodes`], `COMFYUI_MCP_ALLOW_API_NODES=1`). Every refusal names the
//! class, the nodes, the reason and the setting that allows it.
//!
//! Invariants: [`NodePolicy::check`] never panics on any JSON value; it looks at each node once
//! (cost linear in the node count); its report is grouped by class, so its size is bounded by
//! the number of refused classes, not by the graph; the order is stable (first node of each
//! class in graph order). Nodes that are not objects or have no string `class_type` are left to
//! the graph check, which refuses them.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::{Map, Value, json};

use crate::nodes::NodeCatalog;

/// Stock ComfyUI 0.3.75 classes refused by default, with the reason.
pub const REFUSED_CLASSES: &[(&str, Refusal)] = &[
    ("CheckpointSave", Refusal::SavesFiles),
    ("ModelSave", Refusal::SavesFiles),
    ("CLIPSave", Refusal::SavesFiles),
    ("VAESave", Refusal::SavesFiles),
    ("ImageOnlyCheckpointSave", Refusal::SavesFiles),
    ("LoraSave", Refusal::SavesFiles),
    ("SaveLoRA", Refusal::SavesFiles),
    ("SaveLoRANode", Refusal::SavesFiles),
    ("SaveLatent", Refusal::SavesFiles),
    ("SaveImageDataSetToFolder", Refusal::SavesFiles),
    ("SaveImageTextDataSetToFolder", Refusal::SavesFiles),
    ("SaveTrainingDataset", Refusal::SavesFiles),
];

/// Categories (and their subcategories) whose output classes are refused as file savers.
pub const REFUSED_OUTPUT_CATEGORIES: &[&str] = &["advanced/model_merging", "dataset"];

/// Node ids spelled out per refused class; the count is always given.
const SHOWN_NODES: usize = 8;
/// Node ids and class names longer than this (in characters) are cut in reports.
const SHOWN_NAME_CHARS: usize = 120;

/// Why a class is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// Writes models, latents or datasets to the server's disk.
    SavesFiles,
    /// A paid API node.
    PaidApi,
}

impl Refusal {
    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::SavesFiles => "saves_files",
            Refusal::PaidApi => "paid_api_node",
        }
    }

    fn why(self) -> &'static str {
        match self {
            Refusal::SavesFiles => {
                "it writes model weights, latents or datasets to the ComfyUI server's disk (in \
                 folders the graph chooses), not images for this server to collect"
            }
            Refusal::PaidApi => {
                "it is a paid API node: it runs on a remote service charged to the ComfyUI \
                 account"
            }
        }
    }

    fn how_to_allow(self, class: &str) -> String {
        match self {
            Refusal::SavesFiles => format!(
                "a server operator can allow it with COMFYUI_MCP_ALLOW_NODES={class} (or \
                 --allow-nodes {class})"
            ),
            Refusal::PaidApi => format!(
                "a server operator can allow every API node with COMFYUI_MCP_ALLOW_API_NODES=1 \
                 (or --allow-api-nodes), or this class only with COMFYUI_MCP_ALLOW_NODES={class}"
            ),
        }
    }
}

/// Which classes a graph may use; plain data, the refusals themselves are the constants above.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodePolicy {
    /// Allow every paid API node.
    pub allow_api_nodes: bool,
    /// Classes allowed although the default policy refuses them (exact class names).
    pub allowed_classes: BTreeSet<String>,
}

/// One refused class and the nodes using it.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyViolation {
    /// The class (cut when very long).
    pub class_type: String,
    /// Why it is refused.
    pub reason: Refusal,
    /// The first [`SHOWN_NODES`] node ids using it, in graph order (cut when very long).
    pub node_ids: Vec<String>,
    /// How many nodes use it.
    pub node_count: usize,
}

impl fmt::Display for PolicyViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<String> = self.node_ids.iter().map(|id| format!("{id:?}")).collect();
        let more = if self.node_count > self.node_ids.len() {
            format!(", ... ({} nodes)", self.node_count)
        } else {
            String::new()
        };
        let noun = if self.node_count == 1 {
            "node"
        } else {
            "nodes"
        };
        write!(
            f,
            "{noun} {}{more} ({}): class {:?} is refused by the node policy because {}; {}",
            ids.join(", "),
            self.class_type,
            self.class_type,
            self.reason.why(),
            self.reason.how_to_allow(&self.class_type)
        )
    }
}

/// Every refused class of a graph (never empty when returned by [`NodePolicy::check`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct PolicyViolations(pub Vec<PolicyViolation>);

impl fmt::Display for PolicyViolations {
    /// One line per refused class.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, violation) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{violation}")?;
        }
        Ok(())
    }
}

impl PolicyViolations {
    /// The refusals as a JSON list: `class_type`, `reason`, `node_ids`, `node_count`, `message`.
    pub fn to_json(&self) -> Value {
        self.0
            .iter()
            .map(|v| {
                json!({
                    "class_type": v.class_type,
                    "reason": v.reason.as_str(),
                    "node_ids": v.node_ids,
                    "node_count": v.node_count,
                    "message": v.to_string(),
                })
            })
            .collect()
    }
}

impl NodePolicy {
    /// Why `class` is refused under this policy (`None`: allowed). `catalog` tells API nodes
    /// and output categories; a class it does not know is judged by name only.
    pub fn refusal(&self, class: &str, catalog: &NodeCatalog) -> Option<Refusal> {
        if self.allowed_classes.contains(class) {
            return None;
        }
        if let Some((_, reason)) = REFUSED_CLASSES.iter().find(|(name, _)| *name == class) {
            return Some(*reason);
        }
        let known = catalog.class(class)?;
        if known.api_node && !self.allow_api_nodes {
            return Some(Refusal::PaidApi);
        }
        let saver_category = REFUSED_OUTPUT_CATEGORIES.iter().any(|category| {
            known.category == *category
                || known
                    .category
                    .strip_prefix(category)
                    .is_some_and(|rest| rest.starts_with('/'))
        });
        (known.output_node && saver_category).then_some(Refusal::SavesFiles)
    }

    /// Checks every node of `graph`; `Err` lists each refused class with its nodes.
    pub fn check(&self, graph: &Value, catalog: &NodeCatalog) -> Result<(), PolicyViolations> {
        let Some(nodes) = graph.as_object() else {
            return Ok(());
        };
        let mut found: Vec<PolicyViolation> = Vec::new();
        for (id, node) in nodes {
            let Some(class) = node
                .as_object()
                .and_then(|n: &Map<String, Value>| n.get("class_type"))
                .and_then(Value::as_str)
            else {
                continue;
            };
            let Some(reason) = self.refusal(class, catalog) else {
                continue;
            };
            let class = clip(class);
            let entry = match found.iter_mut().position(|v| v.class_type == class) {
                Some(i) => &mut found[i],
                None => {
                    found.push(PolicyViolation {
                        class_type: class,
                        reason,
                        node_ids: Vec::new(),
                        node_count: 0,
                    });
                    found.last_mut().expect("just pushed")
                }
            };
            entry.node_count += 1;
            if entry.node_ids.len() < SHOWN_NODES {
                entry.node_ids.push(clip(id));
            }
        }
        if found.is_empty() {
            Ok(())
        } else {
            Err(PolicyViolations(found))
        }
    }
}

/// A name cut to [`SHOWN_NAME_CHARS`].
fn clip(name: &str) -> String {
    match name.char_indices().nth(SHOWN_NAME_CHARS) {
        Some((cut, _)) => format!("{}...", &name[..cut]),
        None => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refused_stock_classes_exist_in_the_bundled_catalog_or_are_known_aliases() {
        let catalog = NodeCatalog::bundled();
        for (name, _) in REFUSED_CLASSES {
            // SaveLoRANode is the class name of newer ComfyUI releases.
            assert!(
                catalog.contains(name) || *name == "SaveLoRANode",
                "{name} is not a stock class"
            );
        }
    }

    #[test]
    fn api_nodes_and_saver_categories_are_refused_by_default() {
        let catalog = NodeCatalog::bundled();
        let policy = NodePolicy::default();
        assert_eq!(
            policy.refusal("OpenAIDalle3", &catalog),
            Some(Refusal::PaidApi)
        );
        assert_eq!(
            policy.refusal("CheckpointSave", &catalog),
            Some(Refusal::SavesFiles)
        );
        // Not output nodes of those categories: fine.
        assert_eq!(policy.refusal("ModelMergeSimple", &catalog), None);
        assert_eq!(policy.refusal("SaveImage", &catalog), None);
        assert_eq!(policy.refusal("NoSuchClass", &catalog), None);
        // Every API node of the catalog is refused; no non-API output saver is missed.
        let refused_api = catalog
            .classes()
            .filter(|c| c.api_node)
            .filter(|c| policy.refusal(&c.name, &catalog) == Some(Refusal::PaidApi))
            .count();
        assert_eq!(
            refused_api,
            catalog.classes().filter(|c| c.api_node).count()
        );
    }

    #[test]
    fn allowing_works_by_class_and_for_all_api_nodes() {
        let catalog = NodeCatalog::bundled();
        let policy = NodePolicy {
            allow_api_nodes: true,
            allowed_classes: ["CheckpointSave".to_owned()].into(),
        };
        assert_eq!(policy.refusal("OpenAIDalle3", &catalog), None);
        assert_eq!(policy.refusal("CheckpointSave", &catalog), None);
        assert_eq!(
            policy.refusal("ModelSave", &catalog),
            Some(Refusal::SavesFiles)
        );
        let one = NodePolicy {
            allow_api_nodes: false,
            allowed_classes: ["OpenAIDalle3".to_owned()].into(),
        };
        assert_eq!(one.refusal("OpenAIDalle3", &catalog), None);
        assert_eq!(
            one.refusal("OpenAIDalle2", &catalog),
            Some(Refusal::PaidApi)
        );
    }

    #[test]
    fn reports_are_grouped_by_class_and_name_the_setting() {
        let catalog = NodeCatalog::bundled();
        let mut graph = Map::new();
        for i in 0..1000 {
            graph.insert(
                format!("{i}"),
                json!({"class_type": "CheckpointSave", "inputs": {}}),
            );
        }
        graph.insert(
            "api".into(),
            json!({"class_type": "OpenAIDalle3", "inputs": {}}),
        );
        graph.insert("odd".into(), json!(5));
        let errors = NodePolicy::default()
            .check(&Value::Object(graph), &catalog)
            .unwrap_err();
        assert_eq!(errors.0.len(), 2);
        assert_eq!(errors.0[0].node_count, 1000);
        assert_eq!(errors.0[0].node_ids.len(), SHOWN_NODES);
        let text = errors.to_string();
        assert!(
            text.contains("COMFYUI_MCP_ALLOW_NODES=CheckpointSave"),
            "{text}"
        );
        assert!(text.contains("(1000 nodes)"), "{text}");
        assert!(text.contains("COMFYUI_MCP_ALLOW_API_NODES=1"), "{text}");
        assert!(text.contains("nodes \"0\", \"1\""), "{text}");
        assert!(text.contains("node \"api\" (OpenAIDalle3)"), "{text}");
        assert!(text.len() < 2_000, "{}", text.len());
    }
}
