//! Inline thumbnails of finished images, made on a bounded pool of blocking threads.
//!
//! Invariants: an inline image is at most [`THUMBNAIL_MAX_SIDE`] pixels on its longest
//! side and at most [`INLINE_IMAGE_MAX_BYTES`] bytes (before base64); decoding, scaling
//! and encoding never run on an async worker, and at most the pool's size (default
//! [`DEFAULT_THUMBNAIL_WORKERS`], `COMFYUI_MCP_THUMBNAIL_WORKERS`) run at once across
//! every session: further requests wait for a permit instead of starting threads.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, GenericImageView, ImageFormat};

use crate::blocking::{BlockingError, BlockingPool};

/// Default number of thumbnails made at once: image work is CPU-bound, and two threads
/// keep the server responsive on small machines while a batch is thumbnailed.
pub const DEFAULT_THUMBNAIL_WORKERS: usize = 2;

/// Longest side, in pixels, of an inline thumbnail.
pub const THUMBNAIL_MAX_SIDE: u32 = 512;
/// Largest inline image, in bytes before base64 encoding.
pub const INLINE_IMAGE_MAX_BYTES: usize = 1_000_000;
/// Quality of the JPEG fallback for thumbnails whose PNG is too large.
const JPEG_QUALITY: u8 = 85;

/// Why no inline thumbnail could be made for an image.
#[derive(Debug, thiserror::Error)]
pub enum ThumbnailError {
    /// The file could not be read.
    #[error("could not read {}: {source}", path.display())]
    Read {
        /// The image file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a decodable PNG.
    #[error("{} is not a readable PNG: {reason}", path.display())]
    Decode {
        /// The image file.
        path: PathBuf,
        /// The decoder's message.
        reason: String,
    },
    /// Encoding the thumbnail failed.
    #[error("could not encode the thumbnail as {format}: {reason}")]
    Encode {
        /// PNG or JPEG.
        format: &'static str,
        /// The encoder's message.
        reason: String,
    },
    /// Even the JPEG thumbnail is larger than allowed inline.
    #[error(
        "the thumbnail is {bytes} bytes even as JPEG, above the {INLINE_IMAGE_MAX_BYTES}-byte inline limit; read the resource link for the full image"
    )]
    TooLarge {
        /// Size of the smallest encoding tried.
        bytes: usize,
    },
    /// The thumbnail thread panicked or was cancelled.
    #[error("the thumbnail task failed: {0}")]
    Task(String),
    /// The pool was shut down.
    #[error("the thumbnail pool is closed (the server is shutting down)")]
    PoolClosed,
}

/// An encoded inline thumbnail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thumbnail {
    /// Encoded image bytes.
    pub data: Vec<u8>,
    /// `image/png` or `image/jpeg`.
    pub mime_type: &'static str,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// The bounded blocking pool thumbnails are made on (shared by every session): a
/// [`BlockingPool`] whose errors read as thumbnail errors.
#[derive(Debug, Clone)]
pub struct ThumbnailPool {
    pool: BlockingPool,
}

impl ThumbnailPool {
    /// A pool running at most `size` (at least 1) thumbnail jobs at once.
    pub fn new(size: usize) -> Self {
        Self {
            pool: BlockingPool::new("thumbnail", size),
        }
    }

    /// How many jobs run at once at most.
    pub fn size(&self) -> usize {
        self.pool.threads()
    }

    /// Runs `work` on a blocking thread once a permit is free; the permit is held until
    /// the work is done (even when the caller stops waiting).
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ThumbnailError> {
        self.pool.run(work).await.map_err(|e| match e {
            BlockingError::Closed { .. } => ThumbnailError::PoolClosed,
            BlockingError::Aborted { detail, .. } => ThumbnailError::Task(detail),
        })
    }

    /// Reads the image at `path` and makes its thumbnail on the pool.
    pub async fn thumbnail_of_file(&self, path: PathBuf) -> Result<Thumbnail, ThumbnailError> {
        self.run(move || thumbnail_of_file(&path)).await?
    }
}

impl Default for ThumbnailPool {
    fn default() -> Self {
        Self::new(DEFAULT_THUMBNAIL_WORKERS)
    }
}

/// Makes an inline thumbnail of a PNG: longest side at most [`THUMBNAIL_MAX_SIDE`], PNG
/// when that fits in [`INLINE_IMAGE_MAX_BYTES`], JPEG otherwise. A PNG that is already
/// small enough on both counts is passed through unchanged.
pub fn thumbnail(png: &[u8], path: &Path) -> Result<Thumbnail, ThumbnailError> {
    let decoded = image::load_from_memory_with_format(png, ImageFormat::Png).map_err(|e| {
        ThumbnailError::Decode {
            path: path.to_owned(),
            reason: e.to_string(),
        }
    })?;
    let (width, height) = decoded.dimensions();
    let inline = |data: Vec<u8>, mime_type, (width, height)| Thumbnail {
        data,
        mime_type,
        width,
        height,
    };
    if width.max(height) <= THUMBNAIL_MAX_SIDE && png.len() <= INLINE_IMAGE_MAX_BYTES {
        return Ok(inline(png.to_vec(), "image/png", (width, height)));
    }
    let small = if width.max(height) > THUMBNAIL_MAX_SIDE {
        decoded.thumbnail(THUMBNAIL_MAX_SIDE, THUMBNAIL_MAX_SIDE)
    } else {
        decoded
    };
    let as_png = encode(&small, ImageFormat::Png)?;
    if as_png.len() <= INLINE_IMAGE_MAX_BYTES {
        return Ok(inline(as_png, "image/png", small.dimensions()));
    }
    let as_jpeg = encode_jpeg(&small)?;
    if as_jpeg.len() <= INLINE_IMAGE_MAX_BYTES {
        return Ok(inline(as_jpeg, "image/jpeg", small.dimensions()));
    }
    Err(ThumbnailError::TooLarge {
        bytes: as_jpeg.len(),
    })
}

fn encode(image: &DynamicImage, format: ImageFormat) -> Result<Vec<u8>, ThumbnailError> {
    let mut out = Cursor::new(Vec::new());
    image
        .write_to(&mut out, format)
        .map_err(|e| ThumbnailError::Encode {
            format: "PNG",
            reason: e.to_string(),
        })?;
    Ok(out.into_inner())
}

fn encode_jpeg(image: &DynamicImage) -> Result<Vec<u8>, ThumbnailError> {
    let rgb = image.to_rgb8();
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY)
        .encode_image(&rgb)
        .map_err(|e| ThumbnailError::Encode {
            format: "JPEG",
            reason: e.to_string(),
        })?;
    Ok(out)
}

/// Reads an image file and makes its thumbnail (blocking: call from a blocking thread).
pub fn thumbnail_of_file(path: &Path) -> Result<Thumbnail, ThumbnailError> {
    let bytes = std::fs::read(path).map_err(|source| ThumbnailError::Read {
        path: path.to_owned(),
        source,
    })?;
    thumbnail(&bytes, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Rgba};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn png(width: u32, height: u32, noisy: bool) -> Vec<u8> {
        let mut seed = 0x2545_f491_u32;
        let img = ImageBuffer::from_fn(width, height, |x, y| {
            if noisy {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let b = seed.to_le_bytes();
                Rgba([b[0], b[1], b[2], 255])
            } else {
                Rgba([(x % 256) as u8, (y % 256) as u8, 128, 255])
            }
        });
        let mut out = Cursor::new(Vec::new());
        DynamicImage::ImageRgba8(img)
            .write_to(&mut out, ImageFormat::Png)
            .unwrap();
        out.into_inner()
    }

    #[test]
    fn small_png_passes_through_unchanged() {
        let bytes = png(64, 48, false);
        let t = thumbnail(&bytes, Path::new("x.png")).unwrap();
        assert_eq!(t.data, bytes);
        assert_eq!((t.width, t.height, t.mime_type), (64, 48, "image/png"));
    }

    #[test]
    fn large_png_is_scaled_to_512_keeping_aspect() {
        let t = thumbnail(&png(1024, 768, false), Path::new("x.png")).unwrap();
        assert_eq!((t.width, t.height), (512, 384));
        let back = image::load_from_memory(&t.data).unwrap();
        assert_eq!(back.dimensions(), (512, 384));
        assert!(t.data.len() <= INLINE_IMAGE_MAX_BYTES);
    }

    #[test]
    fn noisy_png_over_the_limit_falls_back_to_jpeg() {
        let bytes = png(600, 600, true);
        let t = thumbnail(&bytes, Path::new("x.png")).unwrap();
        assert_eq!(t.mime_type, "image/jpeg");
        assert!(t.data.len() <= INLINE_IMAGE_MAX_BYTES);
        assert_eq!(t.width, 512);
    }

    #[test]
    fn garbage_is_a_decode_error() {
        let e = thumbnail(b"not a png", Path::new("bad.png")).unwrap_err();
        assert!(matches!(e, ThumbnailError::Decode { .. }), "{e}");
        assert!(e.to_string().contains("bad.png"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_pool_never_runs_more_than_its_size() {
        for size in [1, 3] {
            let pool = ThumbnailPool::new(size);
            let running = Arc::new(AtomicUsize::new(0));
            let peak = Arc::new(AtomicUsize::new(0));
            let calls: Vec<_> = (0..12)
                .map(|_| {
                    let pool = pool.clone();
                    let running = running.clone();
                    let peak = peak.clone();
                    tokio::spawn(async move {
                        pool.run(move || {
                            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                            peak.fetch_max(now, Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(5));
                            running.fetch_sub(1, Ordering::SeqCst);
                        })
                        .await
                    })
                })
                .collect();
            for call in calls {
                call.await.unwrap().unwrap();
            }
            assert!(peak.load(Ordering::SeqCst) <= size, "size {size}");
            assert!(peak.load(Ordering::SeqCst) >= 1);
        }
    }
}
