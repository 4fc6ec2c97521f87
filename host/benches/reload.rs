//! Hot-reload latency: from the shipped pack being renamed into the watched templates folder
//! to the new catalog snapshot being published (`App::catalog_changes()` receiving the new
//! generation). Every MCP session's catalog task sends `notifications/tools/list_changed` and
//! `notifications/resources/list_changed` on exactly that signal, so this is the server-side
//! latency of list_changed, minus one notification write per session.
//!
//! Two modes, N runs each, against one `App` built like `serve` builds it (in-process
//! simulator as ComfyUI) with `watch::spawn` watching a private templates folder:
//! * cold: the compile cache folder is emptied before every run, so the pack is compiled;
//! * cached: the compiled artifact is already in the cache (left there by the previous run).
//!
//! The latency includes the watcher's debounce (`watch::DEBOUNCE`), hashing, compiling or
//! loading the artifact, the pack's self-test (every template built and checked) and the swap.
//! Between runs the file is removed and the removal swap awaited. The pack is staged in a
//! sibling folder on the same file system, so the rename is atomic and the only event in
//! the templates folder.
//!
//! Run with: `cargo bench -p comfyui-mcp --bench reload` (prints; never asserts on timings).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use comfyui_mcp::App;
use comfyui_mcp::config::Cli;
use tokio::sync::watch;

const RUNS: usize = 10;
const PACK: &str = "game-assets.wasm";
const TEMPLATE: &str = "item-icon";
/// Pause after each removal swap, before the next run.
const SETTLE: Duration = Duration::from_millis(300);
/// Upper bound for one reload; a reload slower than this means the watcher is broken.
const GIVE_UP: Duration = Duration::from_secs(120);

struct Dirs {
    _root: tempfile::TempDir,
    staging: PathBuf,
    templates: PathBuf,
    cache: PathBuf,
    out: PathBuf,
}

fn dirs() -> Dirs {
    let root = tempfile::tempdir().expect("temporary folder");
    let make = |name: &str| {
        let dir = root.path().join(name);
        std::fs::create_dir_all(&dir).expect("create folder");
        dir
    };
    Dirs {
        staging: make("staging"),
        templates: make("templates"),
        cache: make("pack-cache"),
        out: make("out"),
        _root: root,
    }
}

async fn start_app(sim: &simulator::SimHandle, dirs: &Dirs) -> Arc<App> {
    let path = |p: &Path| p.display().to_string();
    let cli = <Cli as clap::Parser>::try_parse_from([
        "comfyui-mcp".to_owned(),
        "--comfyui-url".to_owned(),
        sim.base_url(),
        "--output-dir".to_owned(),
        path(&dirs.out),
        "--templates-dir".to_owned(),
        path(&dirs.templates),
        "--cache-dir".to_owned(),
        path(&dirs.cache),
    ])
    .expect("settings");
    comfyui_mcp::commands::start_app(&cli.settings)
        .await
        .expect("app starts")
}

/// Waits for catalog swaps until `done` holds for the current catalog; returns when it does.
async fn wait_for(
    app: &App,
    changes: &mut watch::Receiver<u64>,
    done: impl Fn(&App) -> bool,
    what: &str,
) {
    let deadline = Instant::now() + GIVE_UP;
    while !done(app) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, changes.changed()).await {
            Ok(Ok(())) => {
                changes.borrow_and_update();
            }
            Ok(Err(_)) => panic!("catalog store dropped while waiting for {what}"),
            Err(_) => panic!("no catalog swap within {GIVE_UP:?} while waiting for {what}"),
        }
    }
}

fn serving(app: &App) -> bool {
    app.catalog().template(TEMPLATE).is_some()
}

fn empty_folder(dir: &Path) {
    for entry in std::fs::read_dir(dir).expect("read cache folder") {
        let path = entry.expect("cache entry").path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path).expect("empty cache folder");
        } else {
            std::fs::remove_file(&path).expect("empty cache folder");
        }
    }
}

/// One reload: rename the staged pack in, wait for the swap that serves it; then remove it
/// and wait for the removal swap. Returns the rename → publish latency.
async fn one_run(app: &App, dirs: &Dirs, pack: &[u8]) -> Duration {
    let staged = dirs.staging.join(PACK);
    std::fs::write(&staged, pack).expect("stage the pack");
    let mut changes = app.catalog_changes();
    changes.borrow_and_update();
    let start = Instant::now();
    std::fs::rename(&staged, dirs.templates.join(PACK)).expect("rename into the templates folder");
    wait_for(app, &mut changes, serving, "the pack to serve").await;
    let latency = start.elapsed();
    assert!(
        app.catalog().errors().is_empty(),
        "errors: {:?}",
        app.catalog().errors()
    );

    std::fs::remove_file(dirs.templates.join(PACK)).expect("remove the pack");
    wait_for(app, &mut changes, |a| !serving(a), "the removal swap").await;
    // Let trailing watcher events of the removal settle, so the next run starts from a quiet
    // folder (outside the measured interval).
    tokio::time::sleep(SETTLE).await;
    latency
}

fn summary(label: &str, mut samples: Vec<Duration>) {
    let each: Vec<String> = samples
        .iter()
        .map(|d| format!("{:.1}", d.as_secs_f64() * 1e3))
        .collect();
    samples.sort();
    let median = samples[samples.len() / 2];
    let max = samples[samples.len() - 1];
    let min = samples[0];
    println!(
        "{label:<7} n={:<3} median {:>8.1} ms   min {:>8.1} ms   max {:>8.1} ms   (runs: {} ms)",
        samples.len(),
        median.as_secs_f64() * 1e3,
        min.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        each.join(", "),
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let pack = std::fs::read(manifest.join("../templates").join(PACK)).expect("the shipped pack");
        let sim = simulator::start(([127, 0, 0, 1], 0).into(), simulator::SimConfig::default())
            .await
            .expect("simulator");
        let dirs = dirs();
        let app = start_app(&sim, &dirs).await;
        assert!(app.catalog().templates().is_empty(), "the templates folder starts empty");
        let _watch = comfyui_mcp::watch::spawn(app.clone()).expect("watcher");

        println!(
            "hot reload of {PACK} ({} KiB): rename into the templates folder -> catalog swap published \
             (App::catalog_changes() gets the new generation; each MCP session sends \
             notifications/tools/list_changed on that signal). Includes the {} ms debounce, \
             load and self-test. {RUNS} runs per mode.",
            pack.len() / 1024,
            comfyui_mcp::watch::DEBOUNCE.as_millis(),
        );
        let mut cold = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            empty_folder(&dirs.cache);
            cold.push(one_run(&app, &dirs, &pack).await);
        }
        let mut cached = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            cached.push(one_run(&app, &dirs, &pack).await);
        }
        summary("cold", cold);
        summary("cached", cached);
    });
}
