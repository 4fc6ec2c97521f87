//! Recognising and checking an input image: the format from its magic bytes, the size from
//! its header (checked against the pixel cap before any pixel is decoded), then a full decode
//! under an allocation cap, so a truncated or damaged file is refused here and not by
//! ComfyUI halfway through a job.
//!
//! Invariants: [`inspect`] decodes nothing of an image over `max_pixels`; every decoder
//! allocation is capped at `max_pixels × 8` bytes (16-bit RGBA) plus 1 MiB; a JPEG must end
//! with its end-of-image marker (trailing zero padding allowed), since the JPEG decoder
//! fills a truncated scan with grey instead of failing. The reported size is the displayed
//! one, after the EXIF orientation ComfyUI's `LoadImage` applies. Blocking CPU work.

use std::fmt;
use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, metadata::Orientation};

/// The formats accepted from clients (what ComfyUI's `LoadImage` opens and we can check).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Format {
    /// PNG.
    Png,
    /// JPEG (baseline or progressive).
    Jpeg,
    /// WebP (lossy or lossless).
    Webp,
}

impl Format {
    /// From the first bytes of the file; `Err` names what the bytes look like instead.
    pub fn sniff(bytes: &[u8]) -> Result<Format, String> {
        if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Ok(Format::Png)
        } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
            Ok(Format::Jpeg)
        } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
            Ok(Format::Webp)
        } else {
            Err(describe_other(bytes))
        }
    }

    /// The media type (`image/png`, ...).
    pub fn mime(self) -> &'static str {
        match self {
            Format::Png => "image/png",
            Format::Jpeg => "image/jpeg",
            Format::Webp => "image/webp",
        }
    }

    /// The file extension used for the upload.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Png => "png",
            Format::Jpeg => "jpg",
            Format::Webp => "webp",
        }
    }

    fn image_format(self) -> ImageFormat {
        match self {
            Format::Png => ImageFormat::Png,
            Format::Jpeg => ImageFormat::Jpeg,
            Format::Webp => ImageFormat::WebP,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Png => "PNG",
            Format::Jpeg => "JPEG",
            Format::Webp => "WebP",
        })
    }
}

/// What a refused file looks like, for the error message.
fn describe_other(bytes: &[u8]) -> String {
    let known: &[(&[u8], usize, &str)] = &[
        (b"GIF8", 0, "a GIF image"),
        (b"BM", 0, "a BMP image"),
        (b"II*\0", 0, "a TIFF image"),
        (b"MM\0*", 0, "a TIFF image"),
        (b"ftypavif", 4, "an AVIF image"),
        (b"ftypheic", 4, "a HEIC image"),
        (b"ftypmif1", 4, "a HEIF image"),
        (b"\0\0\x01\0", 0, "an ICO image"),
        (b"%PDF", 0, "a PDF document"),
        (b"PK\x03\x04", 0, "a ZIP archive"),
        (b"\x1f\x8b", 0, "gzip data"),
    ];
    for (magic, at, what) in known {
        if bytes.get(*at..at + magic.len()) == Some(*magic) {
            return format!("the data is {what}");
        }
    }
    if bytes.is_empty() {
        return "the data is empty".to_owned();
    }
    let head = &bytes[..bytes.len().min(256)];
    let text = std::str::from_utf8(head).is_ok_and(|t| !t.contains('\0'));
    if text {
        let trimmed = String::from_utf8_lossy(head);
        let trimmed = trimmed.trim_start();
        if trimmed.starts_with("<svg") || trimmed.starts_with("<?xml") {
            return "the data is SVG/XML text (vector images are not accepted)".to_owned();
        }
        return "the data is text, not an image".to_owned();
    }
    "the data is not a PNG, JPEG or WebP file (unknown signature)".to_owned()
}

/// A checked input image.
#[derive(Debug)]
pub struct Inspected {
    /// Its format.
    pub format: Format,
    /// Displayed width (after EXIF orientation).
    pub width: u32,
    /// Displayed height.
    pub height: u32,
    /// Whether the file has an alpha channel.
    pub has_alpha: bool,
    /// The decoded pixels, oriented as displayed.
    pub pixels: DynamicImage,
}

/// Why [`inspect`] refused (the caller adds the parameter's name).
#[derive(Debug)]
pub enum Refusal {
    /// Not a format we accept.
    NotAnImage(String),
    /// The header's size is over the cap.
    TooManyPixels {
        /// Declared format.
        format: Format,
        /// Header width.
        width: u32,
        /// Header height.
        height: u32,
    },
    /// It does not decode.
    Corrupt {
        /// Declared format.
        format: Format,
        /// Why.
        detail: String,
    },
}

/// Sniffs, checks the header against `max_pixels`, and decodes `bytes`.
pub fn inspect(bytes: &[u8], max_pixels: u64) -> Result<Inspected, Refusal> {
    let format = Format::sniff(bytes).map_err(Refusal::NotAnImage)?;
    let corrupt = |detail: String| Refusal::Corrupt { format, detail };
    if format == Format::Jpeg && !ends_with_eoi(bytes) {
        return Err(corrupt(
            "it has no end-of-image marker (the file is truncated)".to_owned(),
        ));
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format.image_format());
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(max_pixels.saturating_mul(8).saturating_add(1 << 20));
    reader.limits(limits);
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| corrupt(decode_detail(&e)))?;
    let (raw_w, raw_h) = decoder.dimensions();
    if raw_w == 0 || raw_h == 0 {
        return Err(corrupt(format!(
            "its header declares {raw_w}x{raw_h} pixels"
        )));
    }
    if u64::from(raw_w) * u64::from(raw_h) > max_pixels {
        return Err(Refusal::TooManyPixels {
            format,
            width: raw_w,
            height: raw_h,
        });
    }
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let has_alpha = decoder.color_type().has_alpha();
    let mut pixels = DynamicImage::from_decoder(decoder).map_err(|e| corrupt(decode_detail(&e)))?;
    pixels.apply_orientation(orientation);
    Ok(Inspected {
        format,
        width: pixels.width(),
        height: pixels.height(),
        has_alpha,
        pixels,
    })
}

/// Whether a JPEG ends with EOI (`FF D9`), ignoring trailing zero padding.
fn ends_with_eoi(bytes: &[u8]) -> bool {
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    bytes[..end].ends_with(&[0xff, 0xd9])
}

fn decode_detail(error: &image::ImageError) -> String {
    match error {
        image::ImageError::Limits(_) => {
            "decoding it would need more memory than its pixel count allows (a decompression bomb?)"
                .to_owned()
        }
        other => pack_runtime::text::escape_control(&other.to_string()).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x * 7) as u8, (y * 3) as u8, 90])
        });
        let mut out = Vec::new();
        DynamicImage::ImageRgb8(img)
            .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn sniffs_the_accepted_formats_and_names_the_others() {
        assert_eq!(Format::sniff(&png(2, 2)), Ok(Format::Png));
        assert_eq!(Format::sniff(&[0xff, 0xd8, 0xff, 0xe0]), Ok(Format::Jpeg));
        assert_eq!(Format::sniff(b"RIFF\0\0\0\0WEBPVP8 "), Ok(Format::Webp));
        assert_eq!(
            Format::sniff(b"GIF89a...").unwrap_err(),
            "the data is a GIF image"
        );
        assert_eq!(
            Format::sniff(b"hello").unwrap_err(),
            "the data is text, not an image"
        );
        assert!(Format::sniff(b"<svg xmlns=").unwrap_err().contains("SVG"));
        assert_eq!(Format::sniff(b"").unwrap_err(), "the data is empty");
    }

    #[test]
    fn pixel_cap_is_checked_at_the_limit() {
        let bytes = png(16, 8);
        let ok = inspect(&bytes, 128).unwrap();
        assert_eq!(
            (ok.format, ok.width, ok.height, ok.has_alpha),
            (Format::Png, 16, 8, false)
        );
        assert!(matches!(
            inspect(&bytes, 127),
            Err(Refusal::TooManyPixels {
                width: 16,
                height: 8,
                ..
            })
        ));
    }

    #[test]
    fn truncated_files_are_corrupt() {
        let bytes = png(64, 64);
        let cut = &bytes[..bytes.len() - 30];
        assert!(matches!(
            inspect(cut, 1 << 20),
            Err(Refusal::Corrupt {
                format: Format::Png,
                ..
            })
        ));
        let mut jpeg = Vec::new();
        DynamicImage::ImageRgb8(image::RgbImage::new(32, 32))
            .write_to(&mut Cursor::new(&mut jpeg), ImageFormat::Jpeg)
            .unwrap();
        assert!(inspect(&jpeg, 1 << 20).is_ok());
        let mut padded = jpeg.clone();
        padded.extend_from_slice(&[0, 0, 0]);
        assert!(inspect(&padded, 1 << 20).is_ok());
        assert!(matches!(
            inspect(&jpeg[..jpeg.len() - 10], 1 << 20),
            Err(Refusal::Corrupt {
                format: Format::Jpeg,
                ..
            })
        ));
    }
}
