//! A loaded pack and the one way to call into it: a fresh, limited `Store`
//! per call, dropped afterwards whatever happened.
//!
//! Every call (metadata at load, self-tests, builds, post-processing) goes through
//! [`Pack::call`], so every call runs: on a call thread (one call at a
//! time, reused: `threads.rs`) with [`Limits::native_stack_bytes`] of native
//! stack; under the store-wide limiter (`limiter.rs`) from instantiation
//! on, start functions included;
//! with the epoch deadline; with clocks and randomness fixed by the call's
//! seed (`purity.rs`). Its error is classified from typed facts only: the
//! limiter's refusal, the trap code, and the phase (instantiate, bind the
//! exports, run) in which it failed.
//!
//! A pack of a pooling engine is instantiated from the instance pool; when
//! the pool cannot serve the call it is instantiated again by the on-demand
//! twin engine ([`Fallback`]; the rules are in `compiler.rs`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use wasmtime::component::{Component, Instance};
use wasmtime::{Engine, Store, Trap};

use crate::bindings::{Bound, Major, PackFailure, PackPre};
use crate::compiler::Sandbox;
use crate::error::{CallError, LoadError, NoPostprocess};
use crate::limits::Limits;
use crate::metadata::validate_metadata;
use crate::params::{self, FieldError, ResolvedParams};
use crate::postprocess::{PostprocessStep, Postprocessed, RgbaImage, check_image};
use crate::purity::CallSeed;
use crate::runtime::{EPOCH_TICK, EpochTicker};
use crate::sandbox::{CapturedOutput, HostView, StoreState};
use crate::spec::{ImageInput, PackInfo, TemplateInfo};
use crate::text;
use crate::threads::CallThreads;

/// A pack that loaded, described itself, and passed metadata validation.
pub struct Pack {
    path: PathBuf,
    sha256: String,
    info: PackInfo,
    templates: Vec<TemplateInfo>,
    /// Template id -> index in `templates`.
    index: HashMap<String, usize>,
    pre: PackPre,
    /// Where calls go when `engine`'s instance pool cannot serve them.
    fallback: Option<Fallback>,
    /// The `comfyui:workflow` version of its `templates` export.
    abi_version: String,
    engine: Engine,
    limits: Limits,
    threads: Arc<CallThreads>,
    _ticker: Arc<EpochTicker>,
}

/// What one call cost, measured by the store that ran it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallStats {
    /// Wall time of the call: instantiation, the export call, and dropping the store.
    pub elapsed: std::time::Duration,
    /// The most bytes the call's memories and tables held at once, as the
    /// store's limiter counts them against [`Limits::memory_bytes`].
    pub peak_memory_bytes: usize,
    /// Whether the call's instance came from the instance pool (false when
    /// the pool is off, full, or too small for the pack: see [`Limits::pool_slots`]).
    pub pooled: bool,
}

/// A pack as the runtime compiled and linked it: pre-instantiated in
/// `engine`, with the on-demand twin when `engine` pools instances.
pub(crate) struct Linked {
    pub pre: PackPre,
    pub fallback: Option<Fallback>,
    pub engine: Engine,
}

/// The on-demand twin of a pooling pack: the same compiled code in the twin
/// engine (compiled or cached there), linked on the first call the pool
/// cannot serve.
pub(crate) struct Fallback {
    sandbox: Arc<Sandbox>,
    component: Component,
    major: Major,
    postprocessor: bool,
    pre: OnceLock<Result<PackPre, String>>,
}

impl Fallback {
    pub(crate) fn new(
        sandbox: Arc<Sandbox>,
        component: Component,
        major: Major,
        postprocessor: bool,
    ) -> Self {
        Self {
            sandbox,
            component,
            major,
            postprocessor,
            pre: OnceLock::new(),
        }
    }

    /// The pre-instantiated pack in the twin engine, linked once.
    fn pre(&self) -> Result<&PackPre, &str> {
        self.pre
            .get_or_init(|| {
                let instance_pre = self
                    .sandbox
                    .linker
                    .instantiate_pre(&self.component)
                    .map_err(|e| format!("{e:#}"))?;
                PackPre::new(self.major, instance_pre, self.postprocessor)
                    .map_err(|e| format!("{e:#}"))
            })
            .as_ref()
            .map_err(String::as_str)
    }
}

/// A graph a template built, with the parameters it was built from.
#[derive(Debug, Clone)]
pub struct BuiltGraph {
    /// The template that built it.
    pub template_id: String,
    /// ComfyUI API-format graph (a JSON object of nodes).
    pub graph: Value,
    /// Every parameter as passed to the pack (defaults filled, seed concrete).
    pub params: ResolvedParams,
}

impl std::fmt::Debug for Pack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pack")
            .field("path", &self.path)
            .field("info", &self.info)
            .field(
                "templates",
                &self.templates.iter().map(|t| &t.id).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Pack {
    pub(crate) fn describe(
        path: PathBuf,
        sha256: String,
        linked: Linked,
        abi_version: String,
        limits: Limits,
        threads: Arc<CallThreads>,
        ticker: Arc<EpochTicker>,
    ) -> Result<Self, LoadError> {
        let Linked {
            pre,
            fallback,
            engine,
        } = linked;
        let mut pack = Pack {
            path,
            sha256,
            info: PackInfo {
                name: String::new(),
                version: String::new(),
                description: String::new(),
            },
            templates: Vec::new(),
            index: HashMap::new(),
            pre,
            fallback,
            abi_version,
            engine,
            limits,
            threads,
            _ticker: ticker,
        };
        let offline: Arc<dyn HostView> = Arc::new(crate::sandbox::StaticHost::default());
        let describe_err = |source| LoadError::Describe {
            path: pack.path.clone(),
            source,
        };
        let (info, templates) = pack
            .call(offline, CallSeed::for_describe(), |store, bound| {
                let info = bound.info(store)?;
                let templates = bound.list(store)?;
                Ok((info, templates))
            })
            .map_err(|source| match source {
                CallError::AbiMismatch(reason) => LoadError::ExportMismatch {
                    path: pack.path.clone(),
                    supported: pack.abi_version.clone(),
                    reason,
                },
                source => describe_err(source),
            })?;
        pack.info = info;
        pack.templates = templates;
        validate_metadata(&pack.info, &pack.templates, &pack.limits.metadata).map_err(
            |reason| LoadError::Metadata {
                path: pack.path.clone(),
                reason,
            },
        )?;
        pack.check_postprocessor()?;
        // Ids are unique once validated.
        pack.index = pack
            .templates
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.clone(), i))
            .collect();
        Ok(pack)
    }

    /// Refuses a pack whose templates ask for post-processing it does not export.
    fn check_postprocessor(&self) -> Result<(), LoadError> {
        if self.pre.has_postprocessor() {
            return Ok(());
        }
        let flagged: Vec<String> = self
            .templates
            .iter()
            .filter(|t| t.postprocess)
            .map(|t| format!("`{}`", t.id))
            .collect();
        if flagged.is_empty() {
            return Ok(());
        }
        Err(LoadError::MissingPostprocessor {
            path: self.path.clone(),
            templates: flagged.join(", "),
            major: self.pre.major().label(),
        })
    }

    /// The `comfyui:workflow` version the pack was built against (its
    /// `templates` export), e.g. `2.0.0`.
    pub fn abi_version(&self) -> &str {
        &self.abi_version
    }

    /// Whether the pack exports a postprocessor (`comfyui:workflow/postprocessor@2.x`).
    pub fn has_postprocessor(&self) -> bool {
        self.pre.has_postprocessor()
    }

    /// The file the pack was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// SHA-256 of the pack's bytes, hex.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The pack's declared identity.
    pub fn info(&self) -> &PackInfo {
        &self.info
    }

    /// Every template the pack offers.
    pub fn templates(&self) -> &[TemplateInfo] {
        &self.templates
    }

    /// A template by id.
    pub fn template(&self, id: &str) -> Option<&TemplateInfo> {
        self.index.get(id).map(|&i| &self.templates[i])
    }

    /// The limits this pack's calls run under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Checks `args` against the template's specs, then builds its graph.
    ///
    /// Blocks for up to the call time limit, and WASI's blocking output
    /// enters a tokio runtime of its own: call it from a plain thread or
    /// `tokio::task::spawn_blocking`, never directly on an async worker.
    pub fn build(
        &self,
        template_id: &str,
        args: &Map<String, Value>,
        host: Arc<dyn HostView>,
    ) -> Result<BuiltGraph, CallError> {
        self.build_with_stats(template_id, args, host).0
    }

    /// [`Pack::build`], with what the call cost when the pack ran (`None`
    /// when the host refused the call first: unknown template, invalid
    /// parameters). Same blocking rules.
    pub fn build_with_stats(
        &self,
        template_id: &str,
        args: &Map<String, Value>,
        host: Arc<dyn HostView>,
    ) -> (Result<BuiltGraph, CallError>, Option<CallStats>) {
        self.build_with_inputs(template_id, args, &BTreeMap::new(), host)
    }

    /// [`Pack::build_with_stats`] for a template with image or mask
    /// parameters: `inputs` holds the uploaded image of each image argument
    /// (see [`params::resolve_with_inputs`]). Same blocking rules.
    pub fn build_with_inputs(
        &self,
        template_id: &str,
        args: &Map<String, Value>,
        inputs: &BTreeMap<String, ImageInput>,
        host: Arc<dyn HostView>,
    ) -> (Result<BuiltGraph, CallError>, Option<CallStats>) {
        let resolved = self.template_or_err(template_id).and_then(|template| {
            params::resolve_with_inputs(template, args, inputs, &self.limits.metadata)
                .map_err(CallError::from)
        });
        match resolved {
            Ok(resolved) => self.build_measured(template_id, resolved, host),
            Err(e) => (Err(e), None),
        }
    }

    /// Builds a graph from parameters that already passed [`params::resolve`].
    pub fn build_resolved(
        &self,
        template_id: &str,
        params: ResolvedParams,
        host: Arc<dyn HostView>,
    ) -> Result<BuiltGraph, CallError> {
        self.build_measured(template_id, params, host).0
    }

    /// [`Pack::build_resolved`], with what the call cost when the pack ran
    /// (`None` when it was refused before running: an unknown template).
    pub fn build_measured(
        &self,
        template_id: &str,
        params: ResolvedParams,
        host: Arc<dyn HostView>,
    ) -> (Result<BuiltGraph, CallError>, Option<CallStats>) {
        if let Err(e) = self.template_or_err(template_id) {
            return (Err(e), None);
        }
        let seed = CallSeed::for_build(template_id, params.iter());
        let (outcome, stats) = self.call_measured(host, seed, |store, bound| {
            bound.build(store, template_id, &params)
        });
        (
            outcome.and_then(|outcome| self.graph_from(template_id, outcome, params)),
            Some(stats),
        )
    }

    /// The graph a successful `build` returned, checked against the output cap and shape.
    fn graph_from(
        &self,
        template_id: &str,
        outcome: Result<String, PackFailure>,
        params: ResolvedParams,
    ) -> Result<BuiltGraph, CallError> {
        let text = match outcome {
            Ok(text) => text,
            Err(error) => return Err(self.build_error(error)),
        };
        if text.len() > self.limits.max_graph_bytes {
            return Err(CallError::OutputTooLarge {
                size: text.len(),
                limit: self.limits.max_graph_bytes,
            });
        }
        let graph: Value =
            serde_json::from_str(&text).map_err(|e| CallError::MalformedGraph(e.to_string()))?;
        if !graph.is_object() {
            return Err(CallError::MalformedGraph(format!(
                "expected an object of nodes, got {}",
                json_type(&graph)
            )));
        }
        Ok(BuiltGraph {
            template_id: template_id.to_owned(),
            graph,
            params,
        })
    }

    /// Runs the pack's postprocessor on one output image of `template_id`,
    /// built with `params` (what [`Pack::build_resolved`] got), in a fresh
    /// sandbox under the same limits and deterministic WASI as `build`.
    ///
    /// Refused before the pack runs: an unknown template, a template without
    /// the `postprocess` flag or of a 1.x pack ([`CallError::NoPostprocess`]),
    /// an image over [`Limits::max_postprocess_pixels`] or with a malformed
    /// buffer ([`CallError::InputImage`]). The returned image is checked the
    /// same way ([`CallError::OutputImage`]) and its steps are capped in
    /// count and text. Same blocking rules as [`Pack::build`].
    pub fn postprocess_resolved(
        &self,
        template_id: &str,
        params: &ResolvedParams,
        image: RgbaImage,
        host: Arc<dyn HostView>,
    ) -> Result<Postprocessed, CallError> {
        self.postprocess_measured(template_id, params, image, host)
            .0
    }

    /// [`Pack::postprocess_resolved`], with what the call cost when the pack
    /// ran (`None` when it was refused first).
    pub fn postprocess_measured(
        &self,
        template_id: &str,
        params: &ResolvedParams,
        image: RgbaImage,
        host: Arc<dyn HostView>,
    ) -> (Result<Postprocessed, CallError>, Option<CallStats>) {
        if let Err(e) = self.postprocess_allowed(template_id, &image) {
            return (Err(e), None);
        }
        let seed = CallSeed::for_build(template_id, params.iter());
        let (outcome, stats) = self.call_measured(host, seed, |store, bound| {
            match bound.postprocess(store, template_id, params, image) {
                Some(outcome) => outcome,
                // Checked above: a flagged template's pack exports it (load-time check).
                None => Ok(Err(PackFailure::Failed(
                    "the pack exports no postprocessor".to_owned(),
                ))),
            }
        });
        (
            outcome.and_then(|outcome| self.postprocessed_from(outcome)),
            Some(stats),
        )
    }

    fn postprocess_allowed(&self, template_id: &str, image: &RgbaImage) -> Result<(), CallError> {
        let template = self.template_or_err(template_id)?;
        let refuse = |cause| CallError::NoPostprocess {
            template: template_id.to_owned(),
            cause,
        };
        if self.pre.major() == crate::bindings::Major::V1 {
            return Err(refuse(NoPostprocess::OldAbi {
                found: self.abi_version.clone(),
            }));
        }
        // A flagged template's pack exports a postprocessor (checked at load).
        if !template.postprocess {
            return Err(refuse(NoPostprocess::NotFlagged));
        }
        check_image(image, self.limits.max_postprocess_pixels).map_err(CallError::InputImage)
    }

    /// What a successful `postprocess` returned, checked and its texts capped.
    fn postprocessed_from(
        &self,
        outcome: Result<Postprocessed, PackFailure>,
    ) -> Result<Postprocessed, CallError> {
        let mut done = outcome.map_err(|e| self.build_error(e))?;
        check_image(&done.image, self.limits.max_postprocess_pixels)
            .map_err(CallError::OutputImage)?;
        let max = self.limits.max_error_bytes;
        let total = done.steps.len();
        let keep = total.min(self.limits.max_postprocess_steps);
        done.steps.truncate(keep);
        for step in &mut done.steps {
            step.name = text::cap(&step.name, max);
            step.detail = text::cap(&step.detail, max);
        }
        if total > keep {
            done.steps.push(PostprocessStep {
                name: "...".to_owned(),
                detail: format!(
                    "and {} more steps cut (the pack reported {total}; at most {keep} are kept, raise COMFYUI_MCP_POSTPROCESS_MAX_STEPS)",
                    total - keep
                ),
            });
        }
        Ok(done)
    }

    fn template_or_err(&self, id: &str) -> Result<&TemplateInfo, CallError> {
        self.template(id).ok_or_else(|| self.unknown_template(id))
    }

    fn unknown_template(&self, id: &str) -> CallError {
        CallError::UnknownTemplate {
            id: id.to_owned(),
            available: self
                .templates
                .iter()
                .map(|t| t.id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    /// A pack's own `build-error`, its texts escaped and capped.
    fn build_error(&self, error: PackFailure) -> CallError {
        let max = self.limits.max_error_bytes;
        match error {
            PackFailure::UnknownTemplate(id) => self.unknown_template(&text::cap(&id, max)),
            PackFailure::InvalidParams(errors) => {
                let total = errors.len();
                let keep = total.min(self.limits.max_field_errors);
                let mut kept: Vec<FieldError> = errors
                    .into_iter()
                    .take(keep)
                    .map(|(param, message)| {
                        FieldError::new(text::cap(&param, max), text::cap(&message, max))
                    })
                    .collect();
                if total > keep {
                    kept.push(FieldError::new(
                        "...",
                        format!(
                            "and {} more errors cut (the pack reported {total}; at most {keep} are kept, raise Limits::max_field_errors)",
                            total - keep
                        ),
                    ));
                }
                CallError::InvalidParams(kept)
            }
            PackFailure::Failed(message) => CallError::Failed(text::cap(&message, max)),
        }
    }

    /// Runs `f` in a fresh store under the pack's limits, on a thread with
    /// the native stack the wasm stack limit needs. The store (and with it
    /// any trapped or interrupted instance) is dropped before returning.
    fn call<R: Send>(
        &self,
        host: Arc<dyn HostView>,
        seed: CallSeed,
        f: impl FnOnce(&mut Store<StoreState>, &Bound) -> wasmtime::Result<R> + Send,
    ) -> Result<R, CallError> {
        self.call_measured(host, seed, f).0
    }

    /// [`Pack::call`], with what the call cost (zero when no thread could be started).
    fn call_measured<R: Send>(
        &self,
        host: Arc<dyn HostView>,
        seed: CallSeed,
        f: impl FnOnce(&mut Store<StoreState>, &Bound) -> wasmtime::Result<R> + Send,
    ) -> (Result<R, CallError>, CallStats) {
        // Events of the call (the pack's log lines included) belong to the
        // caller's span and are emitted on the caller's thread.
        let span = tracing::Span::current();
        let started = std::time::Instant::now();
        let joined = self
            .threads
            .run(|| {
                let _entered = span.enter();
                self.call_here(host, seed, f)
            })
            .map_err(CallError::Thread);
        let (result, output, peak_memory_bytes, pooled) = match joined {
            Ok(done) => done,
            Err(e) => {
                let stats = CallStats {
                    elapsed: started.elapsed(),
                    peak_memory_bytes: 0,
                    pooled: false,
                };
                return (Err(e), stats);
            }
        };
        output.flush_to_log(&self.info.name);
        let stats = CallStats {
            elapsed: started.elapsed(),
            peak_memory_bytes,
            pooled,
        };
        (result, stats)
    }

    /// [`Pack::call`] on the current thread, which must have
    /// [`Limits::native_stack_bytes`] of stack. Returns the call's output
    /// for the caller to log, the peak bytes its memories and tables held,
    /// and whether its instance came from the pool.
    fn call_here<R>(
        &self,
        host: Arc<dyn HostView>,
        seed: CallSeed,
        f: impl FnOnce(&mut Store<StoreState>, &Bound) -> wasmtime::Result<R>,
    ) -> (Result<R, CallError>, CapturedOutput, usize, bool) {
        let started = Instant::now();
        let mut pre = &self.pre;
        let mut store = self.store(&self.engine, host.clone(), seed, self.limits.call_timeout);
        let mut instance = pre.instance_pre().instantiate(&mut store);
        let mut pooled = self.fallback.is_some();
        if let (Err(err), Some(fallback)) = (&instance, &self.fallback)
            && pool_could_not_serve(err, &store)
        {
            tracing::debug!(pack = %text::escape_control(&self.info.name), "the instance pool cannot serve this call, instantiating on demand: {err:#}");
            match fallback.pre() {
                Ok(twin) => {
                    let left = self.limits.call_timeout.saturating_sub(started.elapsed());
                    pre = twin;
                    store = self.store(&fallback.sandbox.engine, host, seed, left);
                    instance = pre.instance_pre().instantiate(&mut store);
                    pooled = false;
                }
                Err(reason) => {
                    tracing::warn!(pack = %text::escape_control(&self.info.name), "cannot load the pack into the on-demand engine: {reason}");
                }
            }
        }
        let result = instance
            .map_err(|e| (Phase::Instantiate, e))
            .and_then(|instance: Instance| {
                pre.bind(&mut store, &instance)
                    .map_err(|e| (Phase::Bind, e))
            })
            .and_then(|bindings| f(&mut store, &bindings).map_err(|e| (Phase::Run, e)));
        let output = store.data().output.clone();
        let refused = store.data().limiter.refusal().is_some();
        let peak = store.data().limiter.used();
        let result = result.map_err(|(phase, err)| self.classify(phase, err, refused, &output));
        (result, output, peak, pooled)
    }

    /// A fresh store of `engine` under the pack's limits, with `time` left
    /// before its epoch deadline traps.
    fn store(
        &self,
        engine: &Engine,
        host: Arc<dyn HostView>,
        seed: CallSeed,
        time: Duration,
    ) -> Store<StoreState> {
        let mut store = Store::new(engine, StoreState::new(&self.limits, host, seed));
        store.limiter(|state| &mut state.limiter);
        let ticks = time.as_millis().div_ceil(EPOCH_TICK.as_millis()) as u64;
        store.set_epoch_deadline(ticks.max(1) + 1);
        store.epoch_deadline_trap();
        store
    }

    fn classify(
        &self,
        phase: Phase,
        err: wasmtime::Error,
        refused: bool,
        output: &CapturedOutput,
    ) -> CallError {
        tracing::debug!(pack = %text::escape_control(&self.info.name), ?phase, "pack call failed: {}", text::escape_control(&format!("{err:#}")));
        // The limiter's record comes first: a refused growth traps, and
        // whatever the pack did next is a consequence.
        if refused {
            return CallError::MemoryLimit {
                limit_bytes: self.limits.memory_bytes,
            };
        }
        let trap = err.downcast_ref::<Trap>().copied();
        match trap {
            Some(Trap::Interrupt) => {
                return CallError::Timeout {
                    limit: self.limits.call_timeout,
                };
            }
            Some(Trap::StackOverflow) => {
                let tail = output.stderr_tail();
                let said = match (tail.cause, tail.last) {
                    (Some(cause), Some(last)) => Some(format!("{cause} / ... / {last}")),
                    (cause, last) => cause.or(last),
                };
                return CallError::StackExhausted {
                    limit_bytes: self.limits.wasm_stack_bytes,
                    said,
                };
            }
            _ => {}
        }
        let max = self.limits.max_error_bytes;
        match (phase, trap) {
            (Phase::Bind, _) => return CallError::AbiMismatch(text::cap(&format!("{err:#}"), max)),
            (Phase::Instantiate, None) => {
                return CallError::Instantiate {
                    reason: text::cap(&err.root_cause().to_string(), max),
                    max_instances: self.limits.max_instances,
                    max_memories: self.limits.max_memories,
                    max_tables: self.limits.max_tables,
                };
            }
            _ => {}
        }
        // The wasm backtrace is for pack authors (debug log); users get the
        // trap (whose text already says "wasm trap") and what the pack said last.
        let reason = match trap {
            Some(trap) => trap.to_string(),
            None => text::cap(&err.root_cause().to_string(), max),
        };
        let tail = output.stderr_tail();
        CallError::Trap {
            reason,
            cause: tail.cause,
            said: tail.last,
        }
    }
}

/// Whether a pooled instantiation failed for want of pool space: any error
/// that is neither a trap (a start function's, the deadline's) nor a growth
/// the limiter refused. Those are final; anything else is retried on demand,
/// which reproduces the error if the pool was not the cause.
fn pool_could_not_serve(err: &wasmtime::Error, store: &Store<StoreState>) -> bool {
    err.downcast_ref::<Trap>().is_none() && store.data().limiter.refusal().is_none()
}

/// Where in a call an error arose.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Instantiating the component (start functions included).
    Instantiate,
    /// Looking up and type-checking the exports against the ABI.
    Bind,
    /// Running the exported functions.
    Run,
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
