//! The pack ABI majors this host serves, side by side, and the dispatch
//! between them.
//!
//! One module per major version (`v1.rs`, `v2.rs`), each with the same
//! shape: its own `wasmtime::component::bindgen!` over `wit/vN`, the
//! version it was generated from, a `Pre` (export indices looked up once per
//! pack) and a `Bound` (the exports of one instance), conversions between
//! the generated types and the crate's plain types (`spec.rs`,
//! `postprocess.rs`), and thin host-import impls that delegate to the one
//! implementation in `sandbox.rs`; what is the same in every major is written
//! once, in `same_in_every_major!`, which each file expands. This module is the
//! dispatch enum and that macro:
//! adding 3.0 is copying `v2.rs` to `v3.rs`, pointing it at `wit/v3`, and
//! adding one arm per match here and one entry to [`Major::SUPPORTED`].
//!
//! Invariant: nothing generated leaks out of this module tree; the rest of
//! the crate sees [`PackPre`], [`Bound`], [`PackFailure`] and plain types.

/// The conversions and host imports that are the same in every ABI major (the types they
/// name are generated per major, so each version file expands this once, with its `wit`
/// types module and its generated `comfyui::workflow::host` in scope): pack identity, log
/// levels, build errors, and the host functions, which delegate to `sandbox.rs`.
macro_rules! same_in_every_major {
    () => {
        impl From<wit::PackInfo> for crate::spec::PackInfo {
            fn from(p: wit::PackInfo) -> Self {
                crate::spec::PackInfo {
                    name: p.name,
                    version: p.version,
                    description: p.description,
                }
            }
        }

        impl From<wit::BuildError> for super::PackFailure {
            fn from(e: wit::BuildError) -> Self {
                use super::PackFailure;
                match e {
                    wit::BuildError::UnknownTemplate(id) => PackFailure::UnknownTemplate(id),
                    wit::BuildError::InvalidParams(errors) => PackFailure::InvalidParams(
                        errors.into_iter().map(|e| (e.param, e.message)).collect(),
                    ),
                    wit::BuildError::Failed(message) => PackFailure::Failed(message),
                }
            }
        }

        impl From<comfyui::workflow::host::Level> for crate::sandbox::LogLevel {
            fn from(level: comfyui::workflow::host::Level) -> Self {
                use crate::sandbox::LogLevel;
                use comfyui::workflow::host::Level;
                match level {
                    Level::Trace => LogLevel::Trace,
                    Level::Debug => LogLevel::Debug,
                    Level::Info => LogLevel::Info,
                    Level::Warn => LogLevel::Warn,
                    Level::Error => LogLevel::Error,
                }
            }
        }

        impl wit::Host for crate::sandbox::StoreState {}

        impl comfyui::workflow::host::Host for crate::sandbox::StoreState {
            fn log(&mut self, level: comfyui::workflow::host::Level, message: String) {
                self.push_log(level.into(), &message);
            }
            fn models(&mut self, folder: String) -> Vec<String> {
                self.host_models(&folder)
            }
            fn has_node(&mut self, class_type: String) -> bool {
                self.host_has_node(&class_type)
            }
        }
    };
}

mod v1;
mod v2;

use wasmtime::Store;
use wasmtime::component::{Instance, InstancePre, Linker};

use crate::params::ResolvedParams;
use crate::postprocess::{Postprocessed, RgbaImage};
use crate::sandbox::StoreState;
use crate::spec::{PackInfo, TemplateInfo};

/// A major version of `comfyui:workflow` this host serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Major {
    /// `comfyui:workflow@1.x` (`wit/v1`).
    V1,
    /// `comfyui:workflow@2.x` (`wit/v2`).
    V2,
}

impl Major {
    /// Every major served, oldest first.
    pub(crate) const SUPPORTED: [Major; 2] = [Major::V1, Major::V2];

    /// The major `version` (semver text) belongs to, if it is served.
    pub(crate) fn of(version: &str) -> Option<Major> {
        let major = crate::abi::major(version);
        Self::SUPPORTED
            .into_iter()
            .find(|m| crate::abi::major(m.version()) == major)
    }

    /// The WIT package version its bindings were generated from.
    pub(crate) fn version(self) -> &'static str {
        match self {
            Major::V1 => v1::VERSION,
            Major::V2 => v2::VERSION,
        }
    }

    /// `1.x`, `2.x`: how messages name it.
    pub(crate) fn label(self) -> String {
        format!("{}.x", crate::abi::major(self.version()))
    }

    /// Every served major, as messages name them: `1.x, 2.x`.
    pub(crate) fn supported_labels() -> String {
        Self::SUPPORTED
            .iter()
            .map(|m| m.label())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Adds the host imports of every served major to `linker` (WASI is added by the caller).
pub(crate) fn add_to_linker(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    v1::add_to_linker(linker)?;
    v2::add_to_linker(linker)
}

/// A pre-instantiated pack of some major, with its exports looked up.
pub(crate) enum PackPre {
    /// A 1.x pack.
    V1(v1::Pre),
    /// A 2.x pack.
    V2(v2::Pre),
}

impl PackPre {
    /// Looks up the exports of `major` in `instance_pre` (the postprocessor
    /// too when `postprocessor`); fails when they are missing.
    pub(crate) fn new(
        major: Major,
        instance_pre: InstancePre<StoreState>,
        postprocessor: bool,
    ) -> wasmtime::Result<Self> {
        Ok(match major {
            Major::V1 => PackPre::V1(v1::Pre::new(instance_pre)?),
            Major::V2 => PackPre::V2(v2::Pre::new(instance_pre, postprocessor)?),
        })
    }

    /// The major this pack was built against.
    pub(crate) fn major(&self) -> Major {
        match self {
            PackPre::V1(_) => Major::V1,
            PackPre::V2(_) => Major::V2,
        }
    }

    /// Whether the pack exports a postprocessor.
    pub(crate) fn has_postprocessor(&self) -> bool {
        match self {
            PackPre::V1(_) => false,
            PackPre::V2(pre) => pre.has_postprocessor(),
        }
    }

    /// The pre-instantiated component.
    pub(crate) fn instance_pre(&self) -> &InstancePre<StoreState> {
        match self {
            PackPre::V1(pre) => pre.instance_pre(),
            PackPre::V2(pre) => pre.instance_pre(),
        }
    }

    /// The typed exports of `instance` (type-checked against the ABI here).
    pub(crate) fn bind(
        &self,
        store: &mut Store<StoreState>,
        instance: &Instance,
    ) -> wasmtime::Result<Bound> {
        Ok(match self {
            PackPre::V1(pre) => Bound::V1(pre.bind(store, instance)?),
            PackPre::V2(pre) => Bound::V2(pre.bind(store, instance)?),
        })
    }
}

/// The exports of one instance of a pack.
pub(crate) enum Bound {
    /// A 1.x pack's.
    V1(v1::Bound),
    /// A 2.x pack's.
    V2(v2::Bound),
}

impl Bound {
    /// `templates.info`.
    pub(crate) fn info(&self, store: &mut Store<StoreState>) -> wasmtime::Result<PackInfo> {
        match self {
            Bound::V1(b) => b.info(store),
            Bound::V2(b) => b.info(store),
        }
    }

    /// `templates.list`.
    pub(crate) fn list(
        &self,
        store: &mut Store<StoreState>,
    ) -> wasmtime::Result<Vec<TemplateInfo>> {
        match self {
            Bound::V1(b) => b.list(store),
            Bound::V2(b) => b.list(store),
        }
    }

    /// `templates.build` with every resolved parameter.
    pub(crate) fn build(
        &self,
        store: &mut Store<StoreState>,
        id: &str,
        params: &ResolvedParams,
    ) -> wasmtime::Result<Result<String, PackFailure>> {
        match self {
            Bound::V1(b) => b.build(store, id, params),
            Bound::V2(b) => b.build(store, id, params),
        }
    }

    /// `postprocessor.postprocess`; `None` when the pack exports none (the
    /// caller checks that first).
    pub(crate) fn postprocess(
        &self,
        store: &mut Store<StoreState>,
        id: &str,
        params: &ResolvedParams,
        image: RgbaImage,
    ) -> Option<wasmtime::Result<Result<Postprocessed, PackFailure>>> {
        match self {
            Bound::V1(_) => None,
            Bound::V2(b) => b.postprocess(store, id, params, image),
        }
    }
}

/// A pack's own `build-error`, as it said it: texts not yet escaped or capped
/// (`pack.rs` does that).
#[derive(Debug)]
pub(crate) enum PackFailure {
    /// No template with this id.
    UnknownTemplate(String),
    /// `(param, message)` per rejected parameter.
    InvalidParams(Vec<(String, String)>),
    /// Anything else.
    Failed(String),
}
