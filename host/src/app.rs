//! The service core, independent of MCP: generate from a template, run a
//! workflow file, report status, cancel. Every MCP session (stdio or HTTP)
//! shares one `App`.
//!
//! One `generate` call: look the template up in the current catalog
//! snapshot → check the parameters against its specs → build the graph in
//! the sandbox (blocking thread) → check the graph against ComfyUI's node
//! catalog → submit and track the job.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use comfyui::nodes::NodeCatalog;
use comfyui::{ComfyUi, JobOrigin, JobRequest, JobSnapshot, ModelSnapshot};
use pack_runtime::{HostView, ResolvedParams, params};
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use crate::catalog::{Catalog, CatalogStore};
use crate::error::AppError;
use crate::loader::PackLoader;
use crate::workflow_file::{self, WorkflowDirs};

/// What `load_workflow` submitted.
#[derive(Debug, Clone)]
pub struct WorkflowSubmission {
    /// The job.
    pub job: JobSnapshot,
    /// The file's name.
    pub workflow_name: String,
    /// Overrides that were applied, with the values used.
    pub parameters_applied: Map<String, Value>,
    /// Overrides that matched no input.
    pub parameters_unmatched: Vec<String>,
}

/// What a cancel did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CancelReport {
    /// Whether a job was cancelled.
    pub cancelled: bool,
    /// Which job.
    pub prompt_id: Option<String>,
    /// One line for the user.
    pub message: String,
}

/// The shared service.
pub struct App {
    catalog: Arc<CatalogStore>,
    loader: Arc<PackLoader>,
    comfy: Arc<ComfyUi>,
    live_catalog: Arc<ArcSwapOption<NodeCatalog>>,
    workflow_dirs: WorkflowDirs,
    templates_dir: PathBuf,
}

impl App {
    /// Assembles the service from its parts.
    pub fn new(
        catalog: Arc<CatalogStore>,
        loader: Arc<PackLoader>,
        comfy: Arc<ComfyUi>,
        live_catalog: Arc<ArcSwapOption<NodeCatalog>>,
        workflow_dirs: WorkflowDirs,
        templates_dir: PathBuf,
    ) -> Self {
        Self {
            catalog,
            loader,
            comfy,
            live_catalog,
            workflow_dirs,
            templates_dir,
        }
    }

    /// The current catalog snapshot.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.load()
    }

    /// The catalog store (for the watcher).
    pub fn catalog_store(&self) -> &Arc<CatalogStore> {
        &self.catalog
    }

    /// The pack loader (for the watcher).
    pub fn loader(&self) -> &Arc<PackLoader> {
        &self.loader
    }

    /// The watched templates folder.
    pub fn templates_dir(&self) -> &Path {
        &self.templates_dir
    }

    /// Receives a new generation number on every catalog swap.
    pub fn catalog_changes(&self) -> watch::Receiver<u64> {
        self.catalog.subscribe()
    }

    /// The ComfyUI backend.
    pub fn comfy(&self) -> &Arc<ComfyUi> {
        &self.comfy
    }

    /// Where images are written.
    pub fn output_dir(&self) -> &Path {
        &self.comfy.config().output_dir
    }

    /// The folders `load_workflow` may read.
    pub fn workflow_dirs(&self) -> &WorkflowDirs {
        &self.workflow_dirs
    }

    /// Builds a template's graph from `args`, checks it, and submits it.
    pub async fn generate(
        &self,
        template_id: &str,
        args: Map<String, Value>,
    ) -> Result<JobSnapshot, AppError> {
        let catalog = self.catalog();
        let entry = catalog
            .template(template_id)
            .ok_or_else(|| AppError::UnknownTemplate {
                id: template_id.to_owned(),
                available: catalog.template_ids(),
            })?
            .clone();
        let resolved = params::resolve(&entry.info, &args, &entry.runner.limits().metadata)
            .map_err(AppError::InvalidParams)?;
        let (nodes, models) = self.comfy_state().await?;
        let host: Arc<dyn HostView> = Arc::new(LiveHost {
            models,
            nodes: nodes.clone(),
        });
        let runner = entry.runner.clone();
        let id = entry.info.id.clone();
        let built = tokio::task::spawn_blocking(move || runner.build_resolved(&id, resolved, host))
            .await
            .map_err(|e| AppError::Internal(format!("pack call aborted: {e}")))?
            .map_err(|e| AppError::from_call(&entry.pack.name, e))?;
        comfyui::graph::check(&built.graph, &nodes).map_err(AppError::InvalidGraph)?;
        let metadata = template_metadata(&entry.info.id, &built.params, &built.graph);
        let request = JobRequest {
            graph: built.graph,
            origin: JobOrigin::Template {
                template_id: entry.info.id.clone(),
                pack_name: entry.pack.name.clone(),
                pack_version: entry.pack.version.clone(),
                pack_sha256: entry.pack.sha256.clone(),
            },
            parameters: Value::Object(built.params.to_json()),
            metadata,
        };
        self.comfy.submit(request).await.map_err(AppError::ComfyUi)
    }

    /// Reads a workflow file from an allowed folder, applies overrides,
    /// checks and submits it.
    pub async fn load_workflow(
        &self,
        path: &str,
        overrides: Map<String, Value>,
    ) -> Result<WorkflowSubmission, AppError> {
        let file = self.workflow_dirs.read(path)?;
        let mut graph = workflow_file::parse_api_graph(&file.display_name, &file.bytes)?;
        let applied = workflow_file::apply_overrides(&mut graph, &overrides);
        let (nodes, _) = self.comfy_state().await?;
        comfyui::graph::check(&graph, &nodes).map_err(AppError::InvalidGraph)?;
        let request = JobRequest {
            graph,
            origin: JobOrigin::Workflow {
                path: file.path.display().to_string(),
                sha256: file.sha256.clone(),
            },
            parameters: Value::Object(applied.applied.clone()),
            metadata: json!({ "workflow": file.display_name }),
        };
        let job = self
            .comfy
            .submit(request)
            .await
            .map_err(AppError::ComfyUi)?;
        Ok(WorkflowSubmission {
            job,
            workflow_name: file.display_name,
            parameters_applied: applied.applied,
            parameters_unmatched: applied.unmatched,
        })
    }

    /// The current state of one of our jobs.
    pub async fn status(&self, prompt_id: &str) -> Result<JobSnapshot, AppError> {
        self.comfy
            .status(prompt_id)
            .await
            .ok_or_else(|| AppError::UnknownJob(prompt_id.to_owned()))
    }

    /// Follows a job's snapshots as they change.
    pub fn watch(&self, prompt_id: &str) -> Option<watch::Receiver<JobSnapshot>> {
        self.comfy.watch(prompt_id)
    }

    /// Waits until a job is finished or `timeout` runs out; returns the state then.
    pub async fn wait(&self, prompt_id: &str, timeout: Duration) -> Result<JobSnapshot, AppError> {
        self.comfy
            .wait(prompt_id, timeout)
            .await
            .ok_or_else(|| AppError::UnknownJob(prompt_id.to_owned()))
    }

    /// Cancels one of our jobs (`prompt_id`), or with `interrupt` and no id,
    /// the running job if it is ours. Never touches jobs others submitted.
    pub async fn cancel(
        &self,
        prompt_id: Option<&str>,
        interrupt: bool,
    ) -> Result<CancelReport, AppError> {
        match (prompt_id, interrupt) {
            (Some(id), _) => {
                let outcome = self.comfy.cancel(id).await.map_err(AppError::Cancel)?;
                Ok(CancelReport {
                    cancelled: true,
                    prompt_id: Some(id.to_owned()),
                    message: outcome.message(),
                })
            }
            (None, true) => match self.comfy.interrupt_running().await.map_err(AppError::Cancel)? {
                Some(id) => Ok(CancelReport {
                    cancelled: true,
                    message: format!("job {id} was interrupted while running"),
                    prompt_id: Some(id),
                }),
                None => Ok(CancelReport {
                    cancelled: false,
                    prompt_id: None,
                    message: "no job submitted through this server is running; nothing was interrupted".into(),
                }),
            },
            (None, false) => Err(AppError::InvalidRequest(
                "give the prompt_id of the job to cancel, or set interrupt: true to stop the running job".into(),
            )),
        }
    }

    /// The local file of an image of one of our finished jobs.
    pub async fn image_path(&self, prompt_id: &str, filename: &str) -> Result<PathBuf, AppError> {
        let job = self.status(prompt_id).await?;
        job.files
            .iter()
            .find(|f| f.filename == filename)
            .map(|f| f.path.clone())
            .ok_or_else(|| AppError::UnknownImage {
                prompt_id: prompt_id.to_owned(),
                filename: filename.to_owned(),
                available: job.files.iter().map(|f| f.filename.clone()).collect(),
            })
    }

    /// ComfyUI's node catalog and model lists (cached by the backend; fresh
    /// after every reconnect). Also shared with pack self-tests.
    async fn comfy_state(&self) -> Result<(Arc<NodeCatalog>, Arc<ModelSnapshot>), AppError> {
        let nodes = self.comfy.node_catalog().await.map_err(AppError::ComfyUi)?;
        let models = self
            .comfy
            .models_snapshot()
            .await
            .map_err(AppError::ComfyUi)?;
        let stale = self
            .live_catalog
            .load()
            .as_ref()
            .is_none_or(|known| !Arc::ptr_eq(known, &nodes));
        if stale {
            self.live_catalog.store(Some(nodes.clone()));
        }
        Ok((nodes, models))
    }
}

/// What a pack sees of the connected ComfyUI during one call.
struct LiveHost {
    models: Arc<ModelSnapshot>,
    nodes: Arc<NodeCatalog>,
}

impl HostView for LiveHost {
    fn models(&self, folder: &str) -> Vec<String> {
        self.models.folders.get(folder).cloned().unwrap_or_default()
    }
    fn has_node(&self, class_type: &str) -> bool {
        self.nodes.contains(class_type)
    }
}

/// The `metadata` object of the tool contract: the generation settings that
/// matter to a user, with the concrete seed and the checkpoint actually used.
fn template_metadata(template: &str, params: &ResolvedParams, graph: &Value) -> Value {
    let mut meta = Map::new();
    for key in [
        "seed",
        "width",
        "height",
        "steps",
        "cfg_scale",
        "sampler",
        "scheduler",
        "denoise",
        "batch_size",
    ] {
        if let Some(v) = params.get(key) {
            meta.insert(key.into(), v.to_json());
        }
    }
    let checkpoint = graph
        .as_object()
        .into_iter()
        .flat_map(|nodes| nodes.values())
        .find_map(|node| node["inputs"]["ckpt_name"].as_str());
    if let Some(ckpt) = checkpoint {
        meta.insert("checkpoint".into(), json!(ckpt));
    }
    meta.insert("template".into(), json!(template));
    Value::Object(meta)
}
