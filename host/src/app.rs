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
use pack_runtime::params::RETRIES_ARG;
use pack_runtime::{HostView, ResolvedParams, params};
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use crate::admission::{Admission, Wait};
use crate::catalog::{Catalog, CatalogStore};
use crate::error::{AppError, BackendRefusal};
use crate::farm::Farm;
use crate::farm::route::{FarmView, MemberView, Placement};
use crate::graph_gate::GraphGate;
use crate::inputs::{ImageIntake, PreparedInputs};
use crate::live::LiveComfy;
use crate::loader::{PackLoader, admission_key};
use crate::missing_model::{self, ModelLimits};
use crate::packs::PackSet;
use crate::postprocess::PackPostprocessor;
use crate::runnable::{Runnable, RunnableCache};
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
    farm: Arc<Farm>,
    workflow_dirs: WorkflowDirs,
    /// Node policy and graph check, off the runtime (defaults until [`App::with_graph_gate`]).
    gate: GraphGate,
    /// Budgets of the missing-model explanation (defaults until [`App::with_model_limits`]).
    model_limits: ModelLimits,
    /// Images from clients (no input folders, default caps until [`App::with_image_intake`]).
    intake: ImageIntake,
    /// Which templates can run where, as last computed.
    runnable: RunnableCache,
}

impl App {
    /// Assembles the service from its parts.
    pub fn new(
        catalog: Arc<CatalogStore>,
        packs: Arc<PackSet>,
        farm: Arc<Farm>,
        workflow_dirs: WorkflowDirs,
    ) -> Self {
        Self {
            catalog,
            packs,
            farm,
            workflow_dirs,
            gate: GraphGate::default(),
            model_limits: ModelLimits::DEFAULT,
            intake: ImageIntake::default(),
            runnable: RunnableCache::default(),
        }
    }

    /// Which templates can run now and on which backends (see [`crate::runnable`]); `None`
    /// when no backend answers.
    pub async fn runnable(&self) -> Option<Arc<Runnable>> {
        let views = self.member_views().await.ok()?;
        let catalog = self.catalog();
        let answer = self
            .runnable
            .compute(&catalog, &views, &self.farm, &self.gate, self.admission())
            .await;
        Some(answer)
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

    /// The primary ComfyUI backend (the only one without a farm).
    pub fn comfy(&self) -> &Arc<ComfyUi> {
        self.farm.primary()
    }

    /// The ComfyUI backends.
    pub fn farm(&self) -> &Arc<Farm> {
        &self.farm
    }

    /// Where images are written.
    pub fn output_dir(&self) -> &Path {
        &self.farm.primary().config().output_dir
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
        let retries = self.take_retries(&mut args)?;
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
                .prepare(&entry.info, &mut args, &self.farm)
                .await?
        } else {
            PreparedInputs::default()
        };
        let resolved = params::resolve_with_inputs(&entry.info, &args, &inputs.by_param(), limits)
            .map_err(AppError::from_resolve)?;
        let views = self.member_views().await?;
        // What the members have together (the same view a self-test gives the pack, on one).
        let host: Arc<dyn HostView> = Arc::new(FarmView(views.clone()));
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
        let placed = self.place(built.graph, &views).await?;
        let (member, graph) = (placed.member, placed.graph);
        let mut metadata = template_metadata(&entry.info.id, &built.params, &graph);
        if retries > 0 {
            metadata["retries"] = json!(retries);
        }
        inputs
            .upload(self.farm.members()[member].comfy.client())
            .await?;
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
        self.submit(member, &views, request, &inputs, retries).await
    }

    /// Takes the `retries` argument (0 when absent) out of `args`.
    fn take_retries(&self, args: &mut Map<String, Value>) -> Result<u32, AppError> {
        let max = self.farm.options().max_retries;
        match args.remove(RETRIES_ARG) {
            None | Some(Value::Null) => Ok(0),
            Some(value) => value
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|&n| n <= max)
                .ok_or_else(|| {
                    AppError::InvalidParams(vec![pack_runtime::FieldError::new(
                        RETRIES_ARG,
                        format!("must be a whole number from 0 to {max}, got {value}"),
                    )])
                }),
        }
    }

    /// The catalogs of the backends that take new work now; an error when none answers
    /// (the first member's reason). The primary's are also what pack self-tests see.
    async fn member_views(&self) -> Result<Vec<MemberView>, AppError> {
        let rotation = self.farm.in_rotation(None);
        let (views, mut failed) = self.farm.views(&rotation).await;
        let live: &LiveComfy = self.loader().live();
        let members = self.farm.members();
        for view in &views {
            let name = members[view.member].name();
            live.record(view.member, &name, Some(&view.nodes), Some(&view.models));
        }
        if views.is_empty() {
            return Err(if failed.is_empty() {
                AppError::Internal("no ComfyUI backend is configured".into())
            } else {
                failed.swap_remove(0).1
            });
        }
        Ok(views)
    }

    /// Where `graph` runs: the least loaded backend able to run it. Without a farm the one
    /// backend's own error comes back; on a farm an error naming what is missing where.
    async fn place(&self, graph: Value, views: &[MemberView]) -> Result<Placement, AppError> {
        let explain = |e, view: &MemberView| self.explain_missing(e, &view.nodes, &view.models);
        self.farm
            .place(&self.gate, graph, views, explain)
            .await
            .map_err(|mut refused| {
                if !self.farm.is_farm() && refused.len() == 1 {
                    return refused.swap_remove(0).1;
                }
                AppError::NoBackend(
                    refused
                        .into_iter()
                        .map(|(member, error)| BackendRefusal {
                            backend: self.farm.members()[member].name(),
                            error,
                        })
                        .collect(),
                )
            })
    }

    /// Submits to `member` (explaining a missing-model rejection with its models).
    async fn submit(
        &self,
        member: usize,
        views: &[MemberView],
        request: JobRequest,
        inputs: &PreparedInputs,
        retries: u32,
    ) -> Result<JobSnapshot, AppError> {
        self.farm
            .submit(member, request, inputs, retries)
            .await
            .map_err(|e| match views.iter().find(|v| v.member == member) {
                Some(view) => self.explain_missing(AppError::ComfyUi(e), &view.nodes, &view.models),
                None => AppError::ComfyUi(e),
            })
    }

    /// Reads a workflow file from an allowed folder (`source` a path, as `load_workflow`)
    /// or takes an inline graph, applies overrides, checks and submits it: the one path of
    /// every custom workflow.
    pub async fn load_workflow(
        &self,
        source: WorkflowSource,
        mut overrides: Map<String, Value>,
    ) -> Result<WorkflowSubmission, AppError> {
        let retries = self.take_retries(&mut overrides)?;
        let loaded = self
            .gate
            .load_workflow(&self.workflow_dirs, source, overrides)
            .await?;
        let applied = loaded.overrides;
        let views = self.member_views().await?;
        let placed = self.place(loaded.graph, &views).await?;
        let (member, graph) = (placed.member, placed.graph);
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
        if retries > 0 {
            metadata.insert(RETRIES_ARG.into(), json!(retries));
        }
        let request = JobRequest {
            graph,
            origin: loaded.origin,
            parameters: Value::Object(applied.applied.clone()),
            metadata: Value::Object(metadata),
            postprocess: None,
        };
        let job = self
            .submit(member, &views, request, &PreparedInputs::default(), retries)
            .await?;
        Ok(WorkflowSubmission {
            job,
            workflow_name: loaded.name,
            parameters_applied: applied.applied,
            parameters_unmatched: applied.unmatched,
        })
    }

    /// The current state of one of our jobs.
    pub async fn status(&self, prompt_id: &str) -> Result<JobSnapshot, AppError> {
        self.farm
            .status(prompt_id)
            .await?
            .ok_or_else(|| AppError::UnknownJob(prompt_id.to_owned()))
    }

    /// Follows a job's snapshots as they change.
    pub fn watch(&self, prompt_id: &str) -> Option<watch::Receiver<JobSnapshot>> {
        self.farm.watch(prompt_id)
    }

    /// Waits until a job is finished or `timeout` runs out; returns the state then.
    pub async fn wait(&self, prompt_id: &str, timeout: Duration) -> Result<JobSnapshot, AppError> {
        self.farm
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
                let outcome = self.farm.cancel(id).await.map_err(AppError::Cancel)?;
                Ok(CancelReport {
                    cancelled: true,
                    prompt_id: Some(id.to_owned()),
                    message: outcome.message(),
                })
            }
            (None, true) => match self.farm.interrupt_running().await.map_err(AppError::Cancel)? {
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
        crate::results::image_path(&self.farm, prompt_id, filename).await
    }

    /// ComfyUI's model files (cached by the backend), remembered as the last known ones;
    /// on a farm, every backend's files merged (see [`App::models_by_backend`] for where).
    pub async fn models(&self) -> Result<Arc<ModelSnapshot>, AppError> {
        let by_backend = self.models_by_backend().await?;
        Ok(ModelSnapshot::merged(by_backend.iter().map(|(_, m)| m)))
    }

    /// Each answering backend's model files, by name (remembered as its last known ones);
    /// an error when none answers.
    pub async fn models_by_backend(&self) -> Result<Vec<(String, Arc<ModelSnapshot>)>, AppError> {
        let mut out = Vec::new();
        let mut first_error = None;
        for (i, member) in self.farm.members().iter().enumerate() {
            match member.comfy.models_snapshot().await {
                Ok(models) => {
                    let name = member.name();
                    self.loader().live().record(i, &name, None, Some(&models));
                    out.push((name, models));
                }
                Err(e) => {
                    first_error.get_or_insert(AppError::ComfyUi(e));
                }
            }
        }
        match (out.is_empty(), first_error) {
            (true, Some(e)) => Err(e),
            _ => Ok(out),
        }
    }

    /// The model files last fetched from the backends (every member's together), without
    /// asking them (none before the first answer).
    pub fn known_models(&self) -> Option<Arc<ModelSnapshot>> {
        self.loader().live().models()
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
