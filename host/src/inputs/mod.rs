//! Images from clients: the arguments of a template's `image` and `mask` parameters, turned
//! into files ComfyUI can load and the [`ImageInput`]s the pack builds its graph from.
//!
//! Lifecycle of one call ([`ImageIntake::prepare`], then [`PreparedInputs::upload`]):
//! 1. each image argument's text is classified ([`source`]): base64, a `data:` URI, an
//!    earlier result (`comfyui://images/...`) or a path in the allowed input folders;
//! 2. on the intake's bounded blocking pool: its bytes are read under the byte cap (base64
//!    measured before decoding, files before reading), the format sniffed, the header's size
//!    checked against the pixel cap, the image decoded in full ([`decode`]); a mask becomes
//!    an 8-bit grey PNG ([`mask`]);
//! 3. the upload's name is content-addressed (`comfyui-mcp/comfyui-mcp-<first 32 hex of its
//!    SHA-256>.<ext>`), so the pack can build the graph with it before anything is sent;
//! 4. only after the graph is built and checked does [`PreparedInputs::upload`] send the
//!    files (`POST /upload/image`, `overwrite=false`: ComfyUI keeps an identical file it has
//!    under that name and renames a different one, which is refused).
//!
//! Invariants: any refused argument fails the call before anything is uploaded; every byte,
//! pixel and thread this takes is bounded by [`InputLimits`] and the pool's size; the
//! caller's big strings are moved out of the arguments, never copied.

pub mod decode;
pub mod error;
pub mod mask;
pub mod source;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use comfyui::{ClientError, ComfyClient};
use pack_runtime::{ImageInput, ParamKind, TemplateInfo};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::allowed_dirs::{AllowedDirs, DirRefusal, ReadError, read_capped};
use crate::blocking::BlockingPool;
use crate::error::AppError;
use crate::farm::Farm;
pub use decode::Format;
pub use error::InputError;
use source::{Base64Error, Source};

/// ComfyUI input sub-folder every upload goes to.
pub const UPLOAD_SUBFOLDER: &str = "comfyui-mcp";

/// The caps of one input image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputLimits {
    /// Largest file, in bytes (base64 and data URIs: the decoded size).
    pub max_bytes: u64,
    /// Largest width × height, checked from the header before decoding.
    pub max_pixels: u64,
}

impl InputLimits {
    /// Default byte cap: 16 MiB (a base64 argument is also bounded by the request size).
    pub const DEFAULT_MAX_BYTES: u64 = 16 << 20;
    /// Default pixel cap: 16,777,216 (4096 × 4096).
    pub const DEFAULT_MAX_PIXELS: u64 = 1 << 24;
    /// Default number of images decoded at once.
    pub const DEFAULT_THREADS: usize = 2;
}

impl Default for InputLimits {
    fn default() -> Self {
        Self {
            max_bytes: Self::DEFAULT_MAX_BYTES,
            max_pixels: Self::DEFAULT_MAX_PIXELS,
        }
    }
}

/// Reads, checks and converts client images, on its own bounded pool.
#[derive(Debug, Clone)]
pub struct ImageIntake {
    limits: InputLimits,
    dirs: Arc<AllowedDirs>,
    pool: BlockingPool,
}

impl Default for ImageIntake {
    fn default() -> Self {
        Self::new(
            InputLimits::default(),
            AllowedDirs::new(Vec::new()),
            BlockingPool::new("image input", InputLimits::DEFAULT_THREADS),
        )
    }
}

/// One checked image, ready to upload.
#[derive(Debug, Clone)]
pub struct PreparedInput {
    /// The parameter.
    pub param: String,
    /// What the pack gets.
    pub input: ImageInput,
    /// The file's name in ComfyUI's input folder (inside [`UPLOAD_SUBFOLDER`]).
    pub filename: String,
    /// The bytes to upload (the original file; for a mask, the grey PNG).
    pub bytes: bytes::Bytes,
}

/// The checked images of one call, by parameter.
#[derive(Debug, Clone, Default)]
pub struct PreparedInputs(Vec<PreparedInput>);

impl PreparedInputs {
    /// What [`pack_runtime::params::resolve_with_inputs`] takes.
    pub fn by_param(&self) -> BTreeMap<String, ImageInput> {
        self.0
            .iter()
            .map(|p| (p.param.clone(), p.input.clone()))
            .collect()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The prepared images.
    pub fn iter(&self) -> impl Iterator<Item = &PreparedInput> {
        self.0.iter()
    }

    /// Uploads every image to ComfyUI under its content-addressed name.
    pub async fn upload(&self, client: &ComfyClient) -> Result<(), InputError> {
        for prepared in &self.0 {
            upload_one(client, prepared).await?;
        }
        Ok(())
    }
}

async fn upload_one(client: &ComfyClient, prepared: &PreparedInput) -> Result<(), InputError> {
    let stored = client
        .upload_image(
            prepared.bytes.clone(),
            &prepared.filename,
            UPLOAD_SUBFOLDER,
            false,
        )
        .await
        .map_err(|source: ClientError| InputError::Upload {
            param: prepared.param.clone(),
            source,
        })?;
    let stored_name = if stored.subfolder.is_empty() {
        stored.filename.clone()
    } else {
        format!("{}/{}", stored.subfolder, stored.filename)
    };
    if stored_name != prepared.input.name {
        return Err(InputError::Renamed {
            param: prepared.param.clone(),
            expected: prepared.input.name.clone(),
            stored: stored_name,
        });
    }
    Ok(())
}

/// Stand-ins for the image arguments of `template` in `args` that are strings, for checking
/// the other arguments before any image is read.
pub fn placeholders(
    template: &TemplateInfo,
    args: &Map<String, Value>,
) -> BTreeMap<String, ImageInput> {
    template
        .params
        .iter()
        .filter(|spec| spec.kind.is_image() && args.get(&spec.name).is_some_and(Value::is_string))
        .map(|spec| {
            let unread = ImageInput {
                name: String::new(),
                width: 0,
                height: 0,
                has_alpha: false,
                sha256: String::new(),
            };
            (spec.name.clone(), unread)
        })
        .collect()
}

impl ImageIntake {
    /// An intake with these caps, input folders and pool.
    pub fn new(limits: InputLimits, dirs: AllowedDirs, pool: BlockingPool) -> Self {
        Self {
            limits,
            dirs: Arc::new(dirs),
            pool,
        }
    }

    /// The caps.
    pub fn limits(&self) -> &InputLimits {
        &self.limits
    }

    /// The allowed input folders.
    pub fn dirs(&self) -> &AllowedDirs {
        &self.dirs
    }

    /// The pool every image is read, decoded and converted on
    /// (`COMFYUI_MCP_INPUT_THREADS` jobs at once).
    pub fn pool(&self) -> &BlockingPool {
        &self.pool
    }

    /// Checks every image argument of `template` in `args` and prepares its upload. Each
    /// such argument's text is replaced in `args` by a short label of its source (the data
    /// moves to the pool, it is not copied). Arguments that are not strings are left for the
    /// parameter check to report.
    pub async fn prepare(
        &self,
        template: &TemplateInfo,
        args: &mut Map<String, Value>,
        farm: &Farm,
    ) -> Result<PreparedInputs, AppError> {
        let mut prepared = Vec::new();
        for spec in template.params.iter().filter(|s| s.kind.is_image()) {
            let Some(Value::String(text)) = args.get_mut(&spec.name) else {
                continue;
            };
            let text = std::mem::take(text);
            let (label, job) = self.plan(&spec.name, spec.kind, &text, farm).await?;
            args.insert(spec.name.clone(), Value::String(label));
            let one = self.pool.run(move || job.run(&text)).await??;
            prepared.push(one);
        }
        Ok(PreparedInputs(prepared))
    }

    /// Classifies one argument and finds an earlier result's file (async); the returned job
    /// does the blocking part.
    async fn plan(
        &self,
        param: &str,
        kind: ParamKind,
        text: &str,
        farm: &Farm,
    ) -> Result<(String, Job), InputError> {
        let source = source::classify(text).map_err(|detail| InputError::Malformed {
            param: param.to_owned(),
            detail,
        })?;
        let label = source.label();
        let origin = match source {
            Source::Base64(_) => Origin::Base64 { declared: None },
            Source::DataUri { media_type, .. } => Origin::Base64 {
                declared: Some(media_type),
            },
            Source::Result {
                prompt_id,
                filename,
            } => {
                let path = crate::results::image_path(farm, &prompt_id, &filename)
                    .await
                    .map_err(|e| InputError::UnknownResult {
                        param: param.to_owned(),
                        source: Box::new(e),
                    })?;
                Origin::File(path)
            }
            Source::Path(_) => Origin::InputDir,
        };
        Ok((
            label,
            Job {
                param: param.to_owned(),
                mask: kind == ParamKind::Mask,
                origin,
                limits: self.limits,
                dirs: self.dirs.clone(),
            },
        ))
    }
}

/// Where [`Job`] reads from.
#[derive(Debug)]
enum Origin {
    /// The argument is base64 (bare, or a data URI's payload with its declared type).
    Base64 {
        /// A data URI's media type.
        declared: Option<String>,
    },
    /// A file of ours (an earlier result), already found.
    File(PathBuf),
    /// The argument is a path in the input folders.
    InputDir,
}

/// The blocking part of one argument: read, check, convert, hash.
struct Job {
    param: String,
    mask: bool,
    origin: Origin,
    limits: InputLimits,
    dirs: Arc<AllowedDirs>,
}

impl Job {
    fn run(self, text: &str) -> Result<PreparedInput, InputError> {
        let bytes = self.read(text)?;
        let inspected =
            decode::inspect(&bytes, self.limits.max_pixels).map_err(|refusal| match refusal {
                decode::Refusal::NotAnImage(what) => InputError::NotAnImage {
                    param: self.param.clone(),
                    what,
                },
                decode::Refusal::TooManyPixels {
                    format,
                    width,
                    height,
                } => InputError::TooManyPixels {
                    param: self.param.clone(),
                    format,
                    width,
                    height,
                    limit: self.limits.max_pixels,
                },
                decode::Refusal::Corrupt { format, detail } => InputError::Corrupt {
                    param: self.param.clone(),
                    format,
                    detail,
                },
            })?;
        if let Origin::Base64 {
            declared: Some(declared),
        } = &self.origin
            && declared != inspected.format.mime()
        {
            return Err(InputError::TypeMismatch {
                param: self.param.clone(),
                declared: declared.clone(),
                actual: format!("{} ({})", inspected.format, inspected.format.mime()),
            });
        }
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let (upload, extension, has_alpha) = if self.mask {
            let png = mask::mask_png(&inspected.pixels).map_err(|e| InputError::Corrupt {
                param: self.param.clone(),
                format: inspected.format,
                detail: format!("cannot convert it to a mask: {e}"),
            })?;
            (png, Format::Png.extension(), false)
        } else {
            (bytes, inspected.format.extension(), inspected.has_alpha)
        };
        let digest = hex::encode(Sha256::digest(&upload));
        let filename = format!("comfyui-mcp-{}.{extension}", &digest[..32]);
        Ok(PreparedInput {
            input: ImageInput {
                name: format!("{UPLOAD_SUBFOLDER}/{filename}"),
                width: inspected.width,
                height: inspected.height,
                has_alpha,
                sha256,
            },
            param: self.param,
            filename,
            bytes: upload.into(),
        })
    }

    /// The argument's bytes, under the byte cap.
    fn read(&self, text: &str) -> Result<Vec<u8>, InputError> {
        let param = || self.param.clone();
        let max_bytes = self.limits.max_bytes;
        match &self.origin {
            Origin::Base64 { declared } => {
                let encoded = match declared {
                    // The payload after the data URI's comma.
                    Some(_) => text.trim().split_once(',').map_or("", |(_, p)| p),
                    None => text.trim(),
                };
                source::decode_base64(encoded, max_bytes).map_err(|e| match e {
                    Base64Error::TooLarge(bytes) => InputError::TooLarge {
                        param: param(),
                        bytes,
                        estimated: true,
                        limit: max_bytes,
                    },
                    Base64Error::Invalid(detail) => InputError::Malformed {
                        param: param(),
                        detail: format!("the base64 data does not decode: {detail}"),
                    },
                })
            }
            Origin::File(path) => self.read_file(path, path.display().to_string()),
            Origin::InputDir => {
                let requested = text.trim();
                let path = self.dirs.find(requested).map_err(|refusal| match refusal {
                    DirRefusal::Outside => InputError::PathRefused {
                        param: param(),
                        path: source::cut(requested),
                        allowed: self.dirs.describe(),
                    },
                    DirRefusal::Empty | DirRefusal::NotFound => InputError::NotFound {
                        param: param(),
                        path: source::cut(requested),
                        allowed: self.dirs.describe(),
                    },
                })?;
                self.read_file(&path, source::cut(requested))
            }
        }
    }

    fn read_file(&self, path: &Path, shown: String) -> Result<Vec<u8>, InputError> {
        read_capped(path, self.limits.max_bytes).map_err(|e| match e {
            ReadError::TooLarge(bytes) => InputError::TooLarge {
                param: self.param.clone(),
                bytes,
                estimated: false,
                limit: self.limits.max_bytes,
            },
            ReadError::NotAFile => InputError::Unreadable {
                param: self.param.clone(),
                path: shown,
                detail: "not a file".to_owned(),
            },
            ReadError::Io(e) => InputError::Unreadable {
                param: self.param.clone(),
                path: shown,
                detail: e.to_string(),
            },
        })
    }
}
