//! The commands besides `serve`: `templates` (list what the templates folder
//! offers), `check` (a pack author's report on one pack), `simulate` (run the
//! ComfyUI simulator), and the shared start-up of the service.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwapOption;
use pack_runtime::{ParamKind, ParamSpec, Runtime, RuntimeConfig};

use crate::app::App;
use crate::catalog::CatalogStore;
use crate::config::{Settings, SimulateArgs};
use crate::loader::PackLoader;
use crate::selftest;
use crate::workflow_file::WorkflowDirs;

/// Creates the pack runtime and loader from the settings; self-tests check
/// against `live_catalog` once ComfyUI's catalog has been fetched.
pub fn loader(
    settings: &Settings,
    live_catalog: Arc<ArcSwapOption<comfyui::nodes::NodeCatalog>>,
) -> anyhow::Result<Arc<PackLoader>> {
    let runtime = Runtime::new(RuntimeConfig {
        limits: settings.limits(),
        cache_dir: settings.compile_cache_dir(),
    })?;
    Ok(Arc::new(PackLoader::new(Arc::new(runtime), live_catalog)))
}

/// Starts the service: loads every pack, connects to ComfyUI (which may be
/// down: it keeps trying), and returns the shared `App`.
///
/// `COMFYUI_URL=sim` runs the built-in simulator in-process instead of
/// talking to a real ComfyUI (placeholder images; for trying things out).
pub async fn start_app(settings: &Settings) -> anyhow::Result<Arc<App>> {
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
    let settings = &settings;
    let comfy_config = settings.comfy_config()?;
    let live_catalog = Arc::new(ArcSwapOption::empty());
    let loader = loader(settings, live_catalog.clone())?;
    let dir = settings.templates_dir.clone();
    let scan_loader = loader.clone();
    let catalog = tokio::task::spawn_blocking(move || scan_loader.scan(&dir, 1))
        .await
        .context("loading packs")?;
    tracing::info!(
        templates = catalog.templates().len(),
        errors = catalog.errors().len(),
        dir = %settings.templates_dir.display(),
        "templates loaded"
    );
    let comfy = comfyui::ComfyUi::connect(comfy_config.clone()).with_context(|| {
        format!(
            "cannot set up the ComfyUI client for {}",
            comfy_config.display_url()
        )
    })?;
    Ok(Arc::new(
        App::new(
            Arc::new(CatalogStore::new(catalog)),
            loader,
            comfy,
            live_catalog,
            WorkflowDirs::new(settings.workflow_dirs.clone())
                .with_max_bytes(settings.max_workflow_bytes),
            settings.templates_dir.clone(),
        )
        .with_graph_gate(settings.graph_gate()),
    ))
}

/// `comfyui-mcp templates`: every template with its pack and parameters.
pub fn templates(settings: &Settings) -> anyhow::Result<()> {
    let loader = loader(settings, Arc::new(ArcSwapOption::empty()))?;
    let catalog = loader.scan(&settings.templates_dir, 1);
    let mut out = std::io::stdout().lock();
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
    Ok(())
}

/// One line describing a parameter: name, type, default, range, choices.
pub fn describe_param(p: &ParamSpec) -> String {
    let kind = match p.kind {
        ParamKind::Text => "text",
        ParamKind::Integer => "integer",
        ParamKind::Number => "number",
        ParamKind::Boolean => "boolean",
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

/// `comfyui-mcp check PACK`: loads one pack, self-tests every template, and
/// reports. Returns whether everything passed.
pub fn check(settings: &Settings, pack_path: &Path) -> anyhow::Result<bool> {
    let loader = loader(settings, Arc::new(ArcSwapOption::empty()))?;
    let mut out = std::io::stdout().lock();
    let started = std::time::Instant::now();
    let pack = match loader.runtime().load_file(pack_path) {
        Ok(pack) => pack,
        Err(e) => {
            writeln!(out, "FAIL  load: {e}")?;
            return Ok(false);
        }
    };
    writeln!(
        out,
        "pack {} {} — {} ({} templates, sha256 {}, loaded in {:.1?})",
        pack.info().name,
        pack.info().version,
        pack.info().description,
        pack.templates().len(),
        &pack.sha256()[..12],
        started.elapsed()
    )?;
    let reports = selftest::run(&pack, &loader.check_catalog());
    let mut ok = true;
    for report in &reports {
        match &report.outcome {
            Ok(nodes) => writeln!(
                out,
                "ok    {} ({nodes} nodes, graph valid)",
                report.template
            )?,
            Err(problems) => {
                ok = false;
                writeln!(out, "FAIL  {}", report.template)?;
                for p in problems {
                    writeln!(out, "        {p}")?;
                }
            }
        }
        for w in &report.warnings {
            writeln!(out, "        warning: {w}")?;
        }
    }
    writeln!(
        out,
        "{}",
        if ok {
            "all templates passed"
        } else {
            "some templates failed"
        }
    )?;
    Ok(ok)
}

/// `comfyui-mcp simulate`: the ComfyUI simulator on loopback until ctrl-c,
/// with a control API for tests and demos on a second loopback port.
pub async fn simulate(args: &SimulateArgs) -> anyhow::Result<()> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], args.port));
    let config = simulator::SimConfig {
        step_delay: Duration::from_millis(args.step_delay_ms),
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
