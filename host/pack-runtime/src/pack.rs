//! A loaded pack and the one way to call into it: a fresh, limited `Store`
//! per call, dropped afterwards whatever happened.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};
use wasmtime::{Engine, Store, Trap};

use crate::bindings::{WorkflowPack, WorkflowPackPre, wit};
use crate::error::{CallError, LoadError};
use crate::limits::Limits;
use crate::metadata::validate_metadata;
use crate::params::{self, FieldError, ResolvedParams};
use crate::runtime::{EPOCH_TICK, EpochTicker};
use crate::sandbox::{HostView, StoreState};
use crate::spec::{PackInfo, TemplateInfo};

/// A pack that loaded, described itself, and passed metadata validation.
pub struct Pack {
    path: PathBuf,
    sha256: String,
    info: PackInfo,
    templates: Vec<TemplateInfo>,
    /// Template id -> index in `templates`.
    index: HashMap<String, usize>,
    pre: WorkflowPackPre<StoreState>,
    engine: Engine,
    limits: Limits,
    _ticker: Arc<EpochTicker>,
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
        pre: WorkflowPackPre<StoreState>,
        engine: Engine,
        limits: Limits,
        ticker: Arc<EpochTicker>,
    ) -> Result<Self, LoadError> {
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
            engine,
            limits,
            _ticker: ticker,
        };
        let offline: Arc<dyn HostView> = Arc::new(crate::sandbox::StaticHost::default());
        let describe_err = |source| LoadError::Describe {
            path: pack.path.clone(),
            source,
        };
        let (info, templates) = pack
            .call(offline, |store, bindings| {
                let api = bindings.comfyui_workflow_templates();
                let info = api.call_info(&mut *store)?;
                let templates = api.call_list(&mut *store)?;
                Ok((info, templates))
            })
            .map_err(describe_err)?;
        pack.info = info.into();
        pack.templates = templates.into_iter().map(Into::into).collect();
        validate_metadata(&pack.info, &pack.templates, &pack.limits.metadata).map_err(
            |reason| LoadError::Metadata {
                path: pack.path.clone(),
                reason,
            },
        )?;
        // Ids are unique once validated.
        pack.index = pack
            .templates
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.clone(), i))
            .collect();
        Ok(pack)
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
        let template = self.template_or_err(template_id)?;
        let resolved = params::resolve(template, args, &self.limits.metadata)
            .map_err(CallError::InvalidParams)?;
        self.build_resolved(template_id, resolved, host)
    }

    /// Builds a graph from parameters that already passed [`params::resolve`].
    pub fn build_resolved(
        &self,
        template_id: &str,
        params: ResolvedParams,
        host: Arc<dyn HostView>,
    ) -> Result<BuiltGraph, CallError> {
        self.template_or_err(template_id)?;
        let wit_params: Vec<wit::Param> = params
            .iter()
            .map(|(name, value)| wit::Param {
                name: name.to_owned(),
                value: value.into(),
            })
            .collect();
        let outcome = self.call(host, |store, bindings| {
            bindings
                .comfyui_workflow_templates()
                .call_build(&mut *store, template_id, &wit_params)
        })?;
        let text = match outcome {
            Ok(text) => text,
            Err(wit::BuildError::UnknownTemplate(id)) => {
                return Err(self.unknown_template(&id));
            }
            Err(wit::BuildError::InvalidParams(errors)) => {
                return Err(CallError::InvalidParams(
                    errors
                        .into_iter()
                        .map(|e| FieldError::new(e.param, e.message))
                        .collect(),
                ));
            }
            Err(wit::BuildError::Failed(message)) => return Err(CallError::Failed(message)),
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

    /// Runs `f` in a fresh store under the pack's limits. The store (and with
    /// it any trapped or interrupted instance) is dropped before returning.
    fn call<R>(
        &self,
        host: Arc<dyn HostView>,
        f: impl FnOnce(&mut Store<StoreState>, &WorkflowPack) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let mut store = Store::new(&self.engine, StoreState::new(&self.limits, host));
        store.limiter(|state| &mut state.limits);
        let ticks = self
            .limits
            .call_timeout
            .as_millis()
            .div_ceil(EPOCH_TICK.as_millis()) as u64;
        store.set_epoch_deadline(ticks.max(1) + 1);
        store.epoch_deadline_trap();
        let result = self
            .pre
            .instantiate(&mut store)
            .and_then(|bindings| f(&mut store, &bindings));
        let output = store.data().output.clone();
        let result = result.map_err(|err| self.classify(err, &output));
        output.flush_to_log(&self.info.name);
        result
    }

    fn classify(&self, err: wasmtime::Error, output: &crate::sandbox::CapturedOutput) -> CallError {
        let trap = err.downcast_ref::<Trap>().copied();
        if trap == Some(Trap::Interrupt) {
            return CallError::Timeout {
                limit: self.limits.call_timeout,
            };
        }
        let full = format!("{err:#}");
        if full.contains("forcing trap when growing memory") {
            return CallError::MemoryLimit {
                limit_bytes: self.limits.memory_bytes,
            };
        }
        tracing::debug!(pack = %self.info.name, "pack trapped: {full}");
        // The wasm backtrace is for pack authors (debug log); users get the
        // trap and what the pack said last.
        let reason = match trap {
            Some(trap) => format!("wasm trap: {trap}"),
            None => err.root_cause().to_string(),
        };
        match output.stderr_tail() {
            Some(said) => CallError::Trap(format!("{reason}; the pack wrote: {said}")),
            None => CallError::Trap(reason),
        }
    }
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
