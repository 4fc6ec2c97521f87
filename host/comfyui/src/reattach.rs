//! Post-processing of jobs adopted after a restart.
//!
//! A job's [`OutputProcessor`] lives in the process that submitted it (it holds the pack
//! and the resolved parameters the graph was built with). When that process stops before
//! the job's images are post-processed, the server that adopts the job from the job store
//! asks its [`ProcessorSource`] (set in [`BackendOptions`](crate::BackendOptions)) to make
//! the processor again from what the store kept: the job's origin (template, pack name and
//! sha256) and its concrete parameters.
//!
//! Lifecycle: asked once per adopted job, when its images are downloaded (not at adoption:
//! packs may still be loading then). A refusal fails the job with
//! [`FailureKind::Postprocess`](crate::snapshot::FailureKind) naming why; ComfyUI's
//! unprocessed images are never delivered in place of processed ones.
//!
//! Invariant: a source never rebuilds a processor from a pack other than the one that built
//! the job's graph (same name and sha256), so the delivered images match the provenance.

use std::sync::Arc;

use crate::postprocess::{OutputProcessor, PostprocessError};
use crate::snapshot::JobSnapshot;

/// Makes the processor of an adopted job again (see the module docs).
pub trait ProcessorSource: Send + Sync + 'static {
    /// The processor for `job` (a job whose snapshot says it post-processes), or why there
    /// is none here (the template or its pack is gone or changed, its parameters no longer
    /// check, …). Must not block: it runs on an async worker.
    fn processor_for(
        &self,
        job: &JobSnapshot,
    ) -> Result<Arc<dyn OutputProcessor>, PostprocessError>;
}

impl std::fmt::Debug for dyn ProcessorSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProcessorSource")
    }
}
