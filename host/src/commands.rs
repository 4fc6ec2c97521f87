//! The commands besides `serve`: `templates` (list what the templates folder
//! offers), `check` (a pack author's report on one pack), `simulate` (run the
//! ComfyUI simulator), and the shared start-up of the service.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use pack_runtime::{ParamKind, ParamSpec, Runtime, RuntimeConfig};

use crate::admission::Admission;
use crate::app::App;
use crate::catalog::{Catalog, CatalogStore};
use crate::config::{Settings, SimulateArgs};
use crate::farm::{Farm, Member};
use crate::live::LiveComfy;
use crate::loader::PackLoader;
use crate::packs::PackSet;
use crate::reattach::TemplateProcessors;
use crate::workflow_file::WorkflowDirs;

/// Creates the pack runtime, the admission and the loader from the
/// settings; self-tests check against `live` once ComfyUI has been reached.
pub fn loader(settings: &Settings, live: Arc<LiveComfy>) -> anyhow::Result<Arc<PackLoader>> {
    let runtime = Runtime::new(RuntimeConfig {
        limits: settings.limits(),
        cache_dir: settings.compile_cache_dir(),
        cache_max_bytes: settings.cache_max_mb.saturating_mul(1 << 20),
        baseline_above_bytes: settings.baseline_compiler_above_mb.bytes(),
    })?;
    let admission =
        Admission::new(settings.admission()).context("cannot start the pack-call threads")?;
    Ok(Arc::new(PackLoader::new(
        Arc::new(runtime),
        admission,
        live,
        settings.load_budget(),
    )))
}

/// Starts the service and waits until the first scan of the templates
/// folder has loaded (or failed) every pack. For callers that need the
/// catalog complete at once (tests, benchmarks).
pub async fn start_app(settings: &Settings) -> anyhow::Result<Arc<App>> {
    let app = start_app_in_background(settings).await?;
    app.packs().wait_idle().await;
    Ok(app)
}

/// `settings`, with `COMFYUI_URL=sim` replaced by the URL of a built-in simulator started
/// for the life of the process (placeholder images); other settings as they are.
pub async fn with_simulator(settings: &Settings) -> anyhow::Result<Settings> {
    let mut settings = settings.clone();
    if settings.comfyui_url == "sim" {
        let sim = simulator::start(([127, 0, 0, 1], 0).into(), simulator::SimConfig::default())
            .await
            .context("cannot start the built-in ComfyUI simulator")?;
        settings.comfyui_url = sim.base_url();
        tracing::warn!(url = %settings.comfyui_url, "COMFYUI_URL=sim: using the built-in ComfyUI simulator; images are placeholders, not generations");
        // The simulator lives as long as the process.
        std::mem::forget(sim);
    }
    Ok(settings)
}

/// Starts the service with an empty catalog and returns at once; the first
/// scan runs in the background and each pack appears (a catalog swap, so
/// `list_changed`) as soon as it has loaded. Connects to ComfyUI (which may
/// be down: it keeps trying).
///
/// `COMFYUI_URL=sim` runs the built-in simulator in-process instead of
/// talking to a real ComfyUI (placeholder images; for trying things out).
pub async fn start_app_in_background(settings: &Settings) -> anyhow::Result<Arc<App>> {
    let settings = &with_simulator(settings).await?;
    let loader = loader(settings, Arc::new(LiveComfy::default()))?;
    let store = Arc::new(CatalogStore::new(Catalog::default()));
    let processors: Arc<dyn comfyui::reattach::ProcessorSource> =
        Arc::new(TemplateProcessors::new(store.clone(), loader.clone()));
    let packs = PackSet::new(settings.templates_dir.clone(), loader, store.clone());
    let farm = connect_backends(settings, processors).await?;
    packs.spawn_rescan();
    spawn_live_self_tests(&farm, &packs);
    let first_scan = packs.clone();
    let dir = settings.templates_dir.clone();
    let catalog = store.clone();
    tokio::spawn(async move {
        first_scan.wait_idle().await;
        let loaded = catalog.load();
        tracing::info!(
            templates = loaded.templates().len(),
            errors = loaded.errors().len(),
            dir = %dir.display(),
            "templates loaded (first scan done)"
        );
    });
    Ok(Arc::new(
        App::new(
            store,
            packs,
            farm,
            WorkflowDirs::new(settings.workflow_dirs.clone())
                .with_max_bytes(settings.max_workflow_bytes),
        )
        .with_graph_gate(settings.graph_gate())
        .with_model_limits(settings.model_limits())
        .with_image_intake(settings.image_intake()),
    ))
}

/// Connects every configured backend (one job store, one post-processing budget and one
/// source of adopted jobs' processors for all) into the farm.
async fn connect_backends(
    settings: &Settings,
    processors: Arc<dyn comfyui::reattach::ProcessorSource>,
) -> anyhow::Result<Arc<Farm>> {
    let job_store = open_job_store(settings).await?;
    let postprocess = settings.postprocess_options();
    let slots = Arc::new(tokio::sync::Semaphore::new(postprocess.concurrency.max(1)));
    let mut members = Vec::new();
    for (config, capacity) in settings.backends()? {
        let mut backend = comfyui::BackendOptions::for_config(&config);
        backend.processors = Some(processors.clone());
        backend.job_store = job_store.clone();
        backend.persist = settings.persist_options();
        backend.postprocess = postprocess;
        backend.postprocess_slots = Some(slots.clone());
        let name = config.name();
        let comfy = comfyui::ComfyUi::connect_with(config, backend)
            .with_context(|| format!("cannot set up the ComfyUI client for {name}"))?;
        members.push(Member { comfy, capacity });
    }
    if members.len() > 1 {
        let names: Vec<String> = members.iter().map(Member::name).collect();
        tracing::info!(backends = %names.join(", "), "serving a farm of ComfyUI backends");
    }
    Ok(Farm::new(
        members,
        settings.farm_options(),
        settings.graph_gate(),
    ))
}

/// Opens the job store (`COMFYUI_MCP_DB`) off the runtime; `None` when it is `off`. A
/// corrupt, locked or newer-schema file is an error: the server never starts with an empty
/// store in place of one it cannot read.
async fn open_job_store(
    settings: &Settings,
) -> anyhow::Result<Option<Arc<dyn comfyui::store::JobStore>>> {
    let Some(path) = settings.db_path() else {
        tracing::info!("COMFYUI_MCP_DB=off: jobs are kept in this process's memory only");
        return Ok(None);
    };
    let options = settings.store_options();
    let store = tokio::task::spawn_blocking(move || jobstore::SqliteJobStore::open(&path, options))
        .await
        .context("the job store could not be opened")??;
    Ok(Some(Arc::new(store)))
}

/// Each time a farm member (re)connects, records its node catalog and model files and
/// self-tests every pack again against what the backends offer together (the first scan
/// may have run offline, against the stock catalog). One task per member, for the life of
/// the process.
fn spawn_live_self_tests(farm: &Farm, packs: &Arc<PackSet>) {
    for (member, backend) in farm.members().iter().enumerate() {
        let comfy = backend.comfy.clone();
        let packs = packs.clone();
        tokio::spawn(async move {
            let mut connection = comfy.connection();
            loop {
                if connection.wait_for(|c| c.connected).await.is_err() {
                    return;
                }
                match (comfy.node_catalog().await, comfy.models_snapshot().await) {
                    (Ok(nodes), Ok(models)) => {
                        packs
                            .backend_answered(member, &comfy.name(), nodes, models)
                            .await;
                    }
                    (Err(e), _) | (_, Err(e)) => tracing::warn!(
                        backend = %comfy.name(),
                        "self-tests do not know this backend's catalog until a call reaches it: {e}"
                    ),
                }
                if connection.wait_for(|c| !c.connected).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// Loads every pack of the templates folder (concurrently, under the
/// admission) into one catalog, for the commands.
async fn scan_once(settings: &Settings) -> anyhow::Result<Arc<Catalog>> {
    let loader = loader(settings, Arc::new(LiveComfy::default()))?;
    let store = Arc::new(CatalogStore::new(Catalog::default()));
    let packs = PackSet::new(settings.templates_dir.clone(), loader, store.clone());
    packs.rescan().await;
    packs.wait_idle().await;
    Ok(store.load())
}

/// `comfyui-mcp templates`: every template with its pack and parameters.
pub async fn templates(settings: &Settings) -> anyhow::Result<()> {
    let catalog = scan_once(settings).await?;
    let mut out: Vec<u8> = Vec::new();
    writeln!(out, "templates in {}:", settings.templates_dir.display())?;
    for entry in catalog.templates() {
        let t = &entry.info;
        writeln!(out)?;
        writeln!(
            out,
            "{}  ({}x{}, category {}, tags {})  from {} {} ({})",
            t.id,
            t.default_width,
            t.default_height,
            t.category,
            t.tags.join(", "),
            entry.pack.name,
            entry.pack.version,
            entry.pack.path.display()
        )?;
        writeln!(out, "  {}", t.description)?;
        for p in &t.params {
            writeln!(out, "  - {}", describe_param(p))?;
        }
    }
    for problem in catalog.errors() {
        writeln!(out, "\nERROR {}: {}", problem.path.display(), problem.error)?;
    }
    if catalog.templates().is_empty() {
        writeln!(out, "(no templates)")?;
    }
    print_out(out).await
}

/// One line describing a parameter: name, type, default, range, choices.
pub fn describe_param(p: &ParamSpec) -> String {
    let kind = match p.kind {
        ParamKind::Text => "text",
        ParamKind::Integer => "integer",
        ParamKind::Number => "number",
        ParamKind::Boolean => "boolean",
        ParamKind::Image => "image",
        ParamKind::Mask => "mask",
    };
    let mut parts = vec![format!("{}: {kind}", p.name)];
    if p.required {
        parts.push("required".into());
    }
    if let Some(d) = &p.default {
        parts.push(format!("default {}", d.to_json()));
    }
    match (p.minimum, p.maximum) {
        (Some(lo), Some(hi)) => parts.push(format!("{lo}..{hi}")),
        (Some(lo), None) => parts.push(format!(">= {lo}")),
        (None, Some(hi)) => parts.push(format!("<= {hi}")),
        _ => {}
    }
    if let Some(m) = p.multiple_of {
        parts.push(format!("multiple of {m}"));
    }
    if !p.choices.is_empty() {
        let shown: Vec<&str> = p.choices.iter().take(8).map(String::as_str).collect();
        let more = p.choices.len().saturating_sub(shown.len());
        let more = if more > 0 {
            format!(", ... {more} more")
        } else {
            String::new()
        };
        parts.push(format!("one of {}{more}", shown.join(", ")));
    }
    if !p.aliases.is_empty() {
        let aliases: Vec<String> = p
            .aliases
            .iter()
            .map(|a| format!("{}={}", a.name, a.target))
            .collect();
        parts.push(format!("aliases {}", aliases.join(", ")));
    }
    format!("{} — {}", parts.join(", "), p.description)
}

/// `comfyui-mcp check PACK [--json] [--strict]`: loads one pack, self-tests
/// every template, and reports (see `check_report`). Returns whether it passed.
pub async fn check(
    settings: &Settings,
    pack_path: &Path,
    json: bool,
    strict: bool,
) -> anyhow::Result<bool> {
    crate::check_report::run(settings, pack_path, json, strict).await
}

/// Writes a command's report to stdout without blocking an async worker.
async fn print_out(out: Vec<u8>) -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt as _;
    let mut stdout = tokio::io::stdout();
    stdout.write_all(&out).await?;
    stdout.flush().await?;
    Ok(())
}

/// `comfyui-mcp simulate`: the ComfyUI simulator on loopback until ctrl-c,
/// with a control API for tests and demos on a second loopback port.
pub async fn simulate(args: &SimulateArgs) -> anyhow::Result<()> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], args.port));
    let config = simulator::SimConfig {
        step_delay: Duration::from_millis(args.step_delay_ms),
        machine: args.machine(),
        ..simulator::SimConfig::default()
    };
    let handle = Arc::new(
        simulator::start(addr, config)
            .await
            .with_context(|| format!("cannot start the simulator on {addr}"))?,
    );
    let control = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let control_addr = control.local_addr()?;
    let router = crate::sim_control::router(handle.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(control, router).await {
            tracing::warn!("simulator control API stopped: {e}");
        }
    });
    // The lines scripts parse; everything else goes through tracing.
    eprintln!("simulator listening on {}", handle.base_url());
    eprintln!("simulator control on http://{control_addr}/__sim");
    tracing::warn!("this is the ComfyUI simulator: it renders placeholder images, not generations");
    tokio::signal::ctrl_c().await.ok();
    Ok(())
}
