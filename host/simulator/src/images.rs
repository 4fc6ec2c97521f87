//! Placeholder images: how the simulator "computes" pixels, encodes PNGs and prints tensors.
//!
//! An image flowing through a simulated graph is a small recipe ([`Img`]): a size, a batch
//! count, a source (solid colour, a seed-derived gradient, or decoded upload pixels) and a
//! list of per-pixel operations. Pixels are only computed when a PNG is written (row by row,
//! so memory stays bounded) or when a tensor is printed in an error message.
//!
//! Invariant: everything is deterministic: the same recipe always yields the same bytes. The
//! gradients are placeholders and are never presented as generated images.

use bytes::Bytes;
use std::io::{Cursor, Write};
use std::sync::Arc;
use thiserror::Error;

/// Why an image could not be encoded or decoded.
#[derive(Debug, Error)]
pub(crate) enum ImageError {
    /// The PNG encoder refused the image.
    #[error("PNG encoding failed: {0}")]
    Encode(#[from] png::EncodingError),
    /// The bytes are not an image the simulator can read (PNG, or JPEG for its size only).
    #[error("cannot identify image file")]
    Unidentified,
}

/// Decoded RGB pixels of an uploaded image.
#[derive(Debug)]
pub(crate) struct RgbPixels {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Row-major RGB bytes; empty when only the size is known (e.g. a JPEG).
    pub data: Vec<u8>,
}

/// Where an image's pixels come from.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    /// One colour everywhere (`EmptyImage`).
    Solid([u8; 3]),
    /// A smooth four-corner gradient derived from a seed (sampler output).
    Pattern {
        /// The seed of the upstream sampler.
        seed: u64,
    },
    /// Pixels of an uploaded file, resampled to the image size.
    Pixels(Arc<RgbPixels>),
}

/// A per-pixel operation applied after sampling the source.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Op {
    /// `1 - x` on every channel.
    Invert,
    /// Keep one channel as grey (`ImageToMask`).
    Channel(u8),
}

/// An image recipe: what a simulated IMAGE, MASK or LATENT value holds.
#[derive(Debug, Clone)]
pub(crate) struct Img {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Number of images in the batch.
    pub batch: u32,
    /// Where the pixels come from.
    pub source: Source,
    /// Operations applied in order.
    pub ops: Vec<Op>,
}

impl Img {
    /// An image of one colour.
    pub fn solid(width: u32, height: u32, batch: u32, rgb: [u8; 3]) -> Self {
        Self {
            width,
            height,
            batch,
            source: Source::Solid(rgb),
            ops: Vec::new(),
        }
    }

    /// A seed-derived gradient.
    pub fn pattern(width: u32, height: u32, batch: u32, seed: u64) -> Self {
        Self {
            width,
            height,
            batch,
            source: Source::Pattern { seed },
            ops: Vec::new(),
        }
    }

    /// The same recipe with one more operation.
    pub fn with_op(&self, op: Op) -> Self {
        let mut out = self.clone();
        out.ops.push(op);
        out
    }

    /// The same recipe at another size.
    pub fn resized(&self, width: u32, height: u32) -> Self {
        let mut out = self.clone();
        out.width = width.max(1);
        out.height = height.max(1);
        out
    }

    /// The RGB value of one pixel of one batch item.
    pub fn pixel(&self, b: u32, x: u32, y: u32) -> [u8; 3] {
        let u = if self.width > 1 {
            f64::from(x) / f64::from(self.width - 1)
        } else {
            0.0
        };
        let v = if self.height > 1 {
            f64::from(y) / f64::from(self.height - 1)
        } else {
            0.0
        };
        let mut p = match &self.source {
            Source::Solid(rgb) => *rgb,
            Source::Pattern { seed } => gradient(*seed, b, u, v),
            Source::Pixels(px) => sample(px, u, v),
        };
        for op in &self.ops {
            p = match op {
                Op::Invert => [255 - p[0], 255 - p[1], 255 - p[2]],
                Op::Channel(c) => {
                    let g = p[usize::from(*c).min(2)];
                    [g, g, g]
                }
            };
        }
        p
    }

    /// Encodes one batch item as an RGB PNG with the given `tEXt` chunks.
    pub fn encode_png(&self, b: u32, texts: &[(String, String)]) -> Result<Bytes, ImageError> {
        let mut out = Vec::new();
        {
            let mut encoder = png::Encoder::new(&mut out, self.width, self.height);
            encoder.set_color(png::ColorType::Rgb);
            encoder.set_depth(png::BitDepth::Eight);
            for (k, v) in texts {
                // Keys that PNG cannot hold (empty, too long, non-Latin-1) are skipped.
                if let Err(e) = encoder.add_text_chunk(k.clone(), v.clone()) {
                    tracing::debug!(key = %k, error = %e, "skipped PNG text chunk");
                }
            }
            let mut writer = encoder.write_header()?;
            let mut stream = writer.stream_writer()?;
            let mut row = Vec::with_capacity(self.width as usize * 3);
            for y in 0..self.height {
                row.clear();
                for x in 0..self.width {
                    row.extend_from_slice(&self.pixel(b, x, y));
                }
                stream
                    .write_all(&row)
                    .map_err(png::EncodingError::IoError)?;
            }
            stream.finish()?;
            writer.finish()?;
        }
        Ok(Bytes::from(out))
    }

    /// PyTorch's `repr` of this image as an IMAGE tensor (`[batch, height, width, 3]`).
    pub fn image_tensor_repr(&self) -> String {
        let shape = [
            self.batch as usize,
            self.height as usize,
            self.width as usize,
            3,
        ];
        tensor_repr(&shape, |i| {
            let p = self.pixel(i[0] as u32, i[2] as u32, i[1] as u32);
            f64::from(p[i[3]]) / 255.0
        })
    }

    /// PyTorch's `repr` of this image as a MASK tensor (`[batch, height, width]`).
    pub fn mask_tensor_repr(&self) -> String {
        let shape = [
            self.batch as usize,
            self.height as usize,
            self.width as usize,
        ];
        tensor_repr(&shape, |i| {
            f64::from(self.pixel(i[0] as u32, i[2] as u32, i[1] as u32)[0]) / 255.0
        })
    }

    /// Python's `str()` of a LATENT dict holding this image (`{'samples': tensor(...)}`).
    pub fn latent_repr(&self) -> String {
        let shape = [
            self.batch as usize,
            4,
            (self.height as usize / 8).max(1),
            (self.width as usize / 8).max(1),
        ];
        let empty = matches!(self.source, Source::Solid(_)) && self.ops.is_empty();
        let t = tensor_repr(&shape, |i| {
            if empty {
                return 0.0;
            }
            let p = self.pixel(i[0] as u32, (i[3] * 8) as u32, (i[2] * 8) as u32);
            f64::from(p[i[1] % 3]) / 127.5 - 1.0
        });
        format!("{{'samples': {t}}}")
    }
}

/// Encodes raw RGB pixels as a PNG: RGB, or (`alpha_only`) an RGBA image with black colour
/// and a fully opaque alpha channel (what `/view?channel=a` shows for an image without alpha).
pub(crate) fn encode_raw(
    width: u32,
    height: u32,
    rgb: &[u8],
    alpha_only: bool,
) -> Result<Bytes, ImageError> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_depth(png::BitDepth::Eight);
        let writer = if alpha_only {
            encoder.set_color(png::ColorType::Rgba);
            let data: Vec<u8> = (0..rgb.len() / 3).flat_map(|_| [0, 0, 0, 255]).collect();
            let mut w = encoder.write_header()?;
            w.write_image_data(&data)?;
            w
        } else {
            encoder.set_color(png::ColorType::Rgb);
            let mut w = encoder.write_header()?;
            w.write_image_data(rgb)?;
            w
        };
        writer.finish()?;
    }
    Ok(Bytes::from(out))
}

/// Width and height of an encoded image: PNG fully, JPEG from its frame header, WebP from
/// its `VP8`/`VP8L`/`VP8X` header (ComfyUI's PIL opens all three).
pub(crate) fn decode(bytes: &[u8]) -> Result<RgbPixels, ImageError> {
    if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        let (width, height) = webp_size(bytes).ok_or(ImageError::Unidentified)?;
        return Ok(RgbPixels {
            width,
            height,
            data: Vec::new(),
        });
    }
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return decode_png(bytes).ok_or(ImageError::Unidentified);
    }
    if bytes.starts_with(&[0xff, 0xd8]) {
        let (width, height) = jpeg_size(bytes).ok_or(ImageError::Unidentified)?;
        return Ok(RgbPixels {
            width,
            height,
            data: Vec::new(),
        });
    }
    Err(ImageError::Unidentified)
}

fn decode_png(bytes: &[u8]) -> Option<RgbPixels> {
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().ok()?;
    let mut buf = vec![0; reader.output_buffer_size()?];
    let info = reader.next_frame(&mut buf).ok()?;
    let (width, height) = (info.width, info.height);
    let src = &buf[..info.buffer_size()];
    let channels = match info.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => return None,
    };
    let mut data = Vec::with_capacity(width as usize * height as usize * 3);
    for y in 0..height as usize {
        let row = &src[y * info.line_size..(y + 1) * info.line_size];
        for x in 0..width as usize {
            let px = &row[x * channels..(x + 1) * channels];
            match channels {
                1 | 2 => data.extend_from_slice(&[px[0], px[0], px[0]]),
                _ => data.extend_from_slice(&px[..3]),
            }
        }
    }
    Some(RgbPixels {
        width,
        height,
        data,
    })
}

/// Reads the canvas size from a WebP's first chunk.
fn webp_size(bytes: &[u8]) -> Option<(u32, u32)> {
    let at = |i: usize| bytes.get(i).copied().map(u32::from);
    match bytes.get(12..16)? {
        b"VP8X" => {
            let w = at(24)? | at(25)? << 8 | at(26)? << 16;
            let h = at(27)? | at(28)? << 8 | at(29)? << 16;
            Some((w + 1, h + 1))
        }
        b"VP8L" => {
            if at(20)? != 0x2f {
                return None;
            }
            let bits = at(21)? | at(22)? << 8 | at(23)? << 16 | at(24)? << 24;
            Some(((bits & 0x3fff) + 1, ((bits >> 14) & 0x3fff) + 1))
        }
        b"VP8 " => {
            if bytes.get(23..26)? != [0x9d, 0x01, 0x2a] {
                return None;
            }
            let w = (at(26)? | at(27)? << 8) & 0x3fff;
            let h = (at(28)? | at(29)? << 8) & 0x3fff;
            Some((w, h))
        }
        _ => None,
    }
}

/// Reads the size from a JPEG's start-of-frame marker.
fn jpeg_size(bytes: &[u8]) -> Option<(u32, u32)> {
    let mut i = 2;
    while i + 9 < bytes.len() {
        if bytes[i] != 0xff {
            i += 1;
            continue;
        }
        let marker = bytes[i + 1];
        let len = usize::from(u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]));
        let is_sof = (0xc0..=0xcf).contains(&marker) && !matches!(marker, 0xc4 | 0xc8 | 0xcc);
        if is_sof {
            let h = u16::from_be_bytes([bytes[i + 5], bytes[i + 6]]);
            let w = u16::from_be_bytes([bytes[i + 7], bytes[i + 8]]);
            return Some((u32::from(w), u32::from(h)));
        }
        i += 2 + len;
    }
    None
}

/// A 64×64 placeholder used as the pre-installed `input/example.png`.
pub(crate) fn example_png() -> Bytes {
    Img::pattern(64, 64, 1, 7)
        .encode_png(0, &[("Software".into(), SOFTWARE_TAG.into())])
        .unwrap_or_default()
}

/// The `Software` text written into every PNG the simulator produces.
pub(crate) const SOFTWARE_TAG: &str = "comfyui-mcp-simulator (placeholder image, not generated)";

fn sample(px: &RgbPixels, u: f64, v: f64) -> [u8; 3] {
    if px.data.is_empty() || px.width == 0 || px.height == 0 {
        return [128, 128, 128];
    }
    let x = ((u * f64::from(px.width - 1)).round() as usize).min(px.width as usize - 1);
    let y = ((v * f64::from(px.height - 1)).round() as usize).min(px.height as usize - 1);
    let i = (y * px.width as usize + x) * 3;
    [px.data[i], px.data[i + 1], px.data[i + 2]]
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn gradient(seed: u64, b: u32, u: f64, v: f64) -> [u8; 3] {
    let base = splitmix(seed ^ (u64::from(b) << 48) ^ 0x5eed);
    let corner = |k: u64| -> [f64; 3] {
        let h = splitmix(base.wrapping_add(k));
        [
            (h & 0xff) as f64,
            ((h >> 8) & 0xff) as f64,
            ((h >> 16) & 0xff) as f64,
        ]
    };
    let (c00, c10, c01, c11) = (corner(1), corner(2), corner(3), corner(4));
    let mut out = [0u8; 3];
    for (i, o) in out.iter_mut().enumerate() {
        let top = c00[i] * (1.0 - u) + c10[i] * u;
        let bottom = c01[i] * (1.0 - u) + c11[i] * u;
        *o = (top * (1.0 - v) + bottom * v).round().clamp(0.0, 255.0) as u8;
    }
    out
}

/// PyTorch print options used by ComfyUI's error messages (the defaults).
const EDGE_ITEMS: usize = 3;
const THRESHOLD: usize = 1000;
const LINE_WIDTH: usize = 80;
const PRECISION: usize = 4;

/// `repr(tensor)` of a float32 CPU tensor of `shape` whose elements are given by `value`,
/// with PyTorch's default summarisation (more than 1000 elements: 3 edge items per dim).
pub(crate) fn tensor_repr(shape: &[usize], value: impl Fn(&[usize]) -> f64) -> String {
    let numel: usize = shape.iter().product();
    let summarize = numel > THRESHOLD;
    // The formatter's width is computed over the elements that will be shown.
    let mut shown = Vec::new();
    collect_shown(shape, &mut Vec::new(), summarize, &value, &mut shown);
    let fmt = FloatFormat::new(&shown);
    let body = format_dim(shape, &mut Vec::new(), 7, summarize, &value, &fmt);
    format!("tensor({body})")
}

fn dim_indices(len: usize, summarize: bool) -> Vec<Option<usize>> {
    if summarize && len > 2 * EDGE_ITEMS {
        (0..EDGE_ITEMS)
            .map(Some)
            .chain(std::iter::once(None))
            .chain((len - EDGE_ITEMS..len).map(Some))
            .collect()
    } else {
        (0..len).map(Some).collect()
    }
}

fn collect_shown(
    shape: &[usize],
    prefix: &mut Vec<usize>,
    summarize: bool,
    value: &impl Fn(&[usize]) -> f64,
    out: &mut Vec<f64>,
) {
    let Some((&len, rest)) = shape.split_first() else {
        out.push(value(prefix));
        return;
    };
    for i in dim_indices(len, summarize).into_iter().flatten() {
        prefix.push(i);
        collect_shown(rest, prefix, summarize, value, out);
        prefix.pop();
    }
}

fn format_dim(
    shape: &[usize],
    prefix: &mut Vec<usize>,
    indent: usize,
    summarize: bool,
    value: &impl Fn(&[usize]) -> f64,
    fmt: &FloatFormat,
) -> String {
    let (&len, rest) = shape.split_first().unwrap_or((&0, &[]));
    if rest.is_empty() {
        let items: Vec<String> = dim_indices(len, summarize)
            .into_iter()
            .map(|i| match i {
                Some(i) => {
                    prefix.push(i);
                    let s = fmt.format(value(prefix));
                    prefix.pop();
                    s
                }
                None => " ...".to_string(),
            })
            .collect();
        let per_line = ((LINE_WIDTH.saturating_sub(indent)) / (fmt.width + 2)).max(1);
        let lines: Vec<String> = items.chunks(per_line).map(|c| c.join(", ")).collect();
        return format!(
            "[{}]",
            lines.join(&format!(",\n{}", " ".repeat(indent + 1)))
        );
    }
    let slices: Vec<String> = dim_indices(len, summarize)
        .into_iter()
        .map(|i| match i {
            Some(i) => {
                prefix.push(i);
                let s = format_dim(rest, prefix, indent + 1, summarize, value, fmt);
                prefix.pop();
                s
            }
            None => "...".to_string(),
        })
        .collect();
    let sep = format!(
        ",{}{}",
        "\n".repeat(shape.len() - 1),
        " ".repeat(indent + 1)
    );
    format!("[{}]", slices.join(&sep))
}

/// PyTorch's float element formatter (integer mode `1.` or fixed `0.4824`).
struct FloatFormat {
    int_mode: bool,
    width: usize,
}

impl FloatFormat {
    fn new(values: &[f64]) -> Self {
        let nonzero: Vec<f64> = values
            .iter()
            .copied()
            .filter(|v| v.is_finite() && *v != 0.0)
            .collect();
        if nonzero.is_empty() {
            return Self {
                int_mode: true,
                width: 1,
            };
        }
        let int_mode = nonzero.iter().all(|v| v.fract() == 0.0);
        let width = nonzero
            .iter()
            .map(|v| {
                if int_mode {
                    format!("{v:.0}").len() + 1
                } else {
                    format!("{v:.PRECISION$}").len()
                }
            })
            .max()
            .unwrap_or(1);
        Self { int_mode, width }
    }

    fn format(&self, v: f64) -> String {
        let s = if self.int_mode {
            format!("{v:.0}.")
        } else {
            format!("{v:.PRECISION$}")
        };
        format!("{s:>width$}", width = self.width)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn webp_sizes_come_from_their_headers() {
        let img = image::DynamicImage::ImageRgba8(image::RgbaImage::new(37, 21));
        let mut lossless = Vec::new();
        img.write_to(
            &mut std::io::Cursor::new(&mut lossless),
            image::ImageFormat::WebP,
        )
        .unwrap();
        assert_eq!(webp_size(&lossless), Some((37, 21)));
        let decoded = decode(&lossless).unwrap();
        assert_eq!((decoded.width, decoded.height), (37, 21));
        // An extended (VP8X) header: canvas 300x200, stored minus one, 24-bit little endian.
        let mut extended = b"RIFF\0\0\0\0WEBPVP8X\x0a\0\0\0\x10\0\0\0".to_vec();
        extended.extend_from_slice(&[43, 1, 0, 199, 0, 0]);
        assert_eq!(webp_size(&extended), Some((300, 200)));
        assert_eq!(webp_size(b"RIFF\0\0\0\0WEBPJUNK"), None);
    }

    use super::*;

    #[test]
    fn tensor_repr_matches_the_recorded_error() {
        // ws_execution_error.jsonl: EmptyImage 64x64 colour 123, printed by ImageToMask.
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/transcripts/ws_execution_error.jsonl"
        );
        let text = std::fs::read_to_string(path).expect("transcript present");
        let recorded = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["msg"]["type"] == "execution_error")
            .expect("execution_error frame");
        let expected = recorded["msg"]["data"]["current_inputs"]["image"][0]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            Img::solid(64, 64, 1, [0, 0, 123]).image_tensor_repr(),
            expected
        );
    }

    #[test]
    fn small_and_integer_tensors() {
        assert_eq!(tensor_repr(&[2], |_| 0.0), "tensor([0., 0.])");
        assert_eq!(
            tensor_repr(&[2, 2], |i| (i[0] + i[1]) as f64),
            "tensor([[0., 1.],\n        [1., 2.]])"
        );
        let long = tensor_repr(&[12], |i| i[0] as f64 / 10.0);
        assert!(long.contains(",\n        "), "{long}");
    }

    #[test]
    fn png_roundtrip_and_determinism() {
        let img = Img::pattern(10, 7, 2, 42);
        let a = img.encode_png(1, &[]).unwrap();
        let b = img.encode_png(1, &[]).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, img.encode_png(0, &[]).unwrap());
        let px = decode(&a).unwrap();
        assert_eq!((px.width, px.height), (10, 7));
        assert_eq!(px.data[..3], img.pixel(1, 0, 0));
        let inverted = Img::solid(2, 2, 1, [10, 20, 30]).with_op(Op::Invert);
        assert_eq!(inverted.pixel(0, 1, 1), [245, 235, 225]);
        assert!(decode(b"not an image").is_err());
    }
}
