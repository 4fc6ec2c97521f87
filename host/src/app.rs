//! The service core, independent of MCP: generate from a template, run a
//! workflow file, report status, cancel. Every MCP session (stdio or HTTP)
//! shares one `App`.
//!
//! One `generate` call: look the template up in the current catalog
//! snapshot → check the parameters against its specs → build the graph in
//! the sandbox (admitted: a pack-call permit, an admission thread) → the
//! node policy and the graph check against ComfyUI's node catalog, on the
//! bounded blocking pool of the [`GraphGate`] → submit and track the job.
//! `load_workflow` reads, parses and checks its file on that pool too.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use comfyui::nodes::NodeCatalog;
use comfyui::{ComfyUi, JobOrigin, JobRequest, JobSnapshot, ModelSnapshot};
use pack_runtime::{HostView, ResolvedParams, params};
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use crate::admission::{Admission, Wait};
use crate::catalog::{Catalog, CatalogStore};
use crate::error::AppError;
use crate::graph_gate::GraphGate;
use crate::inputs::{ImageIntake, PreparedInputs};
use crate::loader::{LiveComfy, PackLoader, admission_key};
use crate::missing_model::{self, ModelLimits};
use crate::packs::PackSet;
use crate::postprocess::PackPostprocessor;
use crate::selftest::CatalogHost;
use crate::workflow_file::{WorkflowDirs, WorkflowSource};

/// What a custom workflow (`load_workflow`, or `generate_image` with a workflow) submitted.
#[derive(Debug, Clone)]
pub struct WorkflowSubmission {
    /// The job.
    pub job: JobSnapshot,
    /// The file's name, or [`crate::workflow_file::INLINE_NAME`].
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
    packs: Arc<PackSet>,
    comfy: Arc<ComfyUi>,
    workflow_dirs: WorkflowDirs,
    /// Node policy and graph check, off the runtime (defaults until [`App::with_graph_gate`]).
    gate: GraphGate,
    /// Budgets of the missing-model explanation (defaults until [`App::with_model_limits`]).
    model_limits: ModelLimits,
    /// Images from clients (no input folders, default caps until [`App::with_image_intake`]).
    intake: ImageIntake,
}

impl App {
    /// Assembles the service from its parts.
    pub fn new(
        catalog: Arc<CatalogStore>,
        packs: Arc<PackSet>,
        comfy: Arc<ComfyUi>,
        workflow_dirs: WorkflowDirs,
    ) -> Self {
        Self {
            catalog,
            packs,
            comfy,
            workflow_dirs,
            gate: GraphGate::default(),
            model_limits: ModelLimits::DEFAULT,
            intake: ImageIntake::default(),
        }
    }

    /// The same service with this image intake (caps, input folders, pool from the settings).
    pub fn with_image_intake(mut self, intake: ImageIntake) -> Self {
        self.intake = intake;
        self
    }

    /// The image intake.
    pub fn image_intake(&self) -> &ImageIntake {
        &self.intake
    }

    /// The same service with this graph gate (budgets and node policy from the settings).
    pub fn with_graph_gate(mut self, gate: GraphGate) -> Self {
        self.gate = gate;
        self
    }

    /// The same service with these model-file budgets (from the settings).
    pub fn with_model_limits(mut self, limits: ModelLimits) -> Self {
        self.model_limits = limits;
        self
    }

    /// The model-file budgets.
    pub fn model_limits(&self) -> &ModelLimits {
        &self.model_limits
    }

    /// A graph check or ComfyUI rejection about missing model files, explained with what is
    /// installed (see [`missing_model`]); other errors unchanged.
    fn explain_missing(
        &self,
        error: AppError,
        nodes: &NodeCatalog,
        models: &ModelSnapshot,
    ) -> AppError {
        let max_entries = self.gate.limits().max_errors;
        missing_model::explain(error, nodes, models, &self.model_limits, max_entries)
    }

    /// The graph gate.
    pub fn graph_gate(&self) -> &GraphGate {
        &self.gate
    }

    /// The current catalog snapshot.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.load()
    }

    /// The catalog store (for the watcher).
    pub fn catalog_store(&self) -> &Arc<CatalogStore> {
        &self.catalog
    }

    /// The pack loader.
    pub fn loader(&self) -> &Arc<PackLoader> {
        self.packs.loader()
    }

    /// The pack files and their load states (for the watcher).
    pub fn packs(&self) -> &Arc<PackSet> {
        &self.packs
    }

    /// The admission every pack call goes through.
    pub fn admission(&self) -> &Arc<Admission> {
        self.packs.loader().admission()
    }

    /// The watched templates folder.
    pub fn templates_dir(&self) -> &Path {
        self.packs.dir()
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

    /// Builds a template's graph from `args`, checks it, and submits it. Image arguments
    /// are read and checked before the build (after every other argument checked) and
    /// uploaded only once the graph passed its checks (see [`crate::inputs`]).
    pub async fn generate(
        &self,
        template_id: &str,
        mut args: Map<String, Value>,
    ) -> Result<JobSnapshot, AppError> {
        let catalog = self.catalog();
        let entry = catalog
            .template(template_id)
            .ok_or_else(|| AppError::UnknownTemplate {
                id: template_id.to_owned(),
                available: catalog.template_ids(),
            })?
            .clone();
        let limits = &entry.runner.limits().metadata;
        let inputs = if entry.info.params.iter().any(|spec| spec.kind.is_image()) {
            // The other arguments first: no image is read for a call that fails anyway.
            let unread = crate::inputs::placeholders(&entry.info, &args);
            params::resolve_with_inputs(&entry.info, &args, &unread, limits)
                .map_err(AppError::from_resolve)?;
            self.intake
                .prepare(&entry.info, &mut args, &self.comfy)
                .await?
        } else {
            PreparedInputs::default()
        };
        let resolved = params::resolve_with_inputs(&entry.info, &args, &inputs.by_param(), limits)
            .map_err(AppError::from_resolve)?;
        let (nodes, models) = self.comfy_state().await?;
        // The same view of ComfyUI a self-test gives the pack.
        let host: Arc<dyn HostView> = Arc::new(CatalogHost {
            models: models.clone(),
            nodes: nodes.clone(),
        });
        let runner = entry.runner.clone();
        let id = entry.info.id.clone();
        let build_host = host.clone();
        let built = self
            .admission()
            .run(&admission_key(&entry.pack.path), Wait::Bounded, move || {
                runner.build_resolved(&id, resolved, build_host)
            })
            .await
            .map_err(AppError::from_admission)?
            .map_err(|e| AppError::from_call(&entry.pack.name, e))?;
        let (graph, _) = self
            .gate
            .check(built.graph, nodes.clone())
            .await
            .map_err(|e| self.explain_missing(e, &nodes, &models))?;
        let metadata = template_metadata(&entry.info.id, &built.params, &graph);
        inputs.upload(self.comfy.client()).await?;
        // The pack post-processes each output image of a flagged template (ABI 2.x).
        let postprocess = entry.info.postprocess.then(|| {
            Arc::new(PackPostprocessor::new(
                entry.runner.clone(),
                entry.info.id.clone(),
                built.params.clone(),
                self.admission().clone(),
                admission_key(&entry.pack.path),
                host,
            )) as Arc<dyn comfyui::postprocess::OutputProcessor>
        });
        let request = JobRequest {
            graph,
            origin: JobOrigin::Template {
                template_id: entry.info.id.clone(),
                pack_name: entry.pack.name.clone(),
                pack_version: entry.pack.version.clone(),
                pack_sha256: entry.pack.sha256.clone(),
            },
            parameters: Value::Object(built.params.to_json()),
            metadata,
            postprocess,
        };
        self.comfy
            .submit(request)
            .await
            .map_err(|e| self.explain_missing(AppError::ComfyUi(e), &nodes, &models))
    }

    /// Reads a workflow file from an allowed folder (`source` a path, as `load_workflow`)
    /// or takes an inline graph, applies overrides, checks and submits it: the one path of
    /// every custom workflow.
    pub async fn load_workflow(
        &self,
        source: WorkflowSource,
        overrides: Map<String, Value>,
    ) -> Result<WorkflowSubmission, AppError> {
        let loaded = self
            .gate
            .load_workflow(&self.workflow_dirs, source, overrides)
            .await?;
        let applied = loaded.overrides;
        let (nodes, models) = self.comfy_state().await?;
        let (graph, _) = self
            .gate
            .check(loaded.graph, nodes.clone())
            .await
            .map_err(|e| self.explain_missing(e, &nodes, &models))?;
        // The generation settings among the overrides (not the "<node>.<input>" ones).
        let mut metadata: Map<String, Value> = applied
            .applied
            .iter()
            .filter(|(key, _)| !key.contains('.'))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        metadata.insert("workflow".into(), json!(loaded.name));
        if let JobOrigin::InlineWorkflow { sha256 } = &loaded.origin {
            metadata.insert("workflow_sha256".into(), json!(sha256));
        }
        let request = JobRequest {
            graph,
            origin: loaded.origin,
            parameters: Value::Object(applied.applied.clone()),
            metadata: Value::Object(metadata),
            postprocess: None,
        };
        let job = self
            .comfy
            .submit(request)
            .await
            .map_err(|e| self.explain_missing(AppError::ComfyUi(e), &nodes, &models))?;
        Ok(WorkflowSubmission {
            job,
            workflow_name: loaded.name,
            parameters_applied: applied.applied,
            parameters_unmatched: applied.unmatched,
        })
    }

    /// The current state of one of our jobs.
    pub async fn status(&self, prompt_id: &str) -> Result<JobSnapshot, AppError> {
        self.comfy
            .status(prompt_id)
            .await?
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
            .await?
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
        crate::results::image_path(&self.comfy, prompt_id, filename).await
    }

    /// ComfyUI's model files (cached by the backend), remembered as the last known ones.
    pub async fn models(&self) -> Result<Arc<ModelSnapshot>, AppError> {
        let models = self
            .comfy
            .models_snapshot()
            .await
            .map_err(AppError::ComfyUi)?;
        store_if_new(&self.loader().live().models, &models);
        Ok(models)
    }

    /// The model files last fetched from ComfyUI, without asking it (none before the first
    /// answer).
    pub fn known_models(&self) -> Option<Arc<ModelSnapshot>> {
        self.loader().live().models.load_full()
    }

    /// ComfyUI's node catalog and model lists (cached by the backend; fresh
    /// after every reconnect). Also shared with pack self-tests.
    async fn comfy_state(&self) -> Result<(Arc<NodeCatalog>, Arc<ModelSnapshot>), AppError> {
        let nodes = self.comfy.node_catalog().await.map_err(AppError::ComfyUi)?;
        let models = self.models().await?;
        let live: &LiveComfy = self.loader().live();
        store_if_new(&live.nodes, &nodes);
        Ok((nodes, models))
    }
}

/// Stores `fresh` in `slot` unless the slot already holds that very snapshot.
fn store_if_new<T>(slot: &arc_swap::ArcSwapOption<T>, fresh: &Arc<T>) {
    let stale = slot
        .load()
        .as_ref()
        .is_none_or(|known| !Arc::ptr_eq(known, fresh));
    if stale {
        slot.store(Some(fresh.clone()));
    }
}

/// The size a template without `width`/`height` parameters renders at (an image template):
/// the literal size of the graph's scaling or empty-latent node if it has one, else the
/// size of its first input image.
fn output_size(params: &ResolvedParams, graph: &Value) -> Option<(u64, u64)> {
    let literal = graph
        .as_object()
        .into_iter()
        .flat_map(|nodes| nodes.values())
        .filter(|node| {
            matches!(
                node["class_type"].as_str(),
                Some("ImageScale" | "EmptyLatentImage")
            )
        })
        .find_map(|node| {
            let inputs = &node["inputs"];
            Some((inputs["width"].as_u64()?, inputs["height"].as_u64()?))
        });
    literal.or_else(|| {
        params.iter().find_map(|(_, value)| match value {
            pack_runtime::ParamValue::Image(image) => {
                Some((u64::from(image.width), u64::from(image.height)))
            }
            _ => None,
        })
    })
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
    if !meta.contains_key("width")
        && let Some((width, height)) = output_size(params, graph)
    {
        meta.insert("width".into(), json!(width));
        meta.insert("height".into(), json!(height));
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
