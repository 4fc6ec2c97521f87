//! Median-cut colour quantization for `pixel-art`'s `palette_colors`.
//!
//! Algorithm (all integer, deterministic):
//! 1. The image's distinct RGBA colours with their pixel counts: the packed `u32`
//!    colours, sorted and counted. When there are more than [`EXACT_COLOURS`] distinct
//!    colours, each colour is first reduced to 5 bits per channel (the palette means
//!    are then those of the buckets' centres, within 4 levels of the exact ones): this
//!    bounds the working list to 2^20 entries.
//! 2. Median cut: start with one box holding every listed colour; repeatedly split the
//!    box with the largest `channel range x pixel count` along its widest channel at the
//!    pixel-weighted median value (an in-place partition, O(colours) per split), until there are `max_colours` boxes or no box holds more than
//!    one colour. Each box's palette entry is the pixel-weighted mean of its colours.
//! 3. Every pixel is mapped to the nearest palette entry (squared RGBA distance, ties to
//!    the lower entry), by a search over the palette sorted by red that stops when the
//!    red gap alone exceeds the best distance, behind a small direct-mapped cache.
//!    With ordered dithering (off by default) each pixel's RGB is first offset by a 4x4
//!    Bayer threshold scaled to the palette's typical spacing.
//!
//! Memory: the image is mapped in place; besides it the quantizer holds one `u32` per
//! pixel (the sorted colours) and one `u64` per listed colour (at most 2^20): 40 MiB
//! for a 2048x2048 image, under the host's default 64 MiB per call.
//!
//! Guarantee: the result has at most `max_colours` distinct RGBA colours. An image that
//! already has no more than `max_colours` colours is left alone ([`quantize`] says so).

use super::RgbaImage;

/// Smallest and largest palette size accepted (the `palette_colors` bounds).
pub const MIN_COLOURS: u32 = 2;
/// See [`MIN_COLOURS`].
pub const MAX_COLOURS: u32 = 256;

/// Most distinct colours median cut works on exactly; above, colours are bucketed.
pub const EXACT_COLOURS: usize = 1 << 20;

/// What [`quantize`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quantized {
    /// Distinct colours before.
    pub colours_before: usize,
    /// Distinct palette entries used for the mapping (at most the requested number).
    pub palette_len: usize,
    /// Whether ordered dithering was applied.
    pub dithered: bool,
    /// Whether colours were bucketed to 5 bits per channel first (see the module docs).
    pub bucketed: bool,
}

/// Quantizes `img` to at most `max_colours` (clamped to 2..=256) colours, in place.
/// The report is `None` (and the image untouched) when it already has no more colours
/// than that.
pub fn quantize(img: RgbaImage, max_colours: u32, dither: bool) -> (RgbaImage, Option<Quantized>) {
    let k = max_colours.clamp(MIN_COLOURS, MAX_COLOURS) as usize;
    let mut packed: Vec<u32> = img.pixels().chunks_exact(4).map(pack).collect();
    packed.sort_unstable();
    let colours_before = count_runs(&packed);
    if colours_before <= k {
        return (img, None);
    }
    let bucketed = colours_before > EXACT_COLOURS;
    if bucketed {
        for c in &mut packed {
            *c = bucket(*c);
        }
        packed.sort_unstable();
    }
    let mut list = runs(&packed);
    drop(packed);
    let palette = median_cut(&mut list, k, bucketed);
    drop(list);
    let nearest = Nearest::new(&palette);
    let (width, height) = (img.width(), img.height());
    let mut pixels = img.into_pixels();
    let spread = if dither { typical_spacing(&palette) } else { 0 };
    let mut cache = Cache::new();
    for (i, px) in pixels.chunks_exact_mut(4).enumerate() {
        let query = if dither {
            let x = i % width as usize;
            let y = i / width as usize;
            let t = i32::from(BAYER[y % 4][x % 4]) * 2 - 15; // -15..=15
            [
                offset(px[0], t, spread),
                offset(px[1], t, spread),
                offset(px[2], t, spread),
                px[3],
            ]
        } else {
            [px[0], px[1], px[2], px[3]]
        };
        px.copy_from_slice(&cache.nearest(&nearest, query));
    }
    let report = Quantized {
        colours_before,
        palette_len: nearest.entries.len(),
        dithered: dither,
        bucketed,
    };
    match RgbaImage::new(width, height, pixels) {
        Ok(image) => (image, Some(report)),
        // Unreachable: the buffer keeps its length. Keep the type honest anyway.
        Err(_) => (RgbaImage::filled(width, height, [0; 4]), Some(report)),
    }
}

/// A direct-mapped cache of nearest-entry answers (4096 slots, 32 KiB): neighbouring
/// pixels often share a colour, so most look-ups skip the search.
struct Cache {
    slots: Vec<(u32, [u8; 4])>,
    filled: Vec<bool>,
}

impl Cache {
    const SLOTS: usize = 4096;

    fn new() -> Self {
        Self {
            slots: vec![(0, [0; 4]); Self::SLOTS],
            filled: vec![false; Self::SLOTS],
        }
    }

    fn nearest(&mut self, nearest: &Nearest, c: [u8; 4]) -> [u8; 4] {
        let key = u32::from_be_bytes(c);
        let slot = (key.wrapping_mul(0x9e37_79b1) >> 20) as usize % Self::SLOTS;
        if self.filled[slot] && self.slots[slot].0 == key {
            return self.slots[slot].1;
        }
        let found = nearest.find(c);
        self.slots[slot] = (key, found);
        self.filled[slot] = true;
        found
    }
}

/// 4x4 Bayer matrix (threshold order).
const BAYER: [[u8; 4]; 4] = [[0, 8, 2, 10], [12, 4, 14, 6], [3, 11, 1, 9], [15, 7, 13, 5]];

/// `v + t * spread / 32`, clamped to a byte (`t` in -15..=15 keeps it within half a spacing).
fn offset(v: u8, t: i32, spread: i32) -> u8 {
    (i32::from(v) + t * spread / 32).clamp(0, 255) as u8
}

fn pack(p: &[u8]) -> u32 {
    u32::from_be_bytes([p[0], p[1], p[2], p[3]])
}

fn unpack(c: u32) -> [u8; 4] {
    c.to_be_bytes()
}

/// The colour reduced to 5 bits per channel (low 3 bits cleared).
fn bucket(c: u32) -> u32 {
    c & 0xf8f8_f8f8
}

/// A bucketed colour's centre (low bits set to the middle of the bucket).
fn bucket_centre(c: u32, bucketed: bool) -> u32 {
    if bucketed { c | 0x0404_0404 } else { c }
}

/// Number of distinct values in a sorted slice.
fn count_runs(sorted: &[u32]) -> usize {
    sorted.windows(2).filter(|w| w[0] != w[1]).count() + usize::from(!sorted.is_empty())
}

/// Distinct values of a sorted slice with their counts, as `colour << 32 | count`.
fn runs(sorted: &[u32]) -> Vec<u64> {
    let mut out: Vec<u64> = Vec::with_capacity(count_runs(sorted));
    for &c in sorted {
        match out.last_mut() {
            Some(last) if colour_of(*last) == c => *last += 1,
            _ => out.push((u64::from(c) << 32) | 1),
        }
    }
    out
}

fn colour_of(e: u64) -> u32 {
    (e >> 32) as u32
}

fn count_of(e: u64) -> u64 {
    e & 0xffff_ffff
}

/// Channel `ch` (0 = red .. 3 = alpha) of a packed colour.
fn channel(c: u32, ch: usize) -> u8 {
    unpack(c)[ch]
}

/// A median-cut box: a range of the working colour list.
struct CutBox {
    start: usize,
    end: usize,
    pixels: u64,
    widest: usize,
    range: u8,
}

impl CutBox {
    fn new(list: &[u64], start: usize, end: usize) -> Self {
        let mut lo = [u8::MAX; 4];
        let mut hi = [0u8; 4];
        let mut pixels = 0u64;
        for &e in &list[start..end] {
            let c = colour_of(e);
            for ch in 0..4 {
                lo[ch] = lo[ch].min(channel(c, ch));
                hi[ch] = hi[ch].max(channel(c, ch));
            }
            pixels += count_of(e);
        }
        let (widest, range) = (0..4)
            .map(|ch| (ch, hi[ch] - lo[ch]))
            // First widest channel wins ties (`max_by_key` keeps the last, so reverse).
            .rev()
            .max_by_key(|&(_, r)| r)
            .unwrap_or((0, 0));
        Self {
            start,
            end,
            pixels,
            widest,
            range,
        }
    }

    fn score(&self) -> u64 {
        if self.end - self.start < 2 {
            0
        } else {
            u64::from(self.range) * self.pixels
        }
    }

    /// Pixel-weighted mean colour of the box.
    fn mean(&self, list: &[u64], bucketed: bool) -> [u8; 4] {
        let mut sums = [0u64; 4];
        for &e in &list[self.start..self.end] {
            let c = bucket_centre(colour_of(e), bucketed);
            for (ch, s) in sums.iter_mut().enumerate() {
                *s += u64::from(channel(c, ch)) * count_of(e);
            }
        }
        let total = self.pixels.max(1);
        sums.map(|s| ((s + total / 2) / total) as u8)
    }
}

/// The palette of at most `k` entries (k >= 2) for the colour list (reordered).
fn median_cut(list: &mut [u64], k: usize, bucketed: bool) -> Vec<[u8; 4]> {
    let mut boxes = vec![CutBox::new(list, 0, list.len())];
    while boxes.len() < k {
        let Some((i, best)) = boxes
            .iter()
            .enumerate()
            .map(|(i, b)| (i, b.score()))
            .rev()
            .max_by_key(|&(_, s)| s)
        else {
            break;
        };
        if best == 0 {
            break;
        }
        let b = boxes.swap_remove(i);
        let mid = b.start + split(&mut list[b.start..b.end], b.widest, b.pixels);
        boxes.push(CutBox::new(list, b.start, mid));
        boxes.push(CutBox::new(list, mid, b.end));
        // Keep the box order independent of `swap_remove`'s shuffling.
        boxes.sort_by_key(|b| b.start);
    }
    boxes.iter().map(|b| b.mean(list, bucketed)).collect()
}

/// Splits a box's colours (at least two distinct ones) along channel `ch` at the
/// pixel-weighted median value `v`: colours with `ch <= v` first (or `< v` when that
/// would take them all), in place, in O(len); returns the size of the first part, which
/// is always in `1..len`.
fn split(slice: &mut [u64], ch: usize, pixels: u64) -> usize {
    let mut hist = [0u64; 256];
    for &e in slice.iter() {
        hist[channel(colour_of(e), ch) as usize] += count_of(e);
    }
    let half = pixels.div_ceil(2);
    let mut acc = 0;
    let mut median = 255;
    for (v, &n) in hist.iter().enumerate() {
        acc += n;
        if acc >= half {
            median = v as u8;
            break;
        }
    }
    let lo = slice
        .iter()
        .map(|&e| channel(colour_of(e), ch))
        .min()
        .unwrap_or(0);
    // `<= median` would leave the second part empty when the median is the maximum.
    let hi = slice
        .iter()
        .map(|&e| channel(colour_of(e), ch))
        .max()
        .unwrap_or(0);
    let limit = if median >= hi {
        median.max(lo + 1) - 1
    } else {
        median
    };
    let mut first = 0;
    for j in 0..slice.len() {
        if channel(colour_of(slice[j]), ch) <= limit {
            slice.swap(first, j);
            first += 1;
        }
    }
    first.clamp(1, slice.len().saturating_sub(1).max(1))
}

/// Nearest-palette-entry search over entries sorted by red.
struct Nearest {
    entries: Vec<[u8; 4]>,
}

impl Nearest {
    fn new(palette: &[[u8; 4]]) -> Self {
        let mut entries = palette.to_vec();
        entries.sort_unstable();
        entries.dedup();
        Self { entries }
    }

    fn find(&self, c: [u8; 4]) -> [u8; 4] {
        self.entries.get(self.index(c)).copied().unwrap_or(c)
    }

    fn index(&self, c: [u8; 4]) -> usize {
        let dist = |e: &[u8; 4]| -> u32 {
            (0..4)
                .map(|ch| {
                    let d = i32::from(e[ch]) - i32::from(c[ch]);
                    (d * d) as u32
                })
                .sum()
        };
        let start = self.entries.partition_point(|e| e[0] < c[0]);
        let mut best = (u32::MAX, usize::MAX);
        let red_gap = |j: usize| {
            let d = i32::from(self.entries[j][0]) - i32::from(c[0]);
            (d * d) as u32
        };
        for j in start..self.entries.len() {
            if red_gap(j) > best.0 {
                break;
            }
            let d = dist(&self.entries[j]);
            if (d, j) < best {
                best = (d, j);
            }
        }
        for j in (0..start).rev() {
            if red_gap(j) > best.0 {
                break;
            }
            let d = dist(&self.entries[j]);
            if (d, j) < best {
                best = (d, j);
            }
        }
        best.1
    }
}

/// Median distance from each palette entry to its nearest other entry (RGB), at least 8:
/// the amplitude of the dithering threshold.
fn typical_spacing(palette: &[[u8; 4]]) -> i32 {
    let mut gaps: Vec<u32> = palette
        .iter()
        .enumerate()
        .map(|(i, a)| {
            palette
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, b)| {
                    (0..3)
                        .map(|ch| {
                            let d = i32::from(a[ch]) - i32::from(b[ch]);
                            (d * d) as u32
                        })
                        .sum::<u32>()
                })
                .min()
                .unwrap_or(0)
        })
        .collect();
    gaps.sort_unstable();
    let median_sq = gaps.get(gaps.len() / 2).copied().unwrap_or(0);
    (f64::from(median_sq).sqrt() as i32).max(8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth;

    #[derive(Debug, PartialEq)]
    struct Out {
        image: RgbaImage,
        colours_before: usize,
        palette_len: usize,
        bucketed: bool,
    }

    fn quantize_ref(img: &RgbaImage, k: u32, dither: bool) -> Option<Out> {
        let (image, report) = quantize(img.clone(), k, dither);
        match report {
            None => {
                assert_eq!(&image, img, "unchanged when there is nothing to do");
                None
            }
            Some(r) => {
                assert_eq!(r.dithered, dither);
                Some(Out {
                    image,
                    colours_before: r.colours_before,
                    palette_len: r.palette_len,
                    bucketed: r.bucketed,
                })
            }
        }
    }

    #[test]
    fn more_than_a_million_colours_are_bucketed_and_still_limited() {
        let img = synth::white_noise(1100, 1000, 8);
        assert!(img.distinct_colours() > EXACT_COLOURS);
        let q = quantize_ref(&img, 16, false).expect("quantized");
        assert!(q.bucketed);
        assert!(q.image.distinct_colours() <= 16);
        let small = synth::white_noise(300, 300, 8);
        assert!(!quantize_ref(&small, 16, false).expect("quantized").bucketed);
    }

    #[test]
    fn colour_count_is_at_most_the_requested_number() {
        let inputs = [
            synth::white_noise(97, 61, 1),
            synth::value_noise(128, 128, 16, 2),
            synth::gradient(200, 50, [[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]]),
        ];
        for img in &inputs {
            assert!(img.distinct_colours() > 256);
            for k in [2, 16, 256] {
                for dither in [false, true] {
                    let q = quantize_ref(img, k, dither).expect("too many colours");
                    let got = q.image.distinct_colours();
                    assert!(got <= k as usize, "k={k} dither={dither}: {got} colours");
                    assert!(got >= 2, "k={k}: a colourful image keeps several colours");
                    assert_eq!(q.colours_before, img.distinct_colours());
                    assert!(q.palette_len <= k as usize);
                    assert_eq!(
                        (q.image.width(), q.image.height()),
                        (img.width(), img.height())
                    );
                }
            }
        }
    }

    #[test]
    fn sixteen_colours_stay_close_to_the_original() {
        // A real quantizer: it beats a fixed 16-colour palette (2 levels of red, green and
        // blue, 2 of alpha... here alpha is constant, so 8 used) by a wide margin.
        let img = synth::value_noise(128, 128, 16, 3);
        let q = quantize_ref(&img, 16, false).expect("quantized");
        let err: u64 = img
            .pixels()
            .iter()
            .zip(q.image.pixels())
            .map(|(a, b)| u64::from(a.abs_diff(*b)))
            .sum();
        let fixed: u64 = img
            .pixels()
            .iter()
            .map(|&v| u64::from(v.abs_diff(if v < 128 { 64 } else { 192 })))
            .sum();
        assert!(err * 3 < fixed * 2, "median cut {err} vs fixed {fixed}");
    }

    #[test]
    fn two_colour_images_keep_their_colours_exactly() {
        let img = RgbaImage::from_fn(8, 8, |x, _| {
            if x < 4 {
                [10, 20, 30, 255]
            } else {
                [200, 100, 0, 255]
            }
        });
        assert_eq!(
            quantize_ref(&img, 2, false),
            None,
            "already within the palette"
        );
        // Three clusters into two: each pixel goes to the nearer mean.
        let img = RgbaImage::from_fn(9, 1, |x, _| match x {
            0..=3 => [0, 0, 0, 255],
            4 => [10, 10, 10, 255],
            _ => [250, 250, 250, 255],
        });
        let q = quantize_ref(&img, 2, false).expect("3 > 2");
        assert_eq!(q.image.distinct_colours(), 2);
        assert_eq!(q.image.get(4, 0), q.image.get(0, 0));
        assert_eq!(q.image.get(8, 0), [250, 250, 250, 255]);
    }

    #[test]
    fn alpha_is_a_quantized_channel() {
        let img = RgbaImage::from_fn(16, 16, |x, y| [128, 128, 128, (x * 16 + y) as u8]);
        let q = quantize_ref(&img, 4, false).expect("256 alphas");
        assert!(q.image.distinct_colours() <= 4);
        assert!(q.image.pixels().chunks_exact(4).all(|p| p[0] == 128));
    }

    #[test]
    fn tiny_images_and_out_of_range_counts_do_not_panic() {
        let one = RgbaImage::filled(1, 1, [1, 2, 3, 4]);
        assert_eq!(quantize_ref(&one, 2, true), None);
        let column = synth::white_noise(1, 40, 5);
        let q = quantize_ref(&column, 0, false).expect("clamped to 2");
        assert!(q.image.distinct_colours() <= 2);
        let row = synth::white_noise(40, 1, 6);
        let q = quantize_ref(&row, 10_000, true);
        assert_eq!(q, None, "40 colours <= 256");
        let q = quantize_ref(&row, 3, true).expect("40 > 3");
        assert!(q.image.distinct_colours() <= 3);
    }

    #[test]
    fn quantizing_is_deterministic() {
        let img = synth::white_noise(64, 64, 9);
        for dither in [false, true] {
            let a = quantize_ref(&img, 16, dither).expect("q");
            let b = quantize_ref(&img.clone(), 16, dither).expect("q");
            assert_eq!(a, b);
        }
    }

    #[test]
    fn dithering_mixes_palette_entries_in_flat_mid_tones() {
        // A horizontal grey ramp into 2 colours: without dithering each column is one
        // colour; with dithering the middle columns mix both entries.
        let img = RgbaImage::from_fn(64, 8, |x, _| {
            let v = (x * 4) as u8;
            [v, v, v, 255]
        });
        let plain = quantize_ref(&img, 2, false).expect("q").image;
        let dithered = quantize_ref(&img, 2, true).expect("q").image;
        let column_colours = |im: &RgbaImage, x: u32| {
            let mut c: Vec<[u8; 4]> = (0..8).map(|y| im.get(x, y)).collect();
            c.sort_unstable();
            c.dedup();
            c.len()
        };
        assert!((0..64).all(|x| column_colours(&plain, x) == 1));
        assert!((24..40).any(|x| column_colours(&dithered, x) == 2));
    }
}
