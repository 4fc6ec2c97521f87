//! The self-test a pack must pass before it serves: every template is built
//! with its defaults (and a realistic value for each required parameter) and
//! the graph is checked against the node catalog.
//!
//! Invariant: to the pack, a self-test looks like a real call. It sees the
//! same host a `generate` call sees: `has-node` and `models` answer from what
//! the backends reached so far have together (a farm's union, as in a call),
//! else from the bundled stock catalog and a realistic offline list of common
//! SD 1.5 / SDXL files ([`OFFLINE_MODELS`]). Nothing in it is a recognisable
//! placeholder.
//!
//! The self-test judges the pack, not the machine: a graph passes when one
//! backend can run it (on a farm it is routed there; a template only one
//! member can run is not a defect), and fails naming each backend's problems
//! otherwise; a model name the host itself offered is never a pack defect
//! (offline, the stock catalog lists no model files), and when only the stock
//! catalog is available, classes it does not know (custom nodes) are
//! tolerated with a warning.
//!
//! A load budget bounds the whole self-test: it stops at the first template
//! boundary past its deadline (so at most one call limit late).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use comfyui::ModelSnapshot;
use comfyui::graph::{self, GraphErrorKind};
use comfyui::nodes::NodeCatalog;
use pack_runtime::{CallStats, HostView, Pack, TemplateInfo};
use rand::seq::IndexedRandom;
use serde_json::{Map, Value, json};

use crate::farm::route::FarmView;
use crate::live::LiveBackend;

/// Model files offered to packs when no ComfyUI is connected: widely used
/// public SD 1.5 / SDXL files, per ComfyUI model folder.
pub const OFFLINE_MODELS: &[(&str, &[&str])] = &[
    (
        "checkpoints",
        &[
            "dreamshaper_8.safetensors",
            "juggernautXL_v9Rdphoto2Lightning.safetensors",
            "realisticVisionV60B1_v51VAE.safetensors",
            "sd_xl_base_1.0.safetensors",
            "sd_xl_refiner_1.0.safetensors",
            "v1-5-pruned-emaonly.safetensors",
        ],
    ),
    (
        "loras",
        &[
            "add_detail.safetensors",
            "lcm-lora-sdv1-5.safetensors",
            "pixel-art-xl.safetensors",
        ],
    ),
    (
        "vae",
        &[
            "sdxl_vae.safetensors",
            "vae-ft-mse-840000-ema-pruned.safetensors",
        ],
    ),
    ("embeddings", &["EasyNegative.safetensors"]),
    (
        "upscale_models",
        &["4x-UltraSharp.pth", "RealESRGAN_x4plus.pth"],
    ),
    (
        "controlnet",
        &[
            "control_v11f1p_sd15_depth.pth",
            "control_v11p_sd15_canny.pth",
        ],
    ),
    ("clip_vision", &["clip_vision_g.safetensors"]),
];

/// Prompts a self-test passes for a required text parameter without choices.
const PROMPTS: &[&str] = &[
    "a red apple on a wooden table, studio lighting",
    "a knight in silver armour standing in a misty forest",
    "a cozy cabin in the mountains at dusk, warm light in the windows",
    "a portrait of an old fisherman, detailed, soft light",
    "a treasure chest full of gold coins, game asset, white background",
];

/// What the self-test checks against and shows the pack.
#[derive(Clone)]
pub enum CheckCatalog {
    /// The catalogs and model files of the backends reached so far: every
    /// defect counts, and a graph passes when one of them can run it (the
    /// farm routes it there). The pack sees what they have together, as in a
    /// real call.
    Live(Vec<LiveBackend>),
    /// The bundled stock catalog and [`OFFLINE_MODELS`]: unknown classes are
    /// tolerated (custom nodes).
    Stock(Arc<NodeCatalog>),
}

impl CheckCatalog {
    /// The host a pack sees during the self-test: the same kind of view a
    /// real call gets.
    pub fn host(&self) -> Arc<dyn HostView> {
        match self {
            CheckCatalog::Live(backends) => {
                Arc::new(FarmView(backends.iter().map(|b| b.view.clone()).collect()))
            }
            CheckCatalog::Stock(nodes) => Arc::new(CatalogHost {
                nodes: nodes.clone(),
                models: Arc::new(offline_models()),
            }),
        }
    }

    /// What a graph is checked against: each backend with the model files it
    /// offers (the stock catalog: those of `host`, this catalog's [`CheckCatalog::host`]).
    fn targets(&self, host: &dyn HostView) -> Vec<Target<'_>> {
        match self {
            CheckCatalog::Live(backends) => backends
                .iter()
                .map(|b| Target {
                    name: &b.name,
                    nodes: &b.view.nodes,
                    offered: offered_models(&FarmView(vec![b.view.clone()])),
                    stock: false,
                })
                .collect(),
            CheckCatalog::Stock(nodes) => vec![Target {
                name: "stock",
                nodes,
                offered: offered_models(host),
                stock: true,
            }],
        }
    }
}

/// One catalog a self-test graph is checked against.
struct Target<'a> {
    name: &'a str,
    nodes: &'a NodeCatalog,
    offered: HashSet<String>,
    stock: bool,
}

/// The offline model list as a snapshot.
pub fn offline_models() -> ModelSnapshot {
    ModelSnapshot::from_lists(OFFLINE_MODELS)
}

/// A ComfyUI as a pack sees it: node classes from a catalog, model files per folder.
/// Used by real calls and by self-tests alike.
pub struct CatalogHost {
    /// The node classes.
    pub nodes: Arc<NodeCatalog>,
    /// The model files.
    pub models: Arc<ModelSnapshot>,
}

impl HostView for CatalogHost {
    fn models(&self, folder: &str) -> Vec<String> {
        self.models.folders.get(folder).cloned().unwrap_or_default()
    }
    fn has_node(&self, class_type: &str) -> bool {
        self.nodes.contains(class_type)
    }
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

/// The self-test ran out of its load budget.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "loading took longer than the pack load budget of {budget:?}: {tested} of {total} templates self-tested in {elapsed:.1?}; \
     make the templates faster, or raise COMFYUI_MCP_PACK_LOAD_TIMEOUT_MS (--pack-load-timeout-ms)"
)]
pub struct BudgetExceeded {
    /// The budget.
    pub budget: Duration,
    /// Templates built before the deadline.
    pub tested: usize,
    /// Templates the pack offers.
    pub total: usize,
    /// Time spent.
    pub elapsed: Duration,
}

/// Self-tests every template of `pack` (no deadline).
pub fn run(pack: &Pack, catalog: &CheckCatalog) -> Vec<TemplateReport> {
    run_within(pack, catalog, None).unwrap_or_else(|partial| partial.0)
}

/// Self-tests every template of `pack`, giving up once `budget` (counted
/// from `started`) has run out: then the reports so far and the overrun.
#[allow(clippy::type_complexity)]
pub fn run_within(
    pack: &Pack,
    catalog: &CheckCatalog,
    budget: Option<(Instant, Duration)>,
) -> Result<Vec<TemplateReport>, (Vec<TemplateReport>, BudgetExceeded)> {
    let mut reports = Vec::with_capacity(pack.templates().len());
    match run_observed(pack, catalog, budget, |observed| {
        reports.push(observed.report)
    }) {
        Some(exceeded) => Err((reports, exceeded)),
        None => Ok(reports),
    }
}

/// One template's self-test with what it was built from and what it cost,
/// for `check`'s report.
pub struct Observed {
    /// The verdict, as [`run_within`] reports it.
    pub report: TemplateReport,
    /// The arguments the template was built with.
    pub args: Map<String, Value>,
    /// The graph it built, when the build succeeded.
    pub graph: Option<Value>,
    /// What the build call cost, when the pack ran.
    pub stats: Option<CallStats>,
}

/// Self-tests every template of `pack` like [`run_within`], handing each
/// result to `observe` as it comes; the overrun when `budget` ran out.
pub fn run_observed(
    pack: &Pack,
    catalog: &CheckCatalog,
    budget: Option<(Instant, Duration)>,
    mut observe: impl FnMut(Observed),
) -> Option<BudgetExceeded> {
    let host = catalog.host();
    let targets = catalog.targets(&*host);
    let total = pack.templates().len();
    let over = |tested: usize| {
        budget.and_then(|(started, budget)| {
            let elapsed = started.elapsed();
            (elapsed > budget).then_some(BudgetExceeded {
                budget,
                tested,
                total,
                elapsed,
            })
        })
    };
    for (tested, template) in pack.templates().iter().enumerate() {
        if let Some(exceeded) = over(tested) {
            return Some(exceeded);
        }
        let args = self_test_args(template);
        let mut warnings = Vec::new();
        let inputs = pack_runtime::params::self_test_inputs(template);
        let (built, stats) = pack.build_with_inputs(&template.id, &args, &inputs, host.clone());
        let (outcome, graph) = match built {
            Err(err) => (
                Err(vec![format!("build with defaults failed: {err}")]),
                None,
            ),
            Ok(built) => (
                check_graph(&built.graph, &targets, &mut warnings),
                Some(built.graph),
            ),
        };
        observe(Observed {
            report: TemplateReport {
                template: template.id.clone(),
                outcome,
                warnings,
            },
            args,
            graph,
            stats,
        });
    }
    over(total)
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

/// Arguments for a template's self-test: its defaults, plus for each
/// required parameter a value a user could have sent (its first choice, a
/// realistic prompt, the low end of its range).
pub fn self_test_args(template: &TemplateInfo) -> Map<String, Value> {
    let mut rng = rand::rng();
    pack_runtime::params::self_test_args_with(template, || {
        json!(PROMPTS.choose(&mut rng).copied().unwrap_or(PROMPTS[0]))
    })
}

/// Every model file the host offers in the folders packs commonly ask for.
fn offered_models(host: &dyn HostView) -> HashSet<String> {
    let mut folders: Vec<&str> = OFFLINE_MODELS.iter().map(|(f, _)| *f).collect();
    folders.extend([
        "diffusion_models",
        "unet",
        "text_encoders",
        "clip",
        "style_models",
    ]);
    folders
        .into_iter()
        .flat_map(|folder| host.models(folder))
        .collect()
}

/// Checks `graph` against each target: `Ok(node count)` as soon as one can
/// run it; else the problems of the only target, or of each prefixed by its
/// backend's name.
fn check_graph(
    graph: &serde_json::Value,
    targets: &[Target<'_>],
    warnings: &mut Vec<String>,
) -> Result<usize, Vec<String>> {
    let mut failures = Vec::new();
    for target in targets {
        match check_on(graph, target, warnings) {
            Ok(count) => return Ok(count),
            Err(problems) => failures.push((target.name, problems)),
        }
    }
    if let [(_, problems)] = failures.as_mut_slice() {
        return Err(std::mem::take(problems));
    }
    Err(failures
        .into_iter()
        .map(|(name, problems)| format!("on {name}: {}", problems.join("; ")))
        .collect())
}

/// Checks `graph` against one target's catalog. A value the target itself
/// offered is never a pack defect; on the stock catalog, unknown classes are
/// warnings.
fn check_on(
    graph: &serde_json::Value,
    target: &Target<'_>,
    warnings: &mut Vec<String>,
) -> Result<usize, Vec<String>> {
    let (stock, offered) = (target.stock, &target.offered);
    let count = graph.as_object().map_or(0, |g| g.len());
    let Err(errors) = graph::check(graph, target.nodes) else {
        return Ok(count);
    };
    let mut problems = Vec::new();
    for error in errors.iter() {
        let is_offered_model = error.kind == GraphErrorKind::ValueNotInList
            && error
                .node_id
                .as_ref()
                .zip(error.input.as_ref())
                .and_then(|(node, input)| graph[node.as_str()]["inputs"][input.as_str()].as_str())
                .is_some_and(|value| offered.contains(value));
        if is_offered_model {
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
