//! `comfyui-mcp check PACK.wasm [--json] [--strict]`: what a pack author needs
//! to know before shipping a pack, as text or one JSON object.
//!
//! For each template: the parameters' JSON Schema exactly as MCP clients see
//! it (the per-template tool's input schema, from `mcp::schemas`), the
//! arguments of the self-test and the graph built from them, the graph check
//! (against the catalogs of the backends, `COMFYUI_URL` or the backends
//! file, that answer within `COMFYUI_MCP_CHECK_PROBE_MS`, a graph passing
//! when one of them can run it as on a farm; else the stock offline catalog;
//! the report says which), the call's time and peak memory (from the store's
//! limiter) against their limits, and findings.
//!
//! Findings are **errors** (the pack does not load, a template fails to
//! build or builds an invalid graph, the load budget ran out) or
//! **warnings** (it works but will hurt users: see [`WarningCode`]). The exit
//! status is non-zero only for errors, or for warnings too with `--strict`.
//! Defaults that fail their own parameter's check are refused when the pack
//! loads, so they show up as a load error.
//!
//! Lifecycle: one probe of every backend (together), then one admitted pack call that loads
//! the pack and self-tests every template under the load budget (as a load
//! in `serve`), then the report is printed to stdout.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pack_runtime::{CallStats, Compiler, Limits, Pack, ParamKind, ParamSpec, TemplateInfo};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::config::Settings;
use crate::live::LiveComfy;
use crate::loader::admission_key;
use crate::selftest::{self, BudgetExceeded, Observed};

/// A call using more than this share of the time limit gets [`WarningCode::SlowCall`].
const SLOW_CALL_SHARE: f64 = 0.5;
/// A call holding more than this share of the memory cap gets [`WarningCode::MemoryNearLimit`].
const MEMORY_SHARE: f64 = 0.75;
/// A load taking more than this share of the load budget gets [`WarningCode::SlowLoad`].
const SLOW_LOAD_SHARE: f64 = 0.5;

/// Why a pack or template fails `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// The pack did not load (unreadable, not a pack, imports, crash, metadata).
    LoadFailed,
    /// A template failed to build with its defaults.
    BuildFailed,
    /// A template built a graph the node catalog rejects.
    GraphInvalid,
    /// The self-test did not finish within the pack load budget.
    LoadBudgetExceeded,
}

/// What works but will hurt users (an error only with `--strict`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WarningCode {
    /// The pack, a template or a parameter has an empty description: the
    /// model choosing tools and arguments has nothing to go on.
    NoDescription,
    /// A number or integer parameter without a minimum or a maximum (and
    /// without choices): clients cannot tell what is sensible.
    Unbounded,
    /// An optional number, integer or boolean parameter without a default:
    /// clients cannot tell what an omitted value means.
    NoDefault,
    /// One build took more than half its time limit.
    SlowCall,
    /// One build held more than three quarters of the memory cap.
    MemoryNearLimit,
    /// Loading and self-testing took more than half the load budget.
    SlowLoad,
    /// The graph uses node classes the stock catalog does not know (custom
    /// nodes); only checked against a live ComfyUI.
    UnknownNodeOffline,
}

/// One finding, with what it is about.
#[derive(Debug, Clone, Serialize)]
pub struct Finding<C> {
    /// Its kind.
    pub code: C,
    /// What is wrong and what to do.
    pub message: String,
}

/// The node catalog the graphs were checked against.
#[derive(Debug, Clone, Serialize)]
pub struct CatalogUsed {
    /// `live` (the backends that answered the probe) or `stock` (the bundled offline catalog).
    pub kind: &'static str,
    /// Which ComfyUI, or why none was used.
    pub detail: String,
}

/// The loaded pack.
#[derive(Debug, Clone, Serialize)]
pub struct PackSummary {
    /// Declared name.
    pub name: String,
    /// Declared version.
    pub version: String,
    /// Declared description.
    pub description: String,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// File size in bytes.
    pub file_bytes: u64,
    /// The code generator it was compiled with (see `COMFYUI_MCP_BASELINE_COMPILER_ABOVE_MB`).
    pub compiler: &'static str,
}

/// What one build cost, against its limits.
#[derive(Debug, Clone, Serialize)]
pub struct CallCost {
    /// Wall time of the call (instantiation included), in milliseconds.
    pub elapsed_ms: f64,
    /// The call time limit, in milliseconds.
    pub time_limit_ms: u64,
    /// The most bytes its memories and tables held at once.
    pub peak_memory_bytes: usize,
    /// The memory cap of one call, in bytes.
    pub memory_limit_bytes: usize,
}

/// One template's part of the report.
#[derive(Debug, Clone, Serialize)]
pub struct TemplateCheck {
    /// Template id (also its MCP tool name).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Description.
    pub description: String,
    /// The input schema of the template's MCP tool, as clients see it.
    pub input_schema: Value,
    /// The arguments it was built with (defaults, plus a value for each required parameter).
    pub arguments: Map<String, Value>,
    /// The graph it built, if it built one.
    pub graph: Option<Value>,
    /// `valid`, `invalid` or `not built`.
    pub graph_check: &'static str,
    /// What the build cost, when the pack ran.
    pub call: Option<CallCost>,
    /// Why it fails.
    pub errors: Vec<Finding<ErrorCode>>,
    /// What will hurt users.
    pub warnings: Vec<Finding<WarningCode>>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The pack file as given.
    pub path: String,
    /// Whether the exit status is success: no errors (and no warnings with `strict`).
    pub ok: bool,
    /// Whether warnings count as errors.
    pub strict: bool,
    /// The pack, when it loaded.
    pub pack: Option<PackSummary>,
    /// Time to load and self-test, in milliseconds.
    pub load_ms: f64,
    /// What the graphs were checked against.
    pub catalog: CatalogUsed,
    /// Every template, in the pack's order.
    pub templates: Vec<TemplateCheck>,
    /// Errors of the pack as a whole.
    pub errors: Vec<Finding<ErrorCode>>,
    /// Warnings of the pack as a whole.
    pub warnings: Vec<Finding<WarningCode>>,
}

impl Report {
    fn error_count(&self) -> usize {
        self.errors.len() + self.templates.iter().map(|t| t.errors.len()).sum::<usize>()
    }

    fn warning_count(&self) -> usize {
        self.warnings.len()
            + self
                .templates
                .iter()
                .map(|t| t.warnings.len())
                .sum::<usize>()
    }
}

/// Runs the check and prints the report; returns whether it passed.
pub async fn run(
    settings: &Settings,
    path: &Path,
    json: bool,
    strict: bool,
) -> anyhow::Result<bool> {
    // The schemas are shown as the server publishes them, `wait` defaulting as it will.
    let default_wait = crate::mcp::McpOptions::default()
        .with_default_wait(settings.execution_timeout()?)
        .default_wait;
    let (live, catalog) = probe(settings).await;
    let loader = crate::commands::loader(settings, Arc::new(live))?;
    let started = Instant::now();
    let job_loader = loader.clone();
    let owned = path.to_owned();
    let (loaded, observed, overrun) = loader
        .admission()
        .run(
            &admission_key(path),
            crate::admission::Wait::Queue,
            move || {
                let loaded = job_loader.runtime().load_file(&owned);
                let mut observed = Vec::new();
                let overrun = loaded.as_ref().ok().and_then(|pack| {
                    selftest::run_observed(
                        pack,
                        &job_loader.check_catalog(),
                        Some((started, job_loader.load_budget())),
                        |o| observed.push(o),
                    )
                });
                (loaded, observed, overrun)
            },
        )
        .await?;
    let elapsed = started.elapsed();
    let runtime = loader.runtime();
    let mut report = Report {
        path: path.display().to_string(),
        ok: false,
        strict,
        pack: None,
        load_ms: elapsed.as_secs_f64() * 1e3,
        catalog,
        templates: Vec::new(),
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    match loaded {
        Err(e) => report.errors.push(Finding {
            code: ErrorCode::LoadFailed,
            message: e.to_string(),
        }),
        Ok(pack) => {
            let file_bytes = std::fs::metadata(path).map_or(0, |m| m.len());
            let compiler = runtime.compiler_for(usize::try_from(file_bytes).unwrap_or(usize::MAX));
            describe_pack(&mut report, &pack, file_bytes, compiler);
            for o in observed {
                let info = pack.template(&o.report.template).cloned();
                if let Some(info) = info {
                    report
                        .templates
                        .push(template_check(&info, o, pack.limits(), default_wait));
                }
            }
            pack_findings(&mut report, overrun, elapsed, settings.load_budget());
        }
    }
    report.ok = report.error_count() == 0 && !(strict && report.warning_count() > 0);
    let out = if json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else {
        render(&report)
    };
    print(out).await?;
    Ok(report.ok)
}

/// The catalogs to check against: those of every backend that answers within
/// the probe budget (all probed together; `sim` starts the built-in
/// simulator), as `serve` self-tests against the backends it reached; else
/// the stock one.
async fn probe(settings: &Settings) -> (LiveComfy, CatalogUsed) {
    let live = LiveComfy::default();
    let budget = Duration::from_millis(settings.check_probe_ms);
    let configs = match backend_configs(settings).await {
        Ok(configs) => configs,
        Err(e) => return (live, stock_catalog(settings, format!("{e:#}"))),
    };
    let single = configs.len() == 1;
    let fetched = futures_util::future::join_all(configs.into_iter().map(|config| async move {
        let url = config.display_url();
        let name = config.name();
        (
            url,
            name,
            tokio::time::timeout(budget, fetch_catalog(config)).await,
        )
    }))
    .await;
    let (mut used, mut failures) = (Vec::new(), Vec::new());
    for (member, (url, name, fetched)) in fetched.into_iter().enumerate() {
        let failure = match fetched {
            Ok(Ok((nodes, models))) => {
                live.record(member, &name, Some(&nodes), Some(&models));
                used.push(url);
                continue;
            }
            Ok(Err(e)) => format!("{e:#}"),
            Err(_) => format!(
                "no answer within {} ms (COMFYUI_MCP_CHECK_PROBE_MS)",
                settings.check_probe_ms
            ),
        };
        failures.push(if single {
            failure
        } else {
            format!("{url}: {failure}")
        });
    }
    let detail = match used.as_slice() {
        [] => return (live, stock_catalog(settings, failures.join("; "))),
        [one] => format!("the ComfyUI at {one}"),
        several => format!("the ComfyUIs at {}", several.join(", ")),
    };
    let detail = if failures.is_empty() {
        detail
    } else {
        format!("{detail} (not used: {})", failures.join("; "))
    };
    (
        live,
        CatalogUsed {
            kind: "live",
            detail,
        },
    )
}

/// The stock catalog, used because no backend could be: `failure` says why.
fn stock_catalog(settings: &Settings, failure: String) -> CatalogUsed {
    CatalogUsed {
        kind: "stock",
        detail: format!(
            "the stock offline catalog; ComfyUI at {} was not used: {failure}",
            settings.comfyui_url
        ),
    }
}

/// Every configured backend (`sim`: a built-in simulator, as for `serve`).
async fn backend_configs(settings: &Settings) -> anyhow::Result<Vec<comfyui::ComfyConfig>> {
    Ok(crate::commands::with_simulator(settings)
        .await?
        .backends()?
        .into_iter()
        .map(|(config, _)| config)
        .collect())
}

/// One backend's node catalog and model files.
async fn fetch_catalog(
    config: comfyui::ComfyConfig,
) -> anyhow::Result<(
    Arc<comfyui::nodes::NodeCatalog>,
    Arc<comfyui::ModelSnapshot>,
)> {
    let comfy = comfyui::ComfyUi::connect(config)?;
    let nodes = comfy.node_catalog().await?;
    let models = comfy.models_snapshot().await?;
    Ok((nodes, models))
}

fn describe_pack(report: &mut Report, pack: &Pack, file_bytes: u64, compiler: Compiler) {
    let info = pack.info();
    report.pack = Some(PackSummary {
        name: info.name.clone(),
        version: info.version.clone(),
        description: info.description.clone(),
        sha256: pack.sha256().to_owned(),
        file_bytes,
        compiler: compiler.name(),
    });
    if info.description.trim().is_empty() {
        report.warnings.push(Finding {
            code: WarningCode::NoDescription,
            message: "the pack has no description".into(),
        });
    }
}

fn pack_findings(
    report: &mut Report,
    overrun: Option<BudgetExceeded>,
    elapsed: Duration,
    budget: Duration,
) {
    if let Some(exceeded) = overrun {
        report.errors.push(Finding {
            code: ErrorCode::LoadBudgetExceeded,
            message: exceeded.to_string(),
        });
    } else if elapsed.as_secs_f64() > budget.as_secs_f64() * SLOW_LOAD_SHARE {
        report.warnings.push(Finding {
            code: WarningCode::SlowLoad,
            message: format!(
                "loading and self-testing took {elapsed:.1?}, over half the load budget of {budget:?} (COMFYUI_MCP_PACK_LOAD_TIMEOUT_MS); a hot reload pays this"
            ),
        });
    }
}

fn template_check(
    info: &TemplateInfo,
    o: Observed,
    limits: &Limits,
    default_wait: Duration,
) -> TemplateCheck {
    let input_schema = Value::Object(
        (*crate::mcp::schemas::template_input(
            &pack_runtime::params::input_schema(info),
            default_wait,
        ))
        .clone(),
    );
    let mut errors = Vec::new();
    if let Err(problems) = &o.report.outcome {
        let code = if o.graph.is_some() {
            ErrorCode::GraphInvalid
        } else {
            ErrorCode::BuildFailed
        };
        errors.extend(problems.iter().map(|p| Finding {
            code,
            message: p.clone(),
        }));
    }
    let mut warnings: Vec<Finding<WarningCode>> = o
        .report
        .warnings
        .iter()
        .map(|w| Finding {
            code: WarningCode::UnknownNodeOffline,
            message: w.clone(),
        })
        .collect();
    spec_warnings(info, &mut warnings);
    let call = o
        .stats
        .map(|stats| cost_findings(stats, limits, &mut warnings));
    TemplateCheck {
        id: info.id.clone(),
        name: info.name.clone(),
        description: info.description.clone(),
        input_schema,
        arguments: o.args,
        graph_check: match (&o.graph, &o.report.outcome) {
            (None, _) => "not built",
            (Some(_), Ok(_)) => "valid",
            (Some(_), Err(_)) => "invalid",
        },
        graph: o.graph,
        call,
        errors,
        warnings,
    }
}

fn spec_warnings(info: &TemplateInfo, warnings: &mut Vec<Finding<WarningCode>>) {
    let mut warn = |code, message: String| warnings.push(Finding { code, message });
    if info.description.trim().is_empty() {
        warn(
            WarningCode::NoDescription,
            "the template has no description: clients list it with nothing to choose it by".into(),
        );
    }
    for p in &info.params {
        param_warnings(p, &mut warn);
    }
}

fn param_warnings(p: &ParamSpec, warn: &mut impl FnMut(WarningCode, String)) {
    if p.description.trim().is_empty() {
        warn(
            WarningCode::NoDescription,
            format!("parameter `{}` has no description", p.name),
        );
    }
    let numeric = matches!(p.kind, ParamKind::Integer | ParamKind::Number);
    if numeric && p.choices.is_empty() && (p.minimum.is_none() || p.maximum.is_none()) {
        warn(
            WarningCode::Unbounded,
            format!(
                "parameter `{}` has no {}: clients (and models) will send any value; give it a range",
                p.name,
                match (p.minimum, p.maximum) {
                    (None, None) => "minimum or maximum",
                    (None, Some(_)) => "minimum",
                    _ => "maximum",
                }
            ),
        );
    }
    // An optional text without default is common (absent = the pack picks,
    // like a checkpoint); a number or switch without one leaves clients guessing.
    if !p.required && p.default.is_none() && p.kind != ParamKind::Text {
        warn(
            WarningCode::NoDefault,
            format!(
                "optional parameter `{}` has no default: clients cannot tell what leaving it out does",
                p.name
            ),
        );
    }
}

fn cost_findings(
    stats: CallStats,
    limits: &Limits,
    warnings: &mut Vec<Finding<WarningCode>>,
) -> CallCost {
    let limit = limits.call_timeout;
    if stats.elapsed.as_secs_f64() > limit.as_secs_f64() * SLOW_CALL_SHARE {
        warnings.push(Finding {
            code: WarningCode::SlowCall,
            message: format!(
                "the build took {:.1?}, over half its time limit of {limit:?} (COMFYUI_MCP_PACK_TIMEOUT_MS); a slower machine will time out",
                stats.elapsed
            ),
        });
    }
    if stats.peak_memory_bytes as f64 > limits.memory_bytes as f64 * MEMORY_SHARE {
        warnings.push(Finding {
            code: WarningCode::MemoryNearLimit,
            message: format!(
                "the build held {} of its {} memory cap (COMFYUI_MCP_PACK_MEMORY_MB)",
                mib(stats.peak_memory_bytes),
                mib(limits.memory_bytes)
            ),
        });
    }
    CallCost {
        elapsed_ms: stats.elapsed.as_secs_f64() * 1e3,
        time_limit_ms: u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
        peak_memory_bytes: stats.peak_memory_bytes,
        memory_limit_bytes: limits.memory_bytes,
    }
}

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

/// The report as text: the lines `check` always printed (`pack ...`, `ok`,
/// `FAIL`, the verdict) with the schema, graph, cost and findings between them.
fn render(r: &Report) -> String {
    let mut out = String::new();
    if let Some(p) = &r.pack {
        let _ = writeln!(
            out,
            "pack {} {} — {} ({} templates, sha256 {}, {:.1} MB, compiled by {}, loaded in {:.0} ms)",
            p.name,
            p.version,
            p.description,
            r.templates.len(),
            &p.sha256[..12],
            p.file_bytes as f64 / 1e6,
            p.compiler,
            r.load_ms
        );
        let _ = writeln!(out, "graphs checked against {}", r.catalog.detail);
    }
    for e in &r.errors {
        if e.code == ErrorCode::LoadFailed {
            let _ = writeln!(out, "FAIL  load: {}", e.message);
        }
    }
    for t in &r.templates {
        render_template(&mut out, t);
    }
    for e in r.errors.iter().filter(|e| e.code != ErrorCode::LoadFailed) {
        let _ = writeln!(out, "FAIL  {}", e.message);
    }
    for w in &r.warnings {
        let _ = writeln!(out, "warning: {}", w.message);
    }
    let (errors, warnings) = (r.error_count(), r.warning_count());
    let verdict = if errors > 0 {
        "some templates failed"
    } else if !r.ok {
        "all templates passed, but --strict counts the warnings as errors"
    } else {
        "all templates passed"
    };
    let _ = writeln!(out, "{verdict} ({errors} errors, {warnings} warnings)");
    out
}

fn render_template(out: &mut String, t: &TemplateCheck) {
    let cost = t.call.as_ref().map_or(String::new(), |c| {
        format!(
            "; call {:.1} ms of {} ms, peak memory {} of {}",
            c.elapsed_ms,
            c.time_limit_ms,
            mib(c.peak_memory_bytes),
            mib(c.memory_limit_bytes)
        )
    });
    let nodes = t
        .graph
        .as_ref()
        .and_then(Value::as_object)
        .map_or(0, Map::len);
    if t.errors.is_empty() {
        let _ = writeln!(out, "ok    {} ({nodes} nodes, graph valid{cost})", t.id);
    } else {
        let _ = writeln!(out, "FAIL  {} (graph {}{cost})", t.id, t.graph_check);
        for e in &t.errors {
            let _ = writeln!(out, "        {}", e.message);
        }
    }
    for w in &t.warnings {
        let _ = writeln!(out, "        warning: {}", w.message);
    }
    let _ = writeln!(
        out,
        "        input schema (the `{}` tool, as MCP clients see it):",
        t.id
    );
    indent(
        out,
        &serde_json::to_string_pretty(&t.input_schema).unwrap_or_default(),
        10,
    );
    let _ = writeln!(
        out,
        "        built with {}",
        Value::Object(t.arguments.clone())
    );
    if let Some(graph) = t.graph.as_ref().and_then(Value::as_object) {
        for (id, node) in graph {
            let _ = writeln!(
                out,
                "          node {id}: {} {}",
                node["class_type"].as_str().unwrap_or("?"),
                node["inputs"]
            );
        }
    }
}

fn indent(out: &mut String, text: &str, by: usize) {
    for line in text.lines() {
        let _ = writeln!(out, "{:by$}{line}", "");
    }
}

/// Writes the report to stdout without blocking an async worker.
async fn print(out: String) -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt as _;
    let mut stdout = tokio::io::stdout();
    stdout.write_all(out.as_bytes()).await?;
    stdout.flush().await?;
    Ok(())
}
