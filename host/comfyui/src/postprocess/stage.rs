//! Runs a job's post-processing over its downloaded images, one image after the other: read
//! the file, decode it to RGBA8 (blocking pool), call the processor, check its result, encode
//! the result (blocking pool) and write it atomically over the delivered file.
//!
//! Invariants:
//! - Each image holds one slot of the shared semaphore from its read to its write, so at most
//!   `PostprocessOptions::concurrency` decoded images exist at once, whatever the number of
//!   jobs; a slow processor only delays other jobs' post-processing, never the runtime.
//! - On success every delivered file is the processed image and its [`SavedImage`] says so
//!   (size, bytes, steps, times).
//! - On failure or cancellation no delivered file is left in the job directory (processed or
//!   not), so nothing unprocessed is ever served as the job's result; with `keep_raw`,
//!   ComfyUI's original of every image stays as `<name>.orig.png`.
//! - The checks on a processor's result are [`rgba::check_image`]'s, in one place (the same
//!   the sandbox applies).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;

use super::codec::{self, DecodeError, EncodeError};
use super::{ImagePostprocess, OutputProcessor, PostprocessError, PostprocessOptions};
use crate::outputs::{self, OutputError};
use crate::snapshot::{FailureKind, JobFailure, SavedImage};

/// The start of the message of a job that needed post-processing but was adopted from the
/// job store after its server stopped, and whose processor could not be made again here
/// (see [`crate::reattach`]); the reason follows.
pub const ADOPTED_MESSAGE: &str = "post-processing could not run for this job adopted after a restart (ComfyUI's unprocessed images are not delivered in place of processed ones)";

/// Why one image could not be post-processed.
#[derive(Debug, thiserror::Error)]
pub enum Cause {
    /// The downloaded file could not be read.
    #[error("its downloaded file could not be read: {0}")]
    Read(#[source] std::io::Error),
    /// ComfyUI's PNG is unreadable or above the pixel cap.
    #[error("{0}")]
    Decode(#[from] DecodeError),
    /// The processor refused or failed (its message).
    #[error("the post-processor failed: {0}")]
    Processor(#[from] PostprocessError),
    /// The processor's result breaks [`rgba::check_image`].
    #[error("the post-processor returned an invalid image: {0}")]
    InvalidResult(#[from] rgba::ImageFault),
    /// The result could not be encoded.
    #[error("{0}")]
    Encode(#[from] EncodeError),
    /// The result could not be written.
    #[error("the result could not be stored: {0}")]
    Store(#[from] OutputError),
    /// A blocking task panicked or was cancelled.
    #[error("the {0} task did not finish")]
    Task(&'static str),
}

impl Cause {
    /// The short kind reported as the failure's `exception_type`.
    pub fn exception_type(&self) -> &'static str {
        match self {
            Cause::Read(_) | Cause::Store(_) => "PostprocessStorage",
            Cause::Decode(DecodeError::TooManyPixels { .. }) => "PostprocessInputTooLarge",
            Cause::Decode(_) => "PostprocessDecode",
            Cause::Processor(_) => "PostprocessorError",
            Cause::InvalidResult(_) => "PostprocessInvalidResult",
            Cause::Encode(_) => "PostprocessEncode",
            Cause::Task(_) => "PostprocessTask",
        }
    }
}

/// One image that could not be post-processed, and why.
#[derive(Debug, thiserror::Error)]
#[error("post-processing image `{filename}` ({} of {total}) failed: {cause}", .index + 1)]
pub struct ImageFailure {
    /// The delivered file name.
    pub filename: String,
    /// Its position in the job's images (0-based).
    pub index: usize,
    /// Number of images of the job.
    pub total: usize,
    /// What went wrong.
    #[source]
    pub cause: Cause,
    /// Whether ComfyUI's originals were kept (`keep_raw`).
    pub raw_kept: bool,
}

impl ImageFailure {
    /// The job's failure: kind [`FailureKind::Postprocess`], the message naming the image and
    /// the cause.
    pub fn job_failure(&self) -> JobFailure {
        let mut message = self.to_string();
        if self.raw_kept {
            message.push_str("; ComfyUI's originals are kept as *.orig.png in the job folder");
        }
        JobFailure {
            kind: FailureKind::Postprocess,
            node_id: None,
            node_type: None,
            exception_type: Some(self.cause.exception_type().to_owned()),
            message,
        }
    }
}

/// The failure of a job adopted after a restart that needed post-processing and whose
/// processor could not be made again: [`ADOPTED_MESSAGE`], then `reason`.
pub fn adopted_failure(reason: &str) -> JobFailure {
    JobFailure {
        kind: FailureKind::Postprocess,
        node_id: None,
        node_type: None,
        exception_type: Some("PostprocessUnavailable".to_owned()),
        message: format!("{ADOPTED_MESSAGE}: {reason}"),
    }
}

/// How the stage ended without delivering.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// An image could not be processed.
    #[error(transparent)]
    Failed(#[from] ImageFailure),
    /// A cancel was asked for between two images.
    #[error("cancelled during post-processing")]
    Cancelled,
}

/// What the driver lets the stage see of its job.
pub trait StageObserver: Send + Sync {
    /// `done` of `total` images are finished.
    fn progress(&self, done: u32, total: u32);
    /// Whether a cancel was asked for (checked before each image).
    fn cancelled(&self) -> bool;
}

/// The processed files and the stage's wall time in milliseconds (slot waits included).
#[derive(Debug, Clone, PartialEq)]
pub struct StageDone {
    /// `files` as given, each now describing the processed image.
    pub files: Vec<SavedImage>,
    /// Milliseconds from the stage's start to its last write.
    pub ms: f64,
}

/// Post-processes `files` (a job's downloaded images, all in `dir`) in order.
pub async fn run(
    processor: Arc<dyn OutputProcessor>,
    options: PostprocessOptions,
    slots: &Semaphore,
    dir: &Path,
    files: Vec<SavedImage>,
    observer: &dyn StageObserver,
) -> Result<StageDone, StageError> {
    let start = Instant::now();
    let total = files.len();
    let mut taken = outputs::taken_names(files.iter().map(|f| f.filename.as_str()));
    let mut raws: Vec<Option<PathBuf>> = vec![None; total];
    let mut done = Vec::with_capacity(total);
    observer.progress(0, total as u32);
    for (index, file) in files.iter().enumerate() {
        if observer.cancelled() {
            discard(&files, &mut raws, &mut taken, options.keep_raw, dir).await;
            return Err(StageError::Cancelled);
        }
        let image = ImageRun {
            processor: processor.as_ref(),
            options,
            dir,
        };
        match image
            .process(file, slots, &mut raws[index], &mut taken)
            .await
        {
            Ok(saved) => done.push(saved),
            Err(cause) => {
                tracing::warn!(file = %file.filename, error = %cause, "post-processing failed");
                discard(&files, &mut raws, &mut taken, options.keep_raw, dir).await;
                return Err(StageError::Failed(ImageFailure {
                    filename: file.filename.clone(),
                    index,
                    total,
                    cause,
                    raw_kept: options.keep_raw,
                }));
            }
        }
        observer.progress(index as u32 + 1, total as u32);
    }
    Ok(StageDone {
        files: done,
        ms: start.elapsed().as_secs_f64() * 1000.0,
    })
}

/// Withholds a job's downloaded images that cannot be post-processed: they are removed from
/// the job directory (with `keep_raw` kept as `<name>.orig.png` instead).
pub async fn withhold(files: &[SavedImage], keep_raw: bool, dir: &Path) {
    let mut taken = outputs::taken_names(files.iter().map(|f| f.filename.as_str()));
    let mut raws = vec![None; files.len()];
    discard(files, &mut raws, &mut taken, keep_raw, dir).await;
}

/// Removes every delivered file of a job whose stage did not complete; with `keep_raw`,
/// ComfyUI's original of each image not yet set aside is kept as its raw name first.
async fn discard(
    files: &[SavedImage],
    raws: &mut [Option<PathBuf>],
    taken: &mut std::collections::HashSet<String>,
    keep_raw: bool,
    dir: &Path,
) {
    for (file, raw) in files.iter().zip(raws.iter_mut()) {
        if keep_raw && raw.is_none() {
            let name = outputs::raw_name(&file.filename, taken);
            match outputs::move_within(dir, &file.path, &name).await {
                Ok(path) => *raw = Some(path),
                Err(e) => {
                    tracing::warn!(file = %file.filename, error = %e, "could not keep ComfyUI's original")
                }
            }
        }
        if let Err(e) = tokio::fs::remove_file(&file.path).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %file.path.display(), error = %e, "could not remove an undelivered image");
        }
    }
}

/// One image's pass through the stage.
struct ImageRun<'a> {
    processor: &'a dyn OutputProcessor,
    options: PostprocessOptions,
    dir: &'a Path,
}

impl ImageRun<'_> {
    async fn process(
        &self,
        file: &SavedImage,
        slots: &Semaphore,
        raw: &mut Option<PathBuf>,
        taken: &mut std::collections::HashSet<String>,
    ) -> Result<SavedImage, Cause> {
        let _slot = slots.acquire().await.map_err(|_| Cause::Task("slot"))?;
        let start = Instant::now();
        let bytes = tokio::fs::read(&file.path).await.map_err(Cause::Read)?;
        let max = self.options.max_pixels;
        let source = tokio::task::spawn_blocking(move || codec::decode_rgba(&bytes, max))
            .await
            .map_err(|_| Cause::Task("decode"))??;
        let (source_width, source_height) = (source.width, source.height);
        let called = Instant::now();
        let result = self.processor.process(source).await?;
        let processor_ms = called.elapsed().as_secs_f64() * 1000.0;
        rgba::check_image(&result.image, max)?;
        let (width, height) = (result.image.width, result.image.height);
        let image = result.image;
        let png = tokio::task::spawn_blocking(move || codec::encode_png(&image))
            .await
            .map_err(|_| Cause::Task("encode"))??;
        if self.options.keep_raw {
            let name = outputs::raw_name(&file.filename, taken);
            *raw = Some(outputs::move_within(self.dir, &file.path, &name).await?);
        }
        let bytes = png.len() as u64;
        outputs::write_atomically(self.dir, &file.path, png).await?;
        Ok(SavedImage {
            width,
            height,
            bytes,
            postprocess: Some(ImagePostprocess {
                steps: result.steps,
                ms: start.elapsed().as_secs_f64() * 1000.0,
                processor_ms,
                source_width,
                source_height,
                raw_filename: raw
                    .as_ref()
                    .and_then(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned()),
            }),
            ..file.clone()
        })
    }
}
