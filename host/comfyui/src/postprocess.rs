//! The post-processing stage of a job: the contract between the job pipeline and whatever
//! transforms output images (a 2.x pack's `postprocessor` export, wired by the host), its
//! settings, and the records it leaves in snapshots and provenance.
//!
//! Lifecycle: a [`JobRequest`](crate::snapshot::JobRequest) may carry an [`OutputProcessor`].
//! Once ComfyUI finished the job and its images are downloaded, each image is decoded to RGBA8
//! ([`codec`]), handed to the processor, the result validated, encoded to PNG and written in
//! place of ComfyUI's file ([`stage`]). The job stays `running` meanwhile, its snapshot's
//! `postprocessing` counting the images done; it completes after the last image, or fails with
//! [`FailureKind::Postprocess`](crate::snapshot::FailureKind) at the first image that cannot
//! be processed.
//!
//! Invariants:
//! - The pixel cap ([`PostprocessOptions::max_pixels`]) bounds both sides: an image above it
//!   is not decoded for the processor, and a result above it is refused.
//! - At most [`PostprocessOptions::concurrency`] images are being processed at once (across
//!   all jobs); decoding and encoding run on the blocking pool, never on an async worker.
//! - This module depends on nothing else of the crate (the snapshot types refer to it); its
//!   image types are the `rgba` crate's, the same the pack sandbox takes and returns.

pub mod codec;
pub mod stage;

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

/// Default [`PostprocessOptions::max_pixels`] (`COMFYUI_MCP_POSTPROCESS_MAX_PIXELS`): 4096².
pub const DEFAULT_MAX_PIXELS: u64 = 16_777_216;
/// Default [`PostprocessOptions::concurrency`] (`COMFYUI_MCP_POSTPROCESS_CONCURRENCY`).
pub const DEFAULT_CONCURRENCY: usize = 2;

/// The decoded image, a processor's steps and result: shared with the pack sandbox.
pub use rgba::{PostprocessStep, Postprocessed, RgbaImage};

/// Why a processor could not transform an image (its own refusal, a sandbox limit, …).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PostprocessError {
    /// What went wrong, for users; becomes part of the job's failure message.
    pub message: String,
}

impl PostprocessError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// Transforms the output images of one job. Called once per image, in order, never
/// concurrently for the same job. It must bound its own time (a pack call does: the pack's
/// call timeout and admission wait).
pub trait OutputProcessor: Send + Sync + 'static {
    /// Transforms one image.
    fn process(
        &self,
        image: RgbaImage,
    ) -> Pin<Box<dyn Future<Output = Result<Postprocessed, PostprocessError>> + Send>>;
}

impl std::fmt::Debug for dyn OutputProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OutputProcessor")
    }
}

/// Two requests are equal only if they share the very same processor.
impl PartialEq for dyn OutputProcessor {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::addr_eq(self, other)
    }
}

/// Settings of the stage (plain data; the host fills it from its configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostprocessOptions {
    /// Largest image, in pixels, decoded for a processor or accepted from one
    /// (`COMFYUI_MCP_POSTPROCESS_MAX_PIXELS`, default [`DEFAULT_MAX_PIXELS`]).
    pub max_pixels: u64,
    /// Images processed at once across all jobs, at least 1 (each holds up to
    /// `max_pixels * 4` bytes twice, plus its PNG). Default [`DEFAULT_CONCURRENCY`].
    pub concurrency: usize,
    /// Keep ComfyUI's original of each processed image beside it as `<name>.orig.png`
    /// (`COMFYUI_MCP_KEEP_RAW_OUTPUTS`, default false).
    pub keep_raw: bool,
}

impl Default for PostprocessOptions {
    fn default() -> Self {
        Self {
            max_pixels: DEFAULT_MAX_PIXELS,
            concurrency: DEFAULT_CONCURRENCY,
            keep_raw: false,
        }
    }
}

/// Where a job's post-processing stands, in its snapshot: present from submission for a job
/// that has a processor (so a job adopted after a restart is known to need one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostprocessProgress {
    /// Images finished.
    pub done: u32,
    /// Images to process (0 until the job's images are downloaded).
    pub total: u32,
}

/// What post-processing did to one delivered image (in `SavedImage.postprocess` and in
/// `provenance.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImagePostprocess {
    /// The steps the processor reported, in order.
    pub steps: Vec<PostprocessStep>,
    /// Milliseconds of this image's stage: decode, processor call, checks, encode and write
    /// (the wait for a free slot not included).
    pub ms: f64,
    /// Milliseconds of the processor call alone.
    pub processor_ms: f64,
    /// Size ComfyUI delivered, before processing.
    pub source_width: u32,
    /// Height ComfyUI delivered.
    pub source_height: u32,
    /// File name of ComfyUI's original kept beside it (`COMFYUI_MCP_KEEP_RAW_OUTPUTS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_filename: Option<String>,
}
