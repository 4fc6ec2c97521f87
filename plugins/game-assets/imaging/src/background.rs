//! Makes an icon's plain background transparent (`item-icon`'s `transparent_background`).
//!
//! Rules, in order (all integer, deterministic; the image is changed in place and the
//! fill holds one state byte and at most one stacked `u32` per pixel: at most 24 MiB
//! besides the image at 2048x2048):
//! 1. Images with a side under 3 pixels have no interior to separate from a border: they
//!    are returned unchanged ([`remove_background`] gives `None`).
//! 2. Background colour `B`: the per-channel median RGB of the 1-pixel border ring.
//! 3. Tolerance `T` (Chebyshev RGB distance): twice the median distance of the ring's
//!    pixels from `B`, plus 16, capped to 16..=96. A flat background gets 16 (room for
//!    compression noise); a busy border a wider one.
//! 4. Flood fill (4-connected) from every ring pixel through pixels within `T` of `B`.
//!    The ring itself is always background: icons are centred with a margin.
//! 5. Leak guard: when the fill leaves fewer than 1/16 of the pixels opaque, the
//!    background could not be told from the subject by colour (noise, or an item the
//!    colour of its background): the fill is redone with `T` halved (at most three
//!    times, not below 4), and if it still leaks, the central rectangle (the middle half
//!    of each side) is kept opaque whatever the fill says, so the item is never erased.
//! 6. Background pixels get alpha 0 (colour kept). Subject pixels 4-adjacent to the
//!    background get a soft edge: alpha `255 * d / (2T)` clamped to 128..=255, where `d`
//!    is their distance from `B`. All other pixels keep their alpha.

use super::RgbaImage;

/// Smallest and largest flood-fill tolerance (Chebyshev RGB distance).
pub const MIN_TOLERANCE: u32 = 16;
/// See [`MIN_TOLERANCE`].
pub const MAX_TOLERANCE: u32 = 96;

/// Fewest opaque pixels a fill may leave, as a fraction `1 / LEAK_DIVISOR` of the image.
const LEAK_DIVISOR: usize = 16;

/// How many times the tolerance is halved before the centre is forced opaque.
const RETRIES: u32 = 3;

/// What [`remove_background`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cutout {
    /// Estimated background colour.
    pub background: [u8; 3],
    /// Tolerance of the fill that was kept.
    pub tolerance: u32,
    /// Pixels made fully transparent.
    pub cleared: usize,
    /// Whether the leak guard had to keep the centre opaque.
    pub centre_kept: bool,
}

/// Pixel states during the fill.
const SUBJECT: u8 = 0;
const BACKGROUND: u8 = 1;

/// Cuts `img` out in place; the report is `None` (and the image untouched) for images
/// without an interior (a side under 3 px).
pub fn remove_background(img: RgbaImage) -> (RgbaImage, Option<Cutout>) {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w < 3 || h < 3 {
        return (img, None);
    }
    let (width, height) = (img.width(), img.height());
    let mut pixels = img.into_pixels();
    let cut = cut_out(&mut pixels, w, h);
    match RgbaImage::new(width, height, pixels) {
        Ok(image) => (image, Some(cut)),
        // Unreachable: the buffer keeps its length.
        Err(_) => (RgbaImage::filled(width, height, [0; 4]), Some(cut)),
    }
}

/// The work of [`remove_background`] on a `w x h` buffer (`w, h >= 3`).
fn cut_out(pixels: &mut [u8], w: usize, h: usize) -> Cutout {
    let ring = ring_indices(w, h);
    let rgb = |px: &[u8], i: usize| [px[i * 4], px[i * 4 + 1], px[i * 4 + 2]];
    let background = median_rgb(ring.iter().map(|&i| rgb(pixels, i)));
    // Distances of every pixel from the background, one byte each (Chebyshev <= 255).
    let distances: Vec<u8> = (0..w * h)
        .map(|i| chebyshev(rgb(pixels, i), background) as u8)
        .collect();
    let distance = |i: usize| u32::from(distances[i]);
    let spread = median(ring.iter().map(|&i| distance(i)));
    let mut tolerance = (2 * spread + MIN_TOLERANCE).clamp(MIN_TOLERANCE, MAX_TOLERANCE);
    let total = w * h;
    let least_opaque = total.div_ceil(LEAK_DIVISOR);
    let mut state = fill(w, h, &ring, tolerance, &distance);
    let mut tries = 0;
    while opaque(&state) < least_opaque && tries < RETRIES && tolerance / 2 >= 4 {
        tolerance /= 2;
        tries += 1;
        state = fill(w, h, &ring, tolerance, &distance);
    }
    let centre_kept = opaque(&state) < least_opaque;
    if centre_kept {
        for y in h / 4..h - h / 4 {
            for x in w / 4..w - w / 4 {
                state[y * w + x] = SUBJECT;
            }
        }
        // The ring stays background even where the centre rectangle reaches it.
        for &i in &ring {
            state[i] = BACKGROUND;
        }
    }
    let mut cleared = 0;
    for i in 0..total {
        let alpha = if state[i] == BACKGROUND {
            cleared += 1;
            0
        } else if touches_background(&state, w, h, i) {
            (255 * distance(i) / (2 * tolerance)).clamp(128, 255) as u8
        } else {
            255
        };
        let a = &mut pixels[i * 4 + 3];
        *a = (*a).min(alpha);
    }
    Cutout {
        background,
        tolerance,
        cleared,
        centre_kept,
    }
}

/// Indices of the 1-pixel border ring (each once), for `w, h >= 3`.
fn ring_indices(w: usize, h: usize) -> Vec<usize> {
    let mut ring: Vec<usize> = (0..w).collect();
    ring.extend((1..h - 1).flat_map(|y| [y * w, y * w + w - 1]));
    ring.extend(((h - 1) * w)..(h * w));
    ring
}

/// Fill from the ring through pixels within `tolerance` of the background.
fn fill(
    w: usize,
    h: usize,
    ring: &[usize],
    tolerance: u32,
    distance: &impl Fn(usize) -> u32,
) -> Vec<u8> {
    let mut state = vec![SUBJECT; w * h];
    // A stack, not a queue: the filled region is the same in any visiting order.
    let mut stack: Vec<u32> = Vec::with_capacity(ring.len());
    for &i in ring {
        state[i] = BACKGROUND;
        stack.push(i as u32);
    }
    while let Some(i) = stack.pop() {
        let i = i as usize;
        let (x, y) = (i % w, i / w);
        let neighbours = [
            (x > 0).then(|| i - 1),
            (x + 1 < w).then(|| i + 1),
            (y > 0).then(|| i - w),
            (y + 1 < h).then(|| i + w),
        ];
        for j in neighbours.into_iter().flatten() {
            if state[j] == SUBJECT && distance(j) <= tolerance {
                state[j] = BACKGROUND;
                stack.push(j as u32);
            }
        }
    }
    state
}

fn opaque(state: &[u8]) -> usize {
    state.iter().filter(|&&s| s == SUBJECT).count()
}

fn touches_background(state: &[u8], w: usize, h: usize, i: usize) -> bool {
    let (x, y) = (i % w, i / w);
    (x > 0 && state[i - 1] == BACKGROUND)
        || (x + 1 < w && state[i + 1] == BACKGROUND)
        || (y > 0 && state[i - w] == BACKGROUND)
        || (y + 1 < h && state[i + w] == BACKGROUND)
}

fn chebyshev(a: [u8; 3], b: [u8; 3]) -> u32 {
    (0..3)
        .map(|c| u32::from(a[c].abs_diff(b[c])))
        .max()
        .unwrap_or(0)
}

/// Per-channel median (lower median) of some colours, by 256-bin histograms.
fn median_rgb(colours: impl Iterator<Item = [u8; 3]>) -> [u8; 3] {
    let mut hist = [[0u32; 256]; 3];
    let mut n = 0u32;
    for c in colours {
        for ch in 0..3 {
            hist[ch][c[ch] as usize] += 1;
        }
        n += 1;
    }
    let mut out = [0u8; 3];
    for ch in 0..3 {
        out[ch] = lower_median(&hist[ch], n);
    }
    out
}

/// Lower median of values in 0..=255.
fn median(values: impl Iterator<Item = u32>) -> u32 {
    let mut hist = [0u32; 256];
    let mut n = 0;
    for v in values {
        hist[v.min(255) as usize] += 1;
        n += 1;
    }
    u32::from(lower_median(&hist, n))
}

fn lower_median(hist: &[u32; 256], n: u32) -> u8 {
    let rank = n.div_ceil(2).max(1);
    let mut acc = 0;
    for (v, &count) in hist.iter().enumerate() {
        acc += count;
        if acc >= rank {
            return v as u8;
        }
    }
    255
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth;

    #[derive(Debug, PartialEq)]
    struct Res {
        image: RgbaImage,
        background: [u8; 3],
        tolerance: u32,
        cleared: usize,
        centre_kept: bool,
    }

    fn remove(img: &RgbaImage) -> Option<Res> {
        let (image, report) = remove_background(img.clone());
        match report {
            None => {
                assert_eq!(&image, img, "untouched");
                None
            }
            Some(c) => Some(Res {
                image,
                background: c.background,
                tolerance: c.tolerance,
                cleared: c.cleared,
                centre_kept: c.centre_kept,
            }),
        }
    }

    fn alpha(img: &RgbaImage, x: u32, y: u32) -> u8 {
        img.get(x, y)[3]
    }

    fn ring_is_transparent(img: &RgbaImage) -> bool {
        let (w, h) = (img.width(), img.height());
        (0..w).all(|x| alpha(img, x, 0) == 0 && alpha(img, x, h - 1) == 0)
            && (0..h).all(|y| alpha(img, 0, y) == 0 && alpha(img, w - 1, y) == 0)
    }

    fn opaque_interior(img: &RgbaImage) -> usize {
        let (w, h) = (img.width(), img.height());
        (1..h - 1)
            .flat_map(|y| (1..w - 1).map(move |x| (x, y)))
            .filter(|&(x, y)| alpha(img, x, y) == 255)
            .count()
    }

    /// A red disc of radius 20 on a light grey background with slight noise.
    fn icon() -> RgbaImage {
        RgbaImage::from_fn(64, 64, |x, y| {
            let (dx, dy) = (x as i32 - 32, y as i32 - 32);
            if dx * dx + dy * dy <= 400 {
                [200, 30, 40, 255]
            } else {
                let n = (synth::mix(u64::from(y * 64 + x)) % 7) as u8;
                [230 + n, 232 + n, 228 + n, 255]
            }
        })
    }

    #[test]
    fn a_plain_background_becomes_transparent_and_the_item_stays() {
        let cut = remove(&icon()).expect("has an interior");
        let img = &cut.image;
        assert!(!cut.centre_kept);
        assert!(
            cut.background[0] >= 230 && cut.background[0] <= 236,
            "{:?}",
            cut.background
        );
        assert!((16..=24).contains(&cut.tolerance), "{}", cut.tolerance);
        // Every background pixel cleared, every disc pixel not on the rim fully opaque.
        for y in 0..64u32 {
            for x in 0..64u32 {
                let (dx, dy) = (x as i32 - 32, y as i32 - 32);
                let r2 = dx * dx + dy * dy;
                if r2 > 400 {
                    assert_eq!(alpha(img, x, y), 0, "background at {x},{y}");
                } else if r2 < 361 {
                    assert_eq!(alpha(img, x, y), 255, "item at {x},{y}");
                } else {
                    assert!(alpha(img, x, y) >= 128, "soft rim at {x},{y}");
                }
            }
        }
        // Colours are kept.
        assert_eq!(&img.get(32, 32)[..3], &[200, 30, 40]);
        assert_eq!(
            cut.cleared,
            (0..64 * 64)
                .filter(|&i| img.pixels()[i * 4 + 3] == 0)
                .count()
        );
    }

    #[test]
    fn an_enclosed_hole_of_background_colour_stays_opaque() {
        // A ring-shaped item: its hole has the background colour but is not reachable
        // from the border, so it is part of the icon (a flood fill, not a colour key).
        let img = RgbaImage::from_fn(40, 40, |x, y| {
            let (dx, dy) = (x as i32 - 20, y as i32 - 20);
            let r2 = dx * dx + dy * dy;
            if (36..=144).contains(&r2) {
                [0, 0, 200, 255]
            } else {
                [255, 255, 255, 255]
            }
        });
        let cut = remove(&img).expect("cut");
        assert_eq!(alpha(&cut.image, 20, 20), 255);
        assert_eq!(alpha(&cut.image, 1, 1), 0);
    }

    #[test]
    fn noise_keeps_a_transparent_ring_and_an_opaque_centre() {
        for seed in 0..4 {
            for img in [
                synth::white_noise(64, 48, seed),
                synth::value_noise(96, 96, 12, seed),
            ] {
                let cut = remove(&img).expect("cut");
                assert!(ring_is_transparent(&cut.image), "seed {seed}");
                let opaque = opaque_interior(&cut.image);
                assert!(opaque >= img.len() / 32, "seed {seed}: {opaque} opaque");
            }
        }
    }

    #[test]
    fn simulator_gradients_keep_a_transparent_ring_and_an_opaque_core() {
        // The simulator's sampler output: a smooth four-corner gradient.
        for corners in [
            [[200, 40, 90], [20, 180, 60], [90, 90, 250], [250, 240, 10]],
            [
                [128, 128, 128],
                [130, 128, 128],
                [128, 130, 128],
                [129, 129, 129],
            ],
            [[0, 0, 0], [255, 255, 255], [255, 255, 255], [0, 0, 0]],
        ] {
            let img = synth::gradient(128, 128, corners);
            let cut = remove(&img).expect("cut");
            assert!(ring_is_transparent(&cut.image), "{corners:?}");
            assert!(opaque_interior(&cut.image) >= 128 * 128 / 32, "{corners:?}");
        }
        // A flat image is all "background": the leak guard keeps the centre.
        let flat = RgbaImage::filled(32, 32, [9, 9, 9, 255]);
        let cut = remove(&flat).expect("cut");
        assert!(cut.centre_kept);
        assert_eq!(alpha(&cut.image, 16, 16), 255);
        assert!(ring_is_transparent(&cut.image));
    }

    #[test]
    fn tiny_images_are_left_alone_and_3x3_keeps_its_centre() {
        for (w, h) in [(1, 1), (1, 50), (50, 1), (2, 2), (2, 9)] {
            assert_eq!(remove(&synth::white_noise(w, h, 1)), None, "{w}x{h}");
        }
        let cut = remove(&RgbaImage::filled(3, 3, [0, 0, 0, 255])).expect("3x3");
        assert!(alpha(&cut.image, 1, 1) >= 128, "kept, with a soft edge");
        assert_eq!(cut.cleared, 8);
    }

    #[test]
    fn existing_transparency_is_kept_and_results_are_deterministic() {
        let mut img = icon();
        let mut px = img.clone().into_pixels();
        px[(32 * 64 + 32) * 4 + 3] = 10;
        img = RgbaImage::new(64, 64, px).expect("same size");
        let a = remove(&img).expect("cut");
        assert_eq!(alpha(&a.image, 32, 32), 10);
        assert_eq!(a, remove(&img.clone()).expect("cut"));
    }
}
