//! What tool results and resources look like: the status JSON of a job, the tool result
//! envelopes (structured content plus the same JSON as text, or an error), and the inline
//! thumbnails and resource links of finished images.
//!
//! Invariants: every successful tool result carries `structuredContent` and, as its first
//! content block, a text block holding exactly the same JSON; an inline image is at most
//! [`THUMBNAIL_MAX_SIDE`] pixels on its longest side and at most [`INLINE_IMAGE_MAX_BYTES`]
//! bytes (before base64), otherwise it is left out and the image's entry says why.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use comfyui::{JobSnapshot, JobState};
use image::{DynamicImage, GenericImageView, ImageFormat};
use rmcp::model::{CallToolResult, ContentBlock, Resource};
use serde_json::{Map, Value, json};

use super::resources;

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

/// The status JSON of a job, as `get_workflow_status` and the `comfyui://jobs/…` resource
/// report it: `prompt_id`, `state`, `progress` (0..1), `queue_position`, `execution_time`
/// (seconds, `null` until known), `images` (see [`image_entries`]), `metadata`,
/// `parameters`, timestamps, and `error` (`{node_id, node_type, exception_type, message}`)
/// when it failed.
pub fn job_json(job: &JobSnapshot) -> Value {
    let mut out = Map::new();
    out.insert("prompt_id".into(), json!(job.prompt_id));
    out.insert("state".into(), json!(job.state.as_str()));
    out.insert("progress".into(), json!(job.progress.clamp(0.0, 1.0)));
    out.insert("queue_position".into(), json!(job.queue_position));
    out.insert("execution_time".into(), json!(job.execution_time));
    out.insert("images".into(), Value::Array(image_entries(job)));
    let metadata = match &job.metadata {
        Value::Object(m) => Value::Object(m.clone()),
        _ => json!({}),
    };
    out.insert("metadata".into(), metadata);
    out.insert("parameters".into(), job.parameters.clone());
    if let Some(error) = &job.error {
        out.insert(
            "error".into(),
            json!({
                "node_id": error.node_id,
                "node_type": error.node_type,
                "exception_type": error.exception_type,
                "message": error.message,
            }),
        );
    }
    if job.node_errors.as_object().is_some_and(|m| !m.is_empty()) {
        out.insert("node_errors".into(), job.node_errors.clone());
    }
    if !job.warnings.is_empty() {
        out.insert("warnings".into(), json!(job.warnings));
    }
    out.insert("submitted_at".into(), json!(job.submitted_at));
    out.insert("started_at".into(), json!(job.started_at));
    out.insert("finished_at".into(), json!(job.finished_at));
    Value::Object(out)
}

/// The result JSON of a generation (`generate_image`, a template tool, `load_workflow`):
/// [`job_json`] plus `status` (the state) and `execution_time` as a number (0.0 until the
/// job has run).
pub fn generation_json(job: &JobSnapshot) -> Value {
    let mut out = job_json(job);
    out["status"] = json!(job.state.as_str());
    out["execution_time"] = json!(job.execution_time.unwrap_or(0.0));
    out
}

/// One entry per image ComfyUI reported, in order: `{filename, subfolder, type}` and, once
/// the file is on disk, `path` (absolute), `uri` (`comfyui://images/<prompt_id>/<file>`),
/// `width`, `height` and `bytes`.
pub fn image_entries(job: &JobSnapshot) -> Vec<Value> {
    job.images
        .iter()
        .enumerate()
        .map(|(i, image)| {
            let mut entry = json!({
                "filename": image.filename,
                "subfolder": image.subfolder,
                "type": image.kind,
            });
            if let Some(file) = job.files.get(i) {
                entry["path"] = json!(absolute(&file.path).display().to_string());
                entry["uri"] = json!(resources::image_uri(&job.prompt_id, &file.filename));
                entry["width"] = json!(file.width);
                entry["height"] = json!(file.height);
                entry["bytes"] = json!(file.bytes);
            }
            entry
        })
        .collect()
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// A successful tool result: `value` as structured content and as the first (text)
/// content block, followed by `extra` blocks.
pub fn tool_success(value: Value, extra: Vec<ContentBlock>) -> CallToolResult {
    let mut result = CallToolResult::structured(value);
    result.content.extend(extra);
    result
}

/// A failed tool result: `message` as the only text block and `{"error": error}` as
/// structured content.
pub fn tool_error(message: impl Into<String>, error: Value) -> CallToolResult {
    let mut result = CallToolResult::error(vec![ContentBlock::text(message.into())]);
    result.structured_content = Some(json!({ "error": error }));
    result
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
    if width.max(height) <= THUMBNAIL_MAX_SIDE && png.len() <= INLINE_IMAGE_MAX_BYTES {
        return Ok(Thumbnail {
            data: png.to_vec(),
            mime_type: "image/png",
            width,
            height,
        });
    }
    let small = if width.max(height) > THUMBNAIL_MAX_SIDE {
        decoded.thumbnail(THUMBNAIL_MAX_SIDE, THUMBNAIL_MAX_SIDE)
    } else {
        decoded
    };
    let (width, height) = small.dimensions();
    let as_png = encode(&small, ImageFormat::Png)?;
    if as_png.len() <= INLINE_IMAGE_MAX_BYTES {
        return Ok(Thumbnail {
            data: as_png,
            mime_type: "image/png",
            width,
            height,
        });
    }
    let as_jpeg = encode_jpeg(&small)?;
    if as_jpeg.len() <= INLINE_IMAGE_MAX_BYTES {
        return Ok(Thumbnail {
            data: as_jpeg,
            mime_type: "image/jpeg",
            width,
            height,
        });
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

/// The content blocks of a finished job's images (an `image` block with the thumbnail and
/// a `resource_link` to the full image, per image) and the updated structured result: each
/// `images[i]` gains `thumbnail` (`"inline image/png"`, `"inline image/jpeg"` or
/// `"omitted: <reason>"`). Jobs that are not completed get no blocks.
pub async fn attach_images(job: &JobSnapshot, mut value: Value) -> (Value, Vec<ContentBlock>) {
    if job.state != JobState::Completed || job.files.is_empty() {
        return (value, Vec::new());
    }
    let mut blocks = Vec::with_capacity(job.files.len() * 2);
    for (i, file) in job.files.iter().enumerate() {
        let path = file.path.clone();
        let made = tokio::task::spawn_blocking(move || thumbnail_of_file(&path)).await;
        let note = match made {
            Ok(Ok(thumb)) => {
                let data = base64::engine::general_purpose::STANDARD.encode(&thumb.data);
                blocks.push(ContentBlock::image(data, thumb.mime_type));
                format!("inline {}", thumb.mime_type)
            }
            Ok(Err(e)) => {
                tracing::warn!(prompt_id = %job.prompt_id, file = %file.filename, error = %e, "no inline thumbnail");
                format!("omitted: {e}")
            }
            Err(e) => format!("omitted: thumbnail task failed: {e}"),
        };
        let uri = resources::image_uri(&job.prompt_id, &file.filename);
        blocks.push(ContentBlock::resource_link(
            Resource::new(uri, file.filename.clone())
                .with_mime_type("image/png")
                .with_size(file.bytes)
                .with_description(format!(
                    "Full-size image {}x{} of job {}",
                    file.width, file.height, job.prompt_id
                )),
        ));
        if let Some(entry) = value
            .get_mut("images")
            .and_then(Value::as_array_mut)
            .and_then(|images| images.get_mut(i))
        {
            entry["thumbnail"] = json!(note);
        }
    }
    (value, blocks)
}

/// Resource links (no thumbnails) to a completed job's images.
pub fn image_links(job: &JobSnapshot) -> Vec<ContentBlock> {
    if job.state != JobState::Completed {
        return Vec::new();
    }
    job.files
        .iter()
        .map(|file| {
            ContentBlock::resource_link(
                Resource::new(
                    resources::image_uri(&job.prompt_id, &file.filename),
                    file.filename.clone(),
                )
                .with_mime_type("image/png")
                .with_size(file.bytes),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use comfyui::{ImageRef, JobFailure, JobOrigin, SavedImage};
    use image::{ImageBuffer, Rgba};

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

    fn job(state: JobState) -> JobSnapshot {
        JobSnapshot {
            prompt_id: "p-1".into(),
            state,
            progress: 0.5,
            queue_position: Some(0),
            execution_time: None,
            images: vec![ImageRef {
                filename: "a.png".into(),
                subfolder: String::new(),
                kind: "output".into(),
            }],
            files: vec![SavedImage {
                path: PathBuf::from("/out/p-1/a.png"),
                filename: "a.png".into(),
                width: 64,
                height: 32,
                bytes: 100,
            }],
            error: None,
            node_errors: json!({}),
            submitted_at: 1.0,
            started_at: None,
            finished_at: None,
            origin: JobOrigin::Workflow {
                path: "w.json".into(),
                sha256: "00".into(),
            },
            parameters: json!({"seed": 1}),
            metadata: json!({"seed": 1, "template": "t"}),
            warnings: Vec::new(),
        }
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

    #[test]
    fn job_json_reports_images_with_uri_and_size() {
        let v = job_json(&job(JobState::Completed));
        assert_eq!(v["state"], "completed");
        assert_eq!(v["execution_time"], Value::Null);
        let img = &v["images"][0];
        assert_eq!(img["filename"], "a.png");
        assert_eq!(img["type"], "output");
        assert_eq!(img["uri"], "comfyui://images/p-1/a.png");
        assert_eq!(img["width"], 64);
        assert_eq!(img["path"], "/out/p-1/a.png");
        assert!(v.get("error").is_none());
    }

    #[test]
    fn generation_json_has_status_and_zero_time() {
        let v = generation_json(&job(JobState::Queued));
        assert_eq!(v["status"], "queued");
        assert_eq!(v["execution_time"], 0.0);
        assert_eq!(v["metadata"]["template"], "t");
    }

    #[test]
    fn failed_job_reports_error_fields() {
        let mut j = job(JobState::Failed);
        j.error = Some(JobFailure {
            node_id: Some("8".into()),
            node_type: Some("VAEDecode".into()),
            exception_type: Some("RuntimeError".into()),
            message: "boom".into(),
        });
        let v = job_json(&j);
        assert_eq!(v["error"]["node_id"], "8");
        assert_eq!(v["error"]["node_type"], "VAEDecode");
        assert_eq!(v["error"]["message"], "boom");
    }

    #[test]
    fn success_and_error_envelopes() {
        let ok = tool_success(json!({"a": 1}), vec![]);
        assert_eq!(ok.is_error, Some(false));
        let text = ok.content[0].as_text().unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&text.text).unwrap(),
            ok.structured_content.clone().unwrap()
        );
        let err = tool_error("bad thing", json!({"kind": "k", "message": "bad thing"}));
        assert_eq!(err.is_error, Some(true));
        assert_eq!(err.content[0].as_text().unwrap().text, "bad thing");
        assert_eq!(err.structured_content.unwrap()["error"]["kind"], "k");
    }
}
