//! Why an image argument was refused: one typed case per cause, each naming the parameter,
//! what was found and the limit with the setting that raises it. Nothing was uploaded when
//! any of these is returned for a call, except [`InputError::Upload`] (ComfyUI refused or
//! failed during the upload itself).

use comfyui::ClientError;

use super::decode::Format;

/// A refused image or mask argument.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// More bytes than the input cap (for base64, estimated from its length before decoding).
    #[error(
        "image parameter `{param}`: the image is {bytes} bytes{estimated}, over the limit of {limit} bytes; a server operator can raise it with --input-max-bytes or COMFYUI_MCP_INPUT_MAX_BYTES",
        estimated = if *.estimated { " (from the length of its base64)" } else { "" }
    )]
    TooLarge {
        /// The parameter.
        param: String,
        /// Its size (decoded, or what was read of a file).
        bytes: u64,
        /// Whether `bytes` comes from the base64 length, before decoding.
        estimated: bool,
        /// The cap.
        limit: u64,
    },
    /// More pixels than the input pixel cap, from the header (nothing was decoded).
    #[error(
        "image parameter `{param}`: the {format} image is {width}x{height} = {pixels} pixels, over the limit of {limit} pixels; a server operator can raise it with --input-max-pixels or COMFYUI_MCP_INPUT_MAX_PIXELS",
        pixels = u64::from(*.width) * u64::from(*.height)
    )]
    TooManyPixels {
        /// The parameter.
        param: String,
        /// The format the header declared.
        format: Format,
        /// Width from the header.
        width: u32,
        /// Height from the header.
        height: u32,
        /// The cap.
        limit: u64,
    },
    /// The bytes are not a PNG, JPEG or WebP file.
    #[error(
        "image parameter `{param}`: {what}; an image must be PNG, JPEG or WebP, given as base64, a data: URI, a comfyui://images/... URI of an earlier result or a path inside the input folders"
    )]
    NotAnImage {
        /// The parameter.
        param: String,
        /// What the bytes look like (e.g. "the data is a GIF image").
        what: String,
    },
    /// A `data:` URI whose declared type is not the sniffed one, or not an image type.
    #[error(
        "image parameter `{param}`: the data: URI declares `{declared}` but the data is {actual}"
    )]
    TypeMismatch {
        /// The parameter.
        param: String,
        /// The media type the URI declares.
        declared: String,
        /// What the bytes are.
        actual: String,
    },
    /// Malformed text: bad base64, a `data:` URI without `;base64,`, an unparsable
    /// `comfyui://` URI.
    #[error("image parameter `{param}`: {detail}")]
    Malformed {
        /// The parameter.
        param: String,
        /// What is wrong.
        detail: String,
    },
    /// The file claims a known format but does not decode (truncated, damaged, a bomb the
    /// decoder's allocation cap stopped).
    #[error("image parameter `{param}`: the {format} image does not decode: {detail}")]
    Corrupt {
        /// The parameter.
        param: String,
        /// Its format.
        format: Format,
        /// The decoder's reason.
        detail: String,
    },
    /// A path outside the allowed input folders (whether it exists is not said).
    #[error(
        "image parameter `{param}`: path `{path}` is outside the allowed input folders ({allowed}); copy the file into one of them or add its folder with COMFYUI_MCP_INPUT_DIRS"
    )]
    PathRefused {
        /// The parameter.
        param: String,
        /// As given.
        path: String,
        /// The allowed folders.
        allowed: String,
    },
    /// No such file in the allowed input folders.
    #[error(
        "image parameter `{param}`: `{path}` is not base64 image data, a data: or comfyui:// URI, nor a file in the input folders ({allowed})"
    )]
    NotFound {
        /// The parameter.
        param: String,
        /// As given.
        path: String,
        /// The allowed folders.
        allowed: String,
    },
    /// The file exists but cannot be read.
    #[error("image parameter `{param}`: cannot read `{path}`: {detail}")]
    Unreadable {
        /// The parameter.
        param: String,
        /// The file.
        path: String,
        /// The system's reason.
        detail: String,
    },
    /// A `comfyui://images/...` URI naming no image of a job of ours.
    #[error("image parameter `{param}`: {source}")]
    UnknownResult {
        /// The parameter.
        param: String,
        /// The lookup's error (unknown job or image, job store failure).
        source: Box<crate::error::AppError>,
    },
    /// ComfyUI stored the upload under another name than the content-addressed one the graph
    /// names (another file already holds that name).
    #[error(
        "image parameter `{param}`: ComfyUI stored the upload as `{stored}` instead of `{expected}`: a different file already has that name in its input folder; remove it"
    )]
    Renamed {
        /// The parameter.
        param: String,
        /// The name the graph uses.
        expected: String,
        /// The name ComfyUI chose.
        stored: String,
    },
    /// The upload to ComfyUI failed.
    #[error("image parameter `{param}`: the upload to ComfyUI failed: {source}")]
    Upload {
        /// The parameter.
        param: String,
        /// What the client reported.
        source: ClientError,
    },
}

impl InputError {
    /// A short machine-readable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            InputError::TooLarge { .. } => "input_too_large",
            InputError::TooManyPixels { .. } => "input_too_many_pixels",
            InputError::NotAnImage { .. } => "input_not_an_image",
            InputError::TypeMismatch { .. } => "input_type_mismatch",
            InputError::Malformed { .. } => "input_malformed",
            InputError::Corrupt { .. } => "input_corrupt",
            InputError::PathRefused { .. } => "input_path_refused",
            InputError::NotFound { .. } => "input_not_found",
            InputError::Unreadable { .. } => "input_unreadable",
            InputError::UnknownResult { .. } => "input_unknown_result",
            InputError::Renamed { .. } | InputError::Upload { .. } => "input_upload_failed",
        }
    }

    /// The parameter the error is about.
    pub fn param(&self) -> &str {
        match self {
            InputError::TooLarge { param, .. }
            | InputError::TooManyPixels { param, .. }
            | InputError::NotAnImage { param, .. }
            | InputError::TypeMismatch { param, .. }
            | InputError::Malformed { param, .. }
            | InputError::Corrupt { param, .. }
            | InputError::PathRefused { param, .. }
            | InputError::NotFound { param, .. }
            | InputError::Unreadable { param, .. }
            | InputError::UnknownResult { param, .. }
            | InputError::Renamed { param, .. }
            | InputError::Upload { param, .. } => param,
        }
    }
}
