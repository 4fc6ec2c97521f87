//! Errors at the runtime's edge: loading a pack, and calling into one.
//!
//! Every pack-provided text inside these errors (a `failed` message, field
//! errors, an unknown id, what the pack wrote on stderr) has been escaped
//! and capped by `text.rs` before it gets here; each variant is chosen from
//! typed facts (the trap code, the limiter's record, the phase of the call),
//! never from the text of a wasmtime message.

use std::path::PathBuf;
use std::time::Duration;

pub use crate::imports::ImportFix;
use crate::metadata::{MetadataError, setting_hint};
use crate::params::FieldError;
use crate::postprocess::ImageFault;

/// Why a pack could not be loaded. Always names the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("{path}: cannot read pack: {source}")]
    Io {
        /// The pack file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The bytes are not a valid WebAssembly component.
    #[error("{path}: not a valid WebAssembly component: {reason}")]
    Invalid {
        /// The pack file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// A component, but it does not export the workflow-pack interface.
    #[error("{path}: not a workflow pack: it does not export `{expected}` (exports: {found})")]
    NotAPack {
        /// The pack file.
        path: PathBuf,
        /// The interface we look for.
        expected: String,
        /// What it does export.
        found: String,
    },
    /// Built against a major version of the WIT package this host does not serve.
    #[error(
        "{path}: incompatible pack ABI: built against comfyui:workflow@{found}; this host serves comfyui:workflow {supported} side by side (supported: {supported}); rebuild the pack against wit/v<major>/workflow.wit of a supported major"
    )]
    Incompatible {
        /// The pack file.
        path: PathBuf,
        /// The version the pack was built against (escaped, capped).
        found: String,
        /// Every major this host serves, e.g. `1.x, 2.x`.
        supported: String,
    },
    /// A 2.x pack has templates that ask for post-processing but does not
    /// export the `postprocessor` interface.
    #[error(
        "{path}: template(s) {templates} set `postprocess`, but the pack does not export `comfyui:workflow/postprocessor@{major}` (build it for the world `postprocessing-pack`, or clear the flag)"
    )]
    MissingPostprocessor {
        /// The pack file.
        path: PathBuf,
        /// The flagged template ids, backquoted and comma-separated.
        templates: String,
        /// The pack's ABI major, e.g. `2.x`.
        major: String,
    },
    /// The component imports interfaces the host does not link; found by
    /// parsing, before compiling (`imports.rs`).
    #[error("{path}: {}", UnlinkedImport::summary(.imports, .total))]
    UnlinkedImports {
        /// The pack file.
        path: PathBuf,
        /// The first unsatisfied imports (at most `imports::MAX_REPORTED_IMPORTS`).
        imports: Vec<UnlinkedImport>,
        /// How many imports are unsatisfied in all.
        total: usize,
    },
    /// The component uses component-model async built-ins, which this host's
    /// engine does not enable; found by parsing, before compiling.
    #[error(
        "{path}: uses component-model async ({builtin}), which comfyui-mcp does not enable; \
         componentize-qjs (jco componentize --backend quickjs): rebuild with `--backend-qjs-disable-async`; \
         other toolchains: build with synchronous exports and imports"
    )]
    AsyncBuiltins {
        /// The pack file.
        path: PathBuf,
        /// The first async built-in or option found.
        builtin: &'static str,
    },
    /// Compilation or linking failed (e.g. it imports something the host does not offer).
    #[error("{path}: cannot compile or link pack: {reason}")]
    Compile {
        /// The pack file.
        path: PathBuf,
        /// What wasmtime said.
        reason: String,
    },
    /// The pack exports the `templates` interface, but its functions do not
    /// have the ABI's types (e.g. a wrong signature, or built against
    /// edited WIT).
    #[error(
        "{path}: the pack's exports do not match the comfyui:workflow@{supported} ABI: {reason} (rebuild the pack against the published wit/v<major>/workflow.wit)"
    )]
    ExportMismatch {
        /// The pack file.
        path: PathBuf,
        /// The ABI version the pack claims (its `templates` export), which
        /// the host implements at that major.
        supported: String,
        /// What did not match.
        reason: String,
    },
    /// A metadata call (`info` or `list`) failed.
    #[error("{path}: pack failed while describing itself: {source}")]
    Describe {
        /// The pack file.
        path: PathBuf,
        /// The failed call.
        source: CallError,
    },
    /// The pack's metadata is inconsistent or over its caps (duplicate ids, bad specs, ...).
    #[error("{path}: invalid pack metadata: {reason}")]
    Metadata {
        /// The pack file.
        path: PathBuf,
        /// Everything that is wrong.
        reason: MetadataError,
    },
    /// The file is larger than the pack file cap (checked before reading it).
    #[error(
        "{path}: pack file is {size} bytes, over the limit of {limit} bytes; raise it with {}",
        setting_hint("max_pack_file_bytes")
    )]
    TooLarge {
        /// The pack file.
        path: PathBuf,
        /// Its size (at least this; a file growing while read is cut at limit + 1).
        size: u64,
        /// The limit in force.
        limit: u64,
    },
}

/// One import the host does not link, with the way to get rid of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnlinkedImport {
    /// The import's name as the component spells it (escaped, capped).
    pub name: String,
    /// What to change in the build.
    pub fix: ImportFix,
}

impl UnlinkedImport {
    /// "imports an interface ... : `name` (fix: ...); ... (and N more)".
    fn summary(imports: &[UnlinkedImport], total: &usize) -> String {
        let listed = imports
            .iter()
            .map(|i| format!("`{}` (fix: {})", i.name, i.fix))
            .collect::<Vec<_>>()
            .join("; ");
        let more = total.saturating_sub(imports.len());
        format!(
            "imports {} the host does not provide, refused before compiling: {listed}{}",
            if *total == 1 {
                "an interface"
            } else {
                "interfaces"
            },
            if more > 0 {
                format!(" (and {more} more)")
            } else {
                String::new()
            }
        )
    }
}

/// `CallError::Trap`'s text: the cause first when there is one, the trap and
/// the pack's last lines after it.
fn trap_text(reason: &str, cause: &Option<String>, said: &Option<String>) -> String {
    let said = said
        .as_deref()
        .map(|s| format!("; the pack wrote: {s}"))
        .unwrap_or_default();
    match cause {
        Some(cause) => format!("{cause} ({reason}{said})"),
        None => format!("{reason}{said}"),
    }
}

/// Why one call into a pack failed. The pack and the runtime stay usable.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The template id is not offered by this pack.
    #[error("unknown template `{id}`; available: {available}")]
    UnknownTemplate {
        /// The requested id.
        id: String,
        /// Comma-separated ids the pack offers.
        available: String,
    },
    /// Parameters were rejected, by the host checks or by the pack.
    #[error("invalid parameters: {}", FieldError::join(.0))]
    InvalidParams(Vec<FieldError>),
    /// The pack reported a failure of its own.
    #[error("template failed: {0}")]
    Failed(String),
    /// The call ran past its time limit and was stopped.
    #[error("pack exceeded its time limit of {}ms and was stopped", .limit.as_millis())]
    Timeout {
        /// The limit in force.
        limit: Duration,
    },
    /// The call tried to grow memory past its cap.
    #[error("pack exceeded its memory limit of {} MiB", .limit_bytes >> 20)]
    MemoryLimit {
        /// The limit in force.
        limit_bytes: usize,
    },
    /// The call ran out of WebAssembly stack (runaway or too deep recursion).
    #[error(
        "pack exhausted its call stack of {} KiB (runaway or too deep recursion){}",
        .limit_bytes >> 10,
        .said.as_deref().map(|s| format!("; the pack wrote: {s}")).unwrap_or_default()
    )]
    StackExhausted {
        /// The stack limit in force (`Limits::wasm_stack_bytes`).
        limit_bytes: usize,
        /// The pack's last stderr lines, escaped and capped.
        said: Option<String>,
    },
    /// The pack's component could not be instantiated in the sandbox, e.g. it
    /// creates more core instances, memories or tables than allowed.
    #[error(
        "pack could not be instantiated: {reason} (the sandbox allows {max_instances} core instances, {max_memories} memories and {max_tables} tables per call; raise Limits::max_instances / max_memories / max_tables)"
    )]
    Instantiate {
        /// What wasmtime said.
        reason: String,
        /// `Limits::max_instances` in force.
        max_instances: usize,
        /// `Limits::max_memories` in force.
        max_memories: usize,
        /// `Limits::max_tables` in force.
        max_tables: usize,
    },
    /// The pack's exports do not have the ABI's types.
    #[error("the pack's exports do not match the ABI: {0}")]
    AbiMismatch(String),
    /// The pack trapped (a panic, an `unreachable`, an out-of-bounds access, ...).
    /// The text is the exception the pack named on stderr (when it did),
    /// the trap, then what the pack last wrote on stderr.
    #[error("pack crashed: {}", trap_text(.reason, .cause, .said))]
    Trap {
        /// The trap, or wasmtime's error when there is no trap code.
        reason: String,
        /// The last stderr line naming an exception (`ValueError: ...`) when
        /// it is not among `said`: an interpreter's real cause, printed before
        /// its runtime trapped.
        cause: Option<String>,
        /// The pack's last meaningful stderr lines, escaped and capped.
        said: Option<String>,
    },
    /// No thread could be started to run the call.
    #[error("cannot start a thread for the pack call: {0}")]
    Thread(String),
    /// The graph exceeded the output cap.
    #[error("pack returned a graph of {size} bytes, over the limit of {limit} bytes")]
    OutputTooLarge {
        /// Size returned.
        size: usize,
        /// The limit in force.
        limit: usize,
    },
    /// The returned text is not a JSON object.
    #[error("pack returned a graph that is not a JSON object: {0}")]
    MalformedGraph(String),
    /// A post-processing call for a template that has none.
    #[error("template `{template}` is not post-processed: {cause}")]
    NoPostprocess {
        /// The template id.
        template: String,
        /// Why not.
        cause: NoPostprocess,
    },
    /// The image offered to a post-processor was refused before the pack ran.
    #[error("cannot post-process this image: {0}")]
    InputImage(ImageFault),
    /// The image a post-processor returned is unusable.
    #[error("pack returned an unusable post-processed image: {0}")]
    OutputImage(ImageFault),
    /// An image argument with no uploaded image behind it: a host defect
    /// (see [`crate::ResolveError::MissingInput`]).
    #[error(
        "internal error: image parameter `{param}` was given but no uploaded image was provided for it"
    )]
    MissingImageInput {
        /// The parameter.
        param: String,
    },
}

impl From<crate::params::ResolveError> for CallError {
    fn from(e: crate::params::ResolveError) -> Self {
        match e {
            crate::params::ResolveError::Invalid(errors) => CallError::InvalidParams(errors),
            crate::params::ResolveError::MissingInput { param } => {
                CallError::MissingImageInput { param }
            }
        }
    }
}

/// Why a template has no post-processing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoPostprocess {
    /// Its pack is built against an ABI without post-processing.
    #[error(
        "its pack is built against comfyui:workflow@{found}, which has no postprocessor (2.x has)"
    )]
    OldAbi {
        /// The pack's ABI version.
        found: String,
    },
    /// Its pack does not set `postprocess` on it.
    #[error("its pack does not set `postprocess` on it")]
    NotFlagged,
}
