//! Masks: whatever image a client sends as a mask becomes one 8-bit grey PNG, white where the
//! template should repaint, which the pack loads with `LoadImageMask` (channel `red`).
//!
//! Rule: when the image has an alpha channel that is not fully opaque everywhere, the mask
//! is its alpha (opaque = repaint: a region painted on a transparent layer); otherwise it is
//! the luminance (white = repaint: a black-and-white mask). The upload is a new file with no
//! metadata, already in display orientation, so ComfyUI reads exactly these pixels.

use std::io::Cursor;

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{DynamicImage, GrayImage, ImageEncoder};

/// The mask's grey levels (255 = repaint) from a decoded image.
pub fn mask_levels(image: &DynamicImage) -> GrayImage {
    if image.color().has_alpha() {
        let rgba = image.to_rgba8();
        if rgba.pixels().any(|p| p.0[3] != 255) {
            return GrayImage::from_fn(rgba.width(), rgba.height(), |x, y| {
                image::Luma([rgba.get_pixel(x, y).0[3]])
            });
        }
    }
    image.to_luma8()
}

/// The mask as an 8-bit grey PNG.
pub fn mask_png(image: &DynamicImage) -> Result<Vec<u8>, image::ImageError> {
    let levels = mask_levels(image);
    let mut out = Vec::new();
    PngEncoder::new_with_quality(
        Cursor::new(&mut out),
        CompressionType::Fast,
        FilterType::Adaptive,
    )
    .write_image(
        levels.as_raw(),
        levels.width(),
        levels.height(),
        image::ExtendedColorType::L8,
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpha_wins_when_it_varies_and_luminance_otherwise() {
        let layer = image::RgbaImage::from_fn(4, 1, |x, _| {
            image::Rgba([0, 0, 0, if x < 2 { 255 } else { 0 }])
        });
        let levels = mask_levels(&DynamicImage::ImageRgba8(layer));
        assert_eq!(levels.as_raw(), &[255, 255, 0, 0]);

        let opaque = image::RgbaImage::from_fn(2, 1, |x, _| {
            let v = if x == 0 { 255 } else { 0 };
            image::Rgba([v, v, v, 255])
        });
        assert_eq!(
            mask_levels(&DynamicImage::ImageRgba8(opaque)).as_raw(),
            &[255, 0]
        );
    }

    #[test]
    fn the_upload_is_an_8_bit_grey_png_of_the_same_size() {
        let img = DynamicImage::ImageRgb8(image::RgbImage::new(5, 3));
        let png = mask_png(&img).unwrap();
        let back = image::load_from_memory(&png).unwrap();
        assert_eq!((back.width(), back.height()), (5, 3));
        assert_eq!(back.color(), image::ColorType::L8);
    }
}
