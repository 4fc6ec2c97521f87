//! PNG ⇄ RGBA8 for the post-processing stage. Pure and synchronous (callers run it on the
//! blocking pool).
//!
//! Decoding expands every PNG colour type to RGBA8: palette (with `tRNS` transparency),
//! grayscale and grayscale+alpha at any bit depth, RGB and RGBA at 8 or 16 bits (16-bit
//! samples keep their high byte). The pixel count is read from the header and checked against
//! the cap *before* any pixel is decoded, and the decoder's allocation limit is derived from the
//! same cap, so a hostile header cannot make it allocate more.
//!
//! Encoding writes RGBA when any pixel is not fully opaque and RGB otherwise, 8-bit, no
//! ancillary chunks (ComfyUI's embedded workflow text is not carried over: `provenance.json`
//! records the job), with [`png::Compression::Fast`] (fdeflate) and adaptive filtering.

use std::io::Cursor;

use super::RgbaImage;

/// Why a PNG could not be turned into RGBA pixels.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Header or data unreadable.
    #[error("not a readable PNG: {0}")]
    Png(#[from] png::DecodingError),
    /// The header announces more pixels than the cap.
    #[error(
        "it is {width}x{height} = {pixels} pixels, more than the post-processing limit of {limit} pixels (COMFYUI_MCP_POSTPROCESS_MAX_PIXELS)"
    )]
    TooManyPixels {
        /// Width from the header.
        width: u32,
        /// Height from the header.
        height: u32,
        /// `width * height`.
        pixels: u64,
        /// The cap.
        limit: u64,
    },
    /// A colour layout the expansion does not produce (should not happen).
    #[error("unsupported PNG layout {color:?} at {depth:?}")]
    Layout {
        /// Colour type after expansion.
        color: png::ColorType,
        /// Bit depth after expansion.
        depth: png::BitDepth,
    },
}

/// Decodes `bytes` (a PNG) into RGBA8, refusing images above `max_pixels` before decoding.
pub fn decode_rgba(bytes: &[u8], max_pixels: u64) -> Result<RgbaImage, DecodeError> {
    // The largest buffer the decoder needs for an image within the cap is 16-bit RGBA before
    // stripping (8 bytes per pixel) plus a row; allow that and no more.
    let budget = max_pixels.saturating_mul(8).saturating_add(1 << 20);
    let limits = png::Limits {
        bytes: usize::try_from(budget).unwrap_or(usize::MAX),
    };
    let mut decoder = png::Decoder::new_with_limits(Cursor::new(bytes), limits);
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let header = decoder.read_header_info()?;
    let (width, height) = (header.width, header.height);
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(DecodeError::TooManyPixels {
            width,
            height,
            pixels,
            limit: max_pixels,
        });
    }
    let mut reader = decoder.read_info()?;
    let size = reader
        .output_buffer_size()
        .ok_or(png::DecodingError::LimitsExceeded)?;
    let mut buf = vec![0u8; size];
    let frame = reader.next_frame(&mut buf)?;
    buf.truncate(frame.buffer_size());
    let rgba = expand(
        &buf,
        frame.color_type,
        frame.bit_depth,
        frame.line_size,
        width,
        height,
    )?;
    Ok(RgbaImage {
        width,
        height,
        pixels: rgba,
    })
}

/// Widens decoded 8-bit rows of `color` to tightly packed RGBA.
fn expand(
    buf: &[u8],
    color: png::ColorType,
    depth: png::BitDepth,
    line_size: usize,
    width: u32,
    height: u32,
) -> Result<Vec<u8>, DecodeError> {
    use png::ColorType::*;
    let channels = match (color, depth) {
        (Grayscale, png::BitDepth::Eight) => 1,
        (GrayscaleAlpha, png::BitDepth::Eight) => 2,
        (Rgb, png::BitDepth::Eight) => 3,
        (Rgba, png::BitDepth::Eight) => 4,
        _ => return Err(DecodeError::Layout { color, depth }),
    };
    let (w, h) = (width as usize, height as usize);
    let mut out = Vec::with_capacity(w * h * 4);
    for row in buf.chunks(line_size).take(h) {
        let row = &row[..w * channels];
        match channels {
            4 => out.extend_from_slice(row),
            3 => row
                .chunks_exact(3)
                .for_each(|p| out.extend_from_slice(&[p[0], p[1], p[2], 255])),
            2 => row
                .chunks_exact(2)
                .for_each(|p| out.extend_from_slice(&[p[0], p[0], p[0], p[1]])),
            _ => row
                .iter()
                .for_each(|&g| out.extend_from_slice(&[g, g, g, 255])),
        }
    }
    Ok(out)
}

/// Why pixels could not be encoded.
#[derive(Debug, thiserror::Error)]
#[error("PNG encoding failed: {0}")]
pub struct EncodeError(#[from] png::EncodingError);

/// Whether every pixel of `image` is fully opaque.
pub fn is_opaque(image: &RgbaImage) -> bool {
    image.pixels.chunks_exact(4).all(|p| p[3] == 255)
}

/// Encodes `image` (already checked: `pixels.len() == width * height * 4`) as PNG: RGB when
/// it is fully opaque, RGBA otherwise.
pub fn encode_png(image: &RgbaImage) -> Result<Vec<u8>, EncodeError> {
    let opaque = is_opaque(image);
    let mut out = Vec::with_capacity(image.pixels.len() / 4 + 1024);
    {
        let mut encoder = png::Encoder::new(&mut out, image.width, image.height);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::Fast);
        encoder.set_color(if opaque {
            png::ColorType::Rgb
        } else {
            png::ColorType::Rgba
        });
        let mut writer = encoder.write_header()?;
        if opaque {
            let rgb: Vec<u8> = image
                .pixels
                .chunks_exact(4)
                .flat_map(|p| [p[0], p[1], p[2]])
                .collect();
            writer.write_image_data(&rgb)?;
        } else {
            writer.write_image_data(&image.pixels)?;
        }
        writer.finish()?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_of(
        width: u32,
        height: u32,
        color: png::ColorType,
        depth: png::BitDepth,
        data: &[u8],
        setup: impl FnOnce(&mut png::Encoder<'_, &mut Vec<u8>>),
    ) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, width, height);
            enc.set_color(color);
            enc.set_depth(depth);
            setup(&mut enc);
            let mut w = enc.write_header().unwrap();
            w.write_image_data(data).unwrap();
        }
        out
    }

    fn plain(
        width: u32,
        height: u32,
        color: png::ColorType,
        depth: png::BitDepth,
        data: &[u8],
    ) -> Vec<u8> {
        png_of(width, height, color, depth, data, |_| {})
    }

    const CAP: u64 = DEFAULT_CAP;
    const DEFAULT_CAP: u64 = super::super::DEFAULT_MAX_PIXELS;

    #[test]
    fn every_colour_type_expands_to_rgba8() {
        use png::BitDepth::*;
        use png::ColorType::*;
        let gray = plain(2, 1, Grayscale, Eight, &[10, 200]);
        assert_eq!(
            decode_rgba(&gray, CAP).unwrap().pixels,
            [10, 10, 10, 255, 200, 200, 200, 255]
        );
        let gray_alpha = plain(1, 1, GrayscaleAlpha, Eight, &[7, 128]);
        assert_eq!(
            decode_rgba(&gray_alpha, CAP).unwrap().pixels,
            [7, 7, 7, 128]
        );
        let rgb = plain(1, 2, Rgb, Eight, &[1, 2, 3, 4, 5, 6]);
        assert_eq!(
            decode_rgba(&rgb, CAP).unwrap().pixels,
            [1, 2, 3, 255, 4, 5, 6, 255]
        );
        let rgba = plain(1, 1, Rgba, Eight, &[9, 8, 7, 6]);
        assert_eq!(decode_rgba(&rgba, CAP).unwrap().pixels, [9, 8, 7, 6]);
        // 16-bit: big-endian samples, the high byte is kept.
        let rgb16 = plain(1, 1, Rgb, Sixteen, &[0xAB, 0x01, 0xCD, 0x02, 0xEF, 0x03]);
        assert_eq!(
            decode_rgba(&rgb16, CAP).unwrap().pixels,
            [0xAB, 0xCD, 0xEF, 255]
        );
        let ga16 = plain(1, 1, GrayscaleAlpha, Sixteen, &[0x80, 0, 0x40, 0xFF]);
        assert_eq!(
            decode_rgba(&ga16, CAP).unwrap().pixels,
            [0x80, 0x80, 0x80, 0x40]
        );
        // 1-bit grayscale: bits scaled to 0 / 255, rows padded to a byte.
        let bits = plain(3, 1, Grayscale, One, &[0b1010_0000]);
        assert_eq!(
            decode_rgba(&bits, CAP).unwrap().pixels,
            [255, 255, 255, 255, 0, 0, 0, 255, 255, 255, 255, 255]
        );
    }

    #[test]
    fn palette_with_transparency_expands() {
        let png = png_of(
            2,
            1,
            png::ColorType::Indexed,
            png::BitDepth::Eight,
            &[0, 1],
            |enc| {
                enc.set_palette(vec![255, 0, 0, 0, 0, 255]);
                enc.set_trns(vec![0]);
            },
        );
        let img = decode_rgba(&png, CAP).unwrap();
        assert_eq!(img.pixels, [255, 0, 0, 0, 0, 0, 255, 255]);
    }

    #[test]
    fn the_pixel_cap_is_checked_on_the_header() {
        let rgb = plain(4, 4, png::ColorType::Rgb, png::BitDepth::Eight, &[0; 48]);
        assert_eq!(decode_rgba(&rgb, 16).unwrap().pixels.len(), 64);
        let err = decode_rgba(&rgb, 15).unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::TooManyPixels {
                    width: 4,
                    height: 4,
                    pixels: 16,
                    limit: 15
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("COMFYUI_MCP_POSTPROCESS_MAX_PIXELS"),
            "{err}"
        );
    }

    #[test]
    fn a_bomb_header_is_refused_without_decoding() {
        // A 100000 x 100000 header followed by a tiny IDAT: refused from the header alone.
        let mut png = plain(1, 1, png::ColorType::Rgb, png::BitDepth::Eight, &[0; 3]);
        // IHDR data starts at byte 16: width, height (big endian); fix the CRC after.
        png[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        png[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let crc = crc32(&png[12..29]);
        png[29..33].copy_from_slice(&crc.to_be_bytes());
        let err = decode_rgba(&png, CAP).unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::TooManyPixels {
                    pixels: 10_000_000_000,
                    ..
                }
            ),
            "{err}"
        );
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn garbage_and_truncation_are_decode_errors() {
        assert!(matches!(
            decode_rgba(b"<html>", CAP),
            Err(DecodeError::Png(_))
        ));
        let rgb = plain(8, 8, png::ColorType::Rgb, png::BitDepth::Eight, &[3; 192]);
        let cut = &rgb[..rgb.len() - 20];
        assert!(matches!(decode_rgba(cut, CAP), Err(DecodeError::Png(_))));
    }

    #[test]
    fn opaque_images_encode_as_rgb_and_translucent_ones_as_rgba() {
        let opaque = RgbaImage {
            width: 2,
            height: 1,
            pixels: vec![1, 2, 3, 255, 4, 5, 6, 255],
        };
        let translucent = RgbaImage {
            width: 2,
            height: 1,
            pixels: vec![1, 2, 3, 255, 4, 5, 6, 254],
        };
        for (image, want) in [
            (&opaque, png::ColorType::Rgb),
            (&translucent, png::ColorType::Rgba),
        ] {
            let bytes = encode_png(image).unwrap();
            let reader = png::Decoder::new(Cursor::new(&bytes)).read_info().unwrap();
            assert_eq!(reader.info().color_type, want);
            assert_eq!(reader.info().bit_depth, png::BitDepth::Eight);
            assert!(
                reader.info().uncompressed_latin1_text.is_empty()
                    && reader.info().compressed_latin1_text.is_empty()
                    && reader.info().utf8_text.is_empty(),
                "no text chunks"
            );
            assert_eq!(&decode_rgba(&bytes, CAP).unwrap(), image, "round trip");
        }
    }
}
