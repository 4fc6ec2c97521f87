//! The image that crosses from the job pipeline into a pack's sandbox and back, and what a
//! post-processor reports: one definition for both sides (`comfyui`, which knows no packs,
//! and `pack_runtime`, which knows no ComfyUI), so the pixels move between them without a
//! conversion or a copy.
//!
//! Invariant, enforced by [`check_image`] in this one place: an image handed to a
//! post-processor or returned by one has `width, height >= 1`, at most the post-processing
//! pixel cap (`COMFYUI_MCP_POSTPROCESS_MAX_PIXELS`), and exactly `width * height * 4` bytes
//! of RGBA8 (row-major, no padding).

use serde::{Deserialize, Serialize};

/// A decoded image: 8-bit RGBA, row-major, no padding.
#[derive(Clone, PartialEq, Eq)]
pub struct RgbaImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height` pixels of four bytes: red, green, blue, alpha.
    pub pixels: Vec<u8>,
}

impl std::fmt::Debug for RgbaImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RgbaImage")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("pixel_bytes", &self.pixels.len())
            .finish()
    }
}

/// One step a post-processor applied, recorded per image in the job's snapshot and
/// provenance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostprocessStep {
    /// Short stable name, e.g. `palette`.
    pub name: String,
    /// What it did, for humans.
    pub detail: String,
}

/// What a post-processor returned: the image to deliver and the steps applied, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Postprocessed {
    /// The image to deliver instead of ComfyUI's (may differ in size, within the cap).
    pub image: RgbaImage,
    /// The steps applied, in order.
    pub steps: Vec<PostprocessStep>,
}

/// Why an image cannot be handed to or accepted from a post-processor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageFault {
    /// A zero width or height.
    #[error("{width}x{height} has no pixels (width and height must be at least 1)")]
    Empty {
        /// Width claimed.
        width: u32,
        /// Height claimed.
        height: u32,
    },
    /// More pixels than the post-processing budget.
    #[error(
        "{width}x{height} is {pixels} pixels, over the limit of {limit} pixels; raise it with COMFYUI_MCP_POSTPROCESS_MAX_PIXELS"
    )]
    TooManyPixels {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// `width * height`.
        pixels: u64,
        /// The cap in force.
        limit: u64,
    },
    /// A pixel buffer whose length is not `width * height * 4`.
    #[error(
        "{width}x{height} comes with {got} bytes of pixels, expected exactly {expected} (width * height * 4, RGBA8)"
    )]
    BufferSize {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// `width * height * 4`.
        expected: u64,
        /// The buffer's length.
        got: usize,
    },
}

/// Checks `image` against the invariant above, with `max_pixels` as the (inclusive) cap.
pub fn check_image(image: &RgbaImage, max_pixels: u64) -> Result<(), ImageFault> {
    let (width, height) = (image.width, image.height);
    if width == 0 || height == 0 {
        return Err(ImageFault::Empty { width, height });
    }
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(ImageFault::TooManyPixels {
            width,
            height,
            pixels,
            limit: max_pixels,
        });
    }
    let expected = pixels.saturating_mul(4);
    if image.pixels.len() as u64 != expected {
        return Err(ImageFault::BufferSize {
            width,
            height,
            expected,
            got: image.pixels.len(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(width: u32, height: u32, bytes: usize) -> RgbaImage {
        RgbaImage {
            width,
            height,
            pixels: vec![0; bytes],
        }
    }

    #[test]
    fn each_fault_is_named_and_the_cap_is_inclusive() {
        assert_eq!(check_image(&image(4, 4, 64), 16), Ok(()));
        assert!(matches!(
            check_image(&image(4, 4, 64), 15),
            Err(ImageFault::TooManyPixels {
                pixels: 16,
                limit: 15,
                ..
            })
        ));
        assert!(matches!(
            check_image(&image(0, 4, 0), 16),
            Err(ImageFault::Empty { .. })
        ));
        assert!(matches!(
            check_image(&image(4, 4, 63), 16),
            Err(ImageFault::BufferSize {
                expected: 64,
                got: 63,
                ..
            })
        ));
        // No overflow on the largest claim.
        assert!(matches!(
            check_image(&image(u32::MAX, u32::MAX, 0), u64::MAX),
            Err(ImageFault::BufferSize { .. })
        ));
    }
}
