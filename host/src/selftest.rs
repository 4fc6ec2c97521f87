//! The self-test a pack must pass before it serves: every template is built
//! with its defaults (and a placeholder for each required parameter) and the
//! graph is checked against the node catalog.
//!
//! The self-test judges the pack, not the machine: model names are
//! placeholders (so "no checkpoint installed" or an unknown model name is not
//! a pack defect), and when only the bundled stock catalog is available,
//! classes it does not know (custom nodes) are tolerated with a warning.

use std::sync::Arc;

use comfyui::graph::{self, GraphErrorKind};
use comfyui::nodes::NodeCatalog;
use pack_runtime::{HostView, Pack, params};

/// Model name offered to packs during a self-test, for every model folder.
pub const PLACEHOLDER_MODEL: &str = "self-test-placeholder.safetensors";

/// Which node catalog the self-test checks against.
#[derive(Clone)]
pub enum CheckCatalog {
    /// The connected ComfyUI's catalog: every defect counts.
    Live(Arc<NodeCatalog>),
    /// The bundled stock catalog: unknown classes are tolerated (custom nodes).
    Stock(Arc<NodeCatalog>),
}

/// One template's self-test result.
#[derive(Debug, Clone)]
pub struct TemplateReport {
    /// Template id.
    pub template: String,
    /// `Ok(number of nodes)` or every problem found.
    pub outcome: Result<usize, Vec<String>>,
    /// Tolerated oddities (e.g. custom node classes unknown offline).
    pub warnings: Vec<String>,
}

/// Self-tests every template of `pack`.
pub fn run(pack: &Pack, catalog: &CheckCatalog) -> Vec<TemplateReport> {
    let host = placeholder_host();
    pack.templates()
        .iter()
        .map(|template| {
            let args = params::self_test_args(template);
            let mut warnings = Vec::new();
            let outcome = match pack.build(&template.id, &args, host.clone()) {
                Err(err) => Err(vec![format!("build with defaults failed: {err}")]),
                Ok(built) => check_graph(&built.graph, catalog, &mut warnings),
            };
            TemplateReport {
                template: template.id.clone(),
                outcome,
                warnings,
            }
        })
        .collect()
}

/// `Ok(())` when every template passed, else one line per failure.
pub fn verdict(reports: &[TemplateReport]) -> Result<(), String> {
    let failures: Vec<String> = reports
        .iter()
        .filter_map(|r| match &r.outcome {
            Ok(_) => None,
            Err(problems) => Some(format!(
                "template `{}`: {}",
                r.template,
                problems.join("; ")
            )),
        })
        .collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("self-test failed: {}", failures.join(" | ")))
    }
}

fn placeholder_host() -> Arc<dyn HostView> {
    struct Placeholder;
    impl HostView for Placeholder {
        fn models(&self, _folder: &str) -> Vec<String> {
            vec![PLACEHOLDER_MODEL.to_owned()]
        }
        /// Every class: node availability is judged by the graph check.
        fn has_node(&self, _class_type: &str) -> bool {
            true
        }
    }
    Arc::new(Placeholder)
}

fn check_graph(
    graph: &serde_json::Value,
    catalog: &CheckCatalog,
    warnings: &mut Vec<String>,
) -> Result<usize, Vec<String>> {
    let (nodes, stock) = match catalog {
        CheckCatalog::Live(c) => (c, false),
        CheckCatalog::Stock(c) => (c, true),
    };
    let count = graph.as_object().map_or(0, |g| g.len());
    let Err(errors) = graph::check(graph, nodes) else {
        return Ok(count);
    };
    let mut problems = Vec::new();
    for error in errors.iter() {
        let is_placeholder_model = error.kind == GraphErrorKind::ValueNotInList
            && error
                .node_id
                .as_ref()
                .zip(error.input.as_ref())
                .is_some_and(|(node, input)| {
                    graph[node.as_str()]["inputs"][input.as_str()] == PLACEHOLDER_MODEL
                });
        if is_placeholder_model {
            continue;
        }
        if stock && error.kind == GraphErrorKind::UnknownClass {
            warnings.push(format!(
                "{} (not in the stock catalog; fine if ComfyUI has this custom node)",
                error.message
            ));
            continue;
        }
        problems.push(error.message.clone());
    }
    if problems.is_empty() {
        Ok(count)
    } else {
        Err(problems)
    }
}
