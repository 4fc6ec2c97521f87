//! Pure image post-processors of the game-assets pack, independent of the WIT bindings
//! so they run (and are unit-tested and benchmarked) on the native target; the pack
//! (`plugins/game-assets`) calls them from its `postprocessor` export.
//!
//! - [`palette`]: median-cut colour quantization (pixel-art `palette_colors`);
//! - [`seamless`]: four-copy half-offset blend making a texture tile, and the
//!   [`seamless::seam_ratio`] metric that measures it;
//! - [`background`]: border flood fill making an icon's plain background transparent.
//!
//! Invariants shared by every processor: deterministic (integer maths, except a few
//! per-row/column weights computed once in `f64`, which is IEEE-exact everywhere), no
//! panics on any valid [`RgbaImage`] (1x1 and 1xN included), memory O(pixels): each holds
//! at most a few buffers of one `u32`/`u8` per pixel besides the output image.

pub mod background;
pub mod palette;
pub mod seamless;

use std::fmt;

/// 8-bit RGBA pixels, row-major, no padding: `pixels.len() == width * height * 4`,
/// `width >= 1`, `height >= 1` (checked by [`RgbaImage::new`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbaImage {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
}

/// Why a buffer is not an [`RgbaImage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageError {
    /// Width or height is 0.
    Empty { width: u32, height: u32 },
    /// The buffer does not hold exactly `width * height * 4` bytes.
    WrongLength {
        width: u32,
        height: u32,
        expected: u128,
        actual: usize,
    },
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageError::Empty { width, height } => {
                write!(
                    f,
                    "image is {width}x{height}; both sides must be at least 1"
                )
            }
            ImageError::WrongLength {
                width,
                height,
                expected,
                actual,
            } => write!(
                f,
                "a {width}x{height} RGBA image needs {expected} bytes, got {actual}"
            ),
        }
    }
}

impl RgbaImage {
    /// Wraps `pixels` after checking the size invariant.
    pub fn new(width: u32, height: u32, pixels: Vec<u8>) -> Result<Self, ImageError> {
        if width == 0 || height == 0 {
            return Err(ImageError::Empty { width, height });
        }
        let expected = u128::from(width) * u128::from(height) * 4;
        if u128::try_from(pixels.len()).ok() != Some(expected) {
            return Err(ImageError::WrongLength {
                width,
                height,
                expected,
                actual: pixels.len(),
            });
        }
        Ok(Self {
            width,
            height,
            pixels,
        })
    }

    /// An image of one colour (test and bench helper).
    pub fn filled(width: u32, height: u32, rgba: [u8; 4]) -> Self {
        let (w, h) = (width.max(1), height.max(1));
        let n = w as usize * h as usize;
        Self {
            width: w,
            height: h,
            pixels: rgba.iter().copied().cycle().take(n * 4).collect(),
        }
    }

    /// An image whose pixel `(x, y)` is `f(x, y)` (test and bench helper).
    pub fn from_fn(width: u32, height: u32, mut f: impl FnMut(u32, u32) -> [u8; 4]) -> Self {
        let (w, h) = (width.max(1), height.max(1));
        let mut pixels = Vec::with_capacity(w as usize * h as usize * 4);
        for y in 0..h {
            for x in 0..w {
                pixels.extend_from_slice(&f(x, y));
            }
        }
        Self {
            width: w,
            height: h,
            pixels,
        }
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The raw RGBA bytes.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// Gives the raw RGBA bytes back.
    pub fn into_pixels(self) -> Vec<u8> {
        self.pixels
    }

    /// Number of pixels.
    pub fn len(&self) -> usize {
        self.width as usize * self.height as usize
    }

    /// Always false (an image has at least one pixel); here for clippy's `len` rule.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Pixel `(x, y)`; callers keep `x < width`, `y < height`.
    pub fn get(&self, x: u32, y: u32) -> [u8; 4] {
        let i = (y as usize * self.width as usize + x as usize) * 4;
        [
            self.pixels[i],
            self.pixels[i + 1],
            self.pixels[i + 2],
            self.pixels[i + 3],
        ]
    }

    /// Number of distinct RGBA colours.
    pub fn distinct_colours(&self) -> usize {
        let mut packed: Vec<u32> = self
            .pixels
            .chunks_exact(4)
            .map(|p| u32::from_be_bytes([p[0], p[1], p[2], p[3]]))
            .collect();
        packed.sort_unstable();
        packed.dedup();
        packed.len()
    }
}

/// Deterministic test/bench inputs: smooth value noise (bilinear interpolation of a
/// random lattice, like the blotchy output of a random-weight checkpoint), white noise
/// and four-corner gradients (like the simulator's sampler output).
pub mod synth {
    use super::RgbaImage;

    /// SplitMix64 step: a well-mixed 64-bit hash of `z`.
    pub fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Independent random RGB per pixel, opaque.
    pub fn white_noise(width: u32, height: u32, seed: u64) -> RgbaImage {
        RgbaImage::from_fn(width, height, |x, y| {
            let h = mix(seed ^ (u64::from(y) << 32 | u64::from(x)));
            [h as u8, (h >> 8) as u8, (h >> 16) as u8, 255]
        })
    }

    /// Value noise with lattice spacing `cell` pixels, opaque; not tileable.
    pub fn value_noise(width: u32, height: u32, cell: u32, seed: u64) -> RgbaImage {
        let cell = cell.max(1);
        let lattice = |gx: u32, gy: u32, c: u32| -> f64 {
            let h = mix(seed ^ (u64::from(gy) << 40) ^ (u64::from(gx) << 8) ^ u64::from(c));
            (h & 0xff) as f64
        };
        RgbaImage::from_fn(width, height, |x, y| {
            let (gx, gy) = (x / cell, y / cell);
            let u = f64::from(x % cell) / f64::from(cell);
            let v = f64::from(y % cell) / f64::from(cell);
            let mut out = [255u8; 4];
            for (c, o) in out.iter_mut().take(3).enumerate() {
                let c = c as u32;
                let top = lattice(gx, gy, c) * (1.0 - u) + lattice(gx + 1, gy, c) * u;
                let bottom = lattice(gx, gy + 1, c) * (1.0 - u) + lattice(gx + 1, gy + 1, c) * u;
                *o = (top * (1.0 - v) + bottom * v).round() as u8;
            }
            out
        })
    }

    /// Value noise that tiles by construction (the lattice wraps around): a genuinely
    /// seamless texture, the reference for what a seam ratio of a tileable image is.
    /// `width` and `height` should be multiples of `cell`.
    pub fn tileable_noise(width: u32, height: u32, cell: u32, seed: u64) -> RgbaImage {
        let cell = cell.max(1);
        let (gw, gh) = (width.div_ceil(cell).max(1), height.div_ceil(cell).max(1));
        let lattice = |gx: u32, gy: u32, c: u32| -> f64 {
            let (gx, gy) = (gx % gw, gy % gh);
            let h = mix(seed ^ (u64::from(gy) << 40) ^ (u64::from(gx) << 8) ^ u64::from(c));
            (h & 0xff) as f64
        };
        RgbaImage::from_fn(width, height, |x, y| {
            let (gx, gy) = (x / cell, y / cell);
            let u = f64::from(x % cell) / f64::from(cell);
            let v = f64::from(y % cell) / f64::from(cell);
            let mut out = [255u8; 4];
            for (c, o) in out.iter_mut().take(3).enumerate() {
                let c = c as u32;
                let top = lattice(gx, gy, c) * (1.0 - u) + lattice(gx + 1, gy, c) * u;
                let bottom = lattice(gx, gy + 1, c) * (1.0 - u) + lattice(gx + 1, gy + 1, c) * u;
                *o = (top * (1.0 - v) + bottom * v).round() as u8;
            }
            out
        })
    }

    /// A bilinear gradient between four corner colours, opaque.
    pub fn gradient(width: u32, height: u32, corners: [[u8; 3]; 4]) -> RgbaImage {
        let (wd, hd) = (f64::from(width.max(2) - 1), f64::from(height.max(2) - 1));
        RgbaImage::from_fn(width, height, |x, y| {
            let (u, v) = (f64::from(x) / wd, f64::from(y) / hd);
            let mut out = [255u8; 4];
            for (c, o) in out.iter_mut().take(3).enumerate() {
                let top = f64::from(corners[0][c]) * (1.0 - u) + f64::from(corners[1][c]) * u;
                let bottom = f64::from(corners[2][c]) * (1.0 - u) + f64::from(corners[3][c]) * u;
                *o = (top * (1.0 - v) + bottom * v).round() as u8;
            }
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_checks_the_size_invariant() {
        assert!(RgbaImage::new(1, 1, vec![0; 4]).is_ok());
        assert_eq!(
            RgbaImage::new(0, 3, vec![]),
            Err(ImageError::Empty {
                width: 0,
                height: 3
            })
        );
        let err = RgbaImage::new(2, 2, vec![0; 15]).expect_err("short");
        assert_eq!(err.to_string(), "a 2x2 RGBA image needs 16 bytes, got 15");
        // No overflow on the largest sizes.
        assert!(RgbaImage::new(u32::MAX, u32::MAX, vec![]).is_err());
    }

    #[test]
    fn distinct_colours_counts_rgba() {
        let img = RgbaImage::from_fn(4, 1, |x, _| [1, 2, 3, if x < 2 { 255 } else { 0 }]);
        assert_eq!(img.distinct_colours(), 2);
        assert_eq!(RgbaImage::filled(3, 3, [9, 9, 9, 9]).distinct_colours(), 1);
    }
}
