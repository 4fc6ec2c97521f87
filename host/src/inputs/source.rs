//! Where an image argument's bytes come from, told apart by the text alone:
//!
//! 1. `data:<type>;base64,<data>`: a data URI (its declared type is checked later against
//!    the bytes);
//! 2. `comfyui://images/<prompt_id>/<file>`: an image of an earlier job of ours;
//! 3. base64: text that starts like base64 of a PNG (`iVBORw0KGgo`), JPEG (`/9j/`) or WebP
//!    (`UklGR`), or any text over [`BASE64_MIN_LEN`] bytes made only of base64 characters
//!    and whitespace;
//! 4. anything else is a path inside the allowed input folders.
//!
//! Other URL schemes are refused: the server fetches nothing from the network for a client.
//! Budgets: base64 is measured before it is decoded (its decoded size is at most 3/4 of its
//! length, checked against the byte cap) and files from their metadata before they are read.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use crate::uris::{ResourceRef, SCHEME, parse_uri};

/// Text longer than this made only of base64 characters is taken as base64, not a path.
pub const BASE64_MIN_LEN: usize = 256;

/// How base64 starts for each accepted format (the encoded magic bytes).
const BASE64_PREFIXES: [&str; 3] = ["iVBORw0KGgo", "/9j/", "UklGR"];

/// An image argument, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source<'a> {
    /// Base64 data (whitespace allowed, padding optional).
    Base64(&'a str),
    /// A `data:` URI: its declared media type (lowercase, parameters dropped) and payload.
    DataUri {
        /// E.g. `image/png`; empty when the URI declares none.
        media_type: String,
        /// The base64 payload.
        payload: &'a str,
    },
    /// An image of an earlier job of ours.
    Result {
        /// The job.
        prompt_id: String,
        /// The image's file name.
        filename: String,
    },
    /// A path inside the allowed input folders.
    Path(&'a str),
}

impl Source<'_> {
    /// How the source is named in provenance and messages (never the data itself).
    pub fn label(&self) -> String {
        match self {
            Source::Base64(_) => "base64".to_owned(),
            Source::DataUri { media_type, .. } => format!("data: URI ({media_type})"),
            Source::Result {
                prompt_id,
                filename,
            } => crate::uris::image_uri(prompt_id, filename),
            Source::Path(path) => format!("path {path}"),
        }
    }
}

/// Classifies `text`; `Err` explains a malformed URI.
pub fn classify(text: &str) -> Result<Source<'_>, String> {
    let trimmed = text.trim();
    if let Some(rest) = strip_prefix_ignore_case(trimmed, "data:") {
        return data_uri(rest);
    }
    if trimmed.starts_with(SCHEME) {
        return match parse_uri(trimmed) {
            Some(ResourceRef::Image {
                prompt_id,
                filename,
            }) => Ok(Source::Result {
                prompt_id,
                filename,
            }),
            _ => Err(format!(
                "`{}` is not an image URI; an earlier result is named comfyui://images/<prompt_id>/<filename>, as its `uri` in the job's images",
                cut(trimmed)
            )),
        };
    }
    if let Some((scheme, _)) = trimmed.split_once("://")
        && !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    {
        return Err(format!(
            "`{scheme}://` URLs are not fetched (the server makes no network requests for inputs); send the image as base64, a data: URI, a comfyui://images/... URI or a path inside the input folders"
        ));
    }
    if looks_like_base64(trimmed) {
        return Ok(Source::Base64(trimmed));
    }
    Ok(Source::Path(trimmed))
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

fn data_uri(rest: &str) -> Result<Source<'_>, String> {
    let Some((header, payload)) = rest.split_once(',') else {
        return Err("the data: URI has no `,` before its data".to_owned());
    };
    let mut parts = header.split(';');
    let media_type = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    if !parts.any(|p| p.trim().eq_ignore_ascii_case("base64")) {
        return Err(
            "the data: URI must be base64-encoded, as data:image/png;base64,<data>".to_owned(),
        );
    }
    Ok(Source::DataUri {
        media_type,
        payload,
    })
}

fn looks_like_base64(text: &str) -> bool {
    if BASE64_PREFIXES.iter().any(|p| text.starts_with(p)) {
        return true;
    }
    text.len() > BASE64_MIN_LEN
        && text.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=') || b.is_ascii_whitespace()
        })
}

/// At most the first 80 characters of `text`, for messages.
pub fn cut(text: &str) -> String {
    let mut out: String = text.chars().take(80).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    pack_runtime::text::escape_control(&out).into_owned()
}

/// The number of bytes `encoded` (no whitespace) decodes to if it is valid base64: 3 bytes
/// per 4 characters, padding not counted.
pub fn decoded_len_bound(encoded: &str) -> u64 {
    let data = encoded.trim_end_matches('=').len() as u64;
    data * 3 / 4
}

/// Why base64 did not decode.
#[derive(Debug)]
pub enum Base64Error {
    /// More than `limit` bytes once decoded (the bound from its length).
    TooLarge(u64),
    /// Not base64.
    Invalid(String),
}

/// Decodes base64 (standard alphabet, whitespace ignored, padding optional) of at most
/// `max_bytes` decoded bytes; the bound is checked before anything is decoded.
pub fn decode_base64(encoded: &str, max_bytes: u64) -> Result<Vec<u8>, Base64Error> {
    let compact: std::borrow::Cow<'_, str> = if encoded.bytes().any(|b| b.is_ascii_whitespace()) {
        encoded.split_ascii_whitespace().collect::<String>().into()
    } else {
        encoded.into()
    };
    let bound = decoded_len_bound(&compact);
    if bound > max_bytes {
        return Err(Base64Error::TooLarge(bound));
    }
    const ENGINE: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    ENGINE
        .decode(compact.as_bytes())
        .map_err(|e| Base64Error::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_each_source() {
        assert_eq!(
            classify("data:image/PNG;base64,iVBO").unwrap(),
            Source::DataUri {
                media_type: "image/png".into(),
                payload: "iVBO"
            }
        );
        assert!(
            classify("data:image/png,rawdata")
                .unwrap_err()
                .contains("base64")
        );
        assert_eq!(
            classify("comfyui://images/abc/ComfyUI_00001_.png").unwrap(),
            Source::Result {
                prompt_id: "abc".into(),
                filename: "ComfyUI_00001_.png".into()
            }
        );
        assert!(
            classify("comfyui://jobs/abc")
                .unwrap_err()
                .contains("not an image URI")
        );
        assert!(
            classify("https://example.com/a.png")
                .unwrap_err()
                .contains("not fetched")
        );
        assert_eq!(
            classify("iVBORw0KGgoAAAA").unwrap(),
            Source::Base64("iVBORw0KGgoAAAA")
        );
        assert_eq!(
            classify(" sprites/hero.png ").unwrap(),
            Source::Path("sprites/hero.png")
        );
        let long = "A".repeat(BASE64_MIN_LEN + 1);
        assert_eq!(classify(&long).unwrap(), Source::Base64(&long));
        let long_path = format!("{}.png", "a".repeat(BASE64_MIN_LEN + 1));
        assert_eq!(classify(&long_path).unwrap(), Source::Path(&long_path));
    }

    #[test]
    fn base64_is_bounded_before_decoding() {
        assert_eq!(decode_base64("aGVsbG8=", 5).unwrap(), b"hello");
        assert_eq!(decode_base64("aGVs\nbG8", 5).unwrap(), b"hello");
        // Padding does not count: "aGVsbG8=" is 5 bytes, "aGVsbG8h" 6.
        assert!(matches!(
            decode_base64("aGVsbG8h", 5),
            Err(Base64Error::TooLarge(6))
        ));
        assert!(matches!(
            decode_base64("a$b=", 10),
            Err(Base64Error::Invalid(_))
        ));
    }
}
