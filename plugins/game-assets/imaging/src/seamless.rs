//! Makes a texture tile seamlessly, and measures how well an image tiles.
//!
//! # Technique: four-copy half-offset blend
//!
//! Let `I` be the image and `I_ab` its copy shifted (with wrap-around) by `a * W/2`
//! columns and `b * H/2` rows (`a, b` in {0, 1}). The unshifted copy is continuous
//! everywhere inside but breaks at the wrap (column `W-1` next to column `0`); a copy
//! shifted by `W/2` is continuous across the wrap (its columns `W-1` and `0` are
//! neighbouring columns of `I`) but breaks in its middle. The output is
//!
//! ```text
//! O(x, y) = m + sum over a, b of  wx_a(x) * wy_b(y) * (I_ab(x, y) - m) / (nx(x) * ny(y))
//! wx_1(x) = s(u(x)),  wx_0 = 1 - wx_1,  nx = sqrt(wx_0^2 + wx_1^2)   (the same for y)
//! ```
//!
//! where `u(x)` runs from 0 on the shifted copy's break to 1 at the image borders, `s` is
//! a smoothstep from `u = 0.35` to `u = 0.65` (outside that band one copy is used as it
//! is), and `m` is the image's mean colour. Every copy has weight 0 along its own breaks,
//! so `O` is continuous inside, and at the borders only shifted copies contribute, so
//! `O`'s wrap-around steps are ordinary neighbouring steps of `I`. Dividing by `nx * ny`
//! makes the blend variance-preserving (as in Heitz and Neyret's histogram-preserving
//! blending): mixing two unrelated regions does not wash out their contrast. Weights are
//! fixed point (out of 1024; the normalisers, one per row and column, are computed once
//! in `f64`); the cost is 4 reads per output byte.
//!
//! # Criterion: wrap seam ratio
//!
//! [`seam_ratio`]: for each direction with at least 3 pixels, the mean absolute RGB
//! difference across the wrap (column `W-1` vs column `0`; row `H-1` vs row `0`) divided
//! by the mean absolute RGB difference between adjacent interior columns (rows); the
//! result is the larger of the two directions. 1.0 means the seam is exactly as strong
//! as an average neighbouring step. An image counts as seamless when the ratio is at
//! most [`SEAMLESS_MAX_RATIO`] (1.25): genuinely tileable noise scores 0.82..1.14, so the
//! slack covers the spread of one seam line around the average step; unprocessed
//! gradients and smooth noise score 6 to hundreds. White noise scores about 1 whatever is
//! done to it (every step is as strong as a seam), so it cannot show a seam.

use super::RgbaImage;

/// The largest [`seam_ratio`] for which an image counts as seamless: its wrap seam is no
/// stronger than an ordinary step between neighbouring pixels (1.0), plus slack for the
/// statistical spread of a single seam row/column against the average of all of them.
/// Calibration: value noise that tiles by construction scores 0.82..1.14 (24 textures in
/// the tests); unprocessed non-tiling textures score 6 and more.
pub const SEAMLESS_MAX_RATIO: f64 = 1.25;

/// Where the cross-fade starts and ends, as a fraction of the way from the shifted copy's
/// break (0) to the border (1). Outside the band one copy is used unblended.
const BAND_START: f64 = 0.35;
/// See [`BAND_START`].
const BAND_END: f64 = 0.65;

/// Fixed-point unit of the blend weights and normalisers.
const ONE: u32 = 1024;

/// The seamless version of `img` (same size). A direction 1 pixel long is left as it is
/// (a 1-pixel row tiles with itself).
pub fn make_seamless(img: &RgbaImage) -> RgbaImage {
    let (w, h) = (img.width(), img.height());
    let wx = weights(w);
    let wy = weights(h);
    let nx: Vec<i64> = wx.iter().map(|&t| norm(t)).collect();
    let ny: Vec<i64> = wy.iter().map(|&t| norm(t)).collect();
    let mean = mean_rgba(img);
    let (sx, sy) = (w / 2, h / 2);
    let src = img.pixels();
    let stride = w as usize * 4;
    let one = i64::from(ONE);
    // Weights (Q20) times normalisers (Q20): sums are in Q40.
    let half = 1i64 << 39;
    let mut out = Vec::with_capacity(src.len());
    for y in 0..h {
        let ys = (y + sy) % h;
        let ty = i64::from(wy[y as usize]);
        let (row0, row1) = (y as usize * stride, ys as usize * stride);
        for x in 0..w {
            let xs = (x + sx) % w;
            let tx = i64::from(wx[x as usize]);
            let (c0, c1) = (x as usize * 4, xs as usize * 4);
            let k = [
                (one - tx) * (one - ty),
                tx * (one - ty),
                (one - tx) * ty,
                tx * ty,
            ];
            let n = nx[x as usize] * ny[y as usize];
            for (ch, &m) in mean.iter().enumerate() {
                let at = |i: usize| i64::from(src[i + ch]) - m;
                let v = k[0] * at(row0 + c0)
                    + k[1] * at(row0 + c1)
                    + k[2] * at(row1 + c0)
                    + k[3] * at(row1 + c1);
                let scaled = (v * n + half).div_euclid(1 << 40);
                out.push((m + scaled).clamp(0, 255) as u8);
            }
        }
    }
    RgbaImage::new(w, h, out).unwrap_or_else(|_| img.clone())
}

/// Variance-preserving normaliser (Q10) of a two-copy blend with weight `t` (of [`ONE`]):
/// `1 / sqrt(t^2 + (1 - t)^2)`, from 1 (one copy) to sqrt(2) (even mix).
fn norm(t: u32) -> i64 {
    let t = f64::from(t) / f64::from(ONE);
    let n = 1.0 / (t * t + (1.0 - t) * (1.0 - t)).sqrt();
    (n * f64::from(ONE)).round() as i64
}

/// Per-channel mean of the image, rounded.
fn mean_rgba(img: &RgbaImage) -> [i64; 4] {
    let mut sums = [0u64; 4];
    for px in img.pixels().chunks_exact(4) {
        for (s, &v) in sums.iter_mut().zip(px) {
            *s += u64::from(v);
        }
    }
    let n = img.len() as u64;
    sums.map(|s| ((s + n / 2) / n) as i64)
}

/// Weight (out of [`ONE`]) of the half-shifted copy for each of `n` positions: a
/// smoothstep over the band, 1 at both borders.
fn weights(n: u32) -> Vec<u32> {
    if n < 2 {
        return vec![0; n as usize];
    }
    // The shifted copy breaks between positions `n - n/2 - 1` and `n - n/2`.
    let centre = f64::from(n - n / 2) - 0.5;
    let left = centre;
    let right = f64::from(n - 1) - centre;
    (0..n)
        .map(|i| {
            let p = f64::from(i);
            let u = if p < centre {
                (centre - p) / left
            } else {
                (p - centre) / right
            };
            let t = ((u - BAND_START) / (BAND_END - BAND_START)).clamp(0.0, 1.0);
            let s = t * t * (3.0 - 2.0 * t);
            (s * f64::from(ONE)).round() as u32
        })
        .collect()
}

/// The wrap seam ratio of `img` (see the module docs), or `None` when neither side has
/// at least 3 pixels. A flat direction (no interior steps) scores 0 when its seam is flat
/// too and infinity otherwise.
pub fn seam_ratio(img: &RgbaImage) -> Option<f64> {
    let (w, h) = (img.width(), img.height());
    let horizontal = (w >= 3).then(|| {
        direction_ratio(
            (0..h).map(|y| diff(img.get(w - 1, y), img.get(0, y))),
            (0..h)
                .flat_map(|y| (0..w - 1).map(move |x| (x, y)))
                .map(|(x, y)| diff(img.get(x, y), img.get(x + 1, y))),
        )
    });
    let vertical = (h >= 3).then(|| {
        direction_ratio(
            (0..w).map(|x| diff(img.get(x, h - 1), img.get(x, 0))),
            (0..h - 1)
                .flat_map(|y| (0..w).map(move |x| (x, y)))
                .map(|(x, y)| diff(img.get(x, y), img.get(x, y + 1))),
        )
    });
    match (horizontal, vertical) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Sum of absolute RGB differences of two pixels.
fn diff(a: [u8; 4], b: [u8; 4]) -> u64 {
    (0..3).map(|c| u64::from(a[c].abs_diff(b[c]))).sum()
}

fn direction_ratio(seam: impl Iterator<Item = u64>, interior: impl Iterator<Item = u64>) -> f64 {
    let mean = |it: &mut dyn Iterator<Item = u64>| {
        let (mut sum, mut n) = (0u64, 0u64);
        for d in it {
            sum += d;
            n += 1;
        }
        sum as f64 / n.max(1) as f64
    };
    let (mut seam, mut interior) = (seam, interior);
    let seam_mean = mean(&mut seam);
    let interior_mean = mean(&mut interior);
    if interior_mean == 0.0 {
        if seam_mean == 0.0 { 0.0 } else { f64::INFINITY }
    } else {
        seam_mean / interior_mean
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth;

    fn inputs() -> Vec<(String, RgbaImage)> {
        let mut v = Vec::new();
        for seed in 0..6 {
            for (w, h, cell) in [(256, 256, 32), (200, 120, 16), (64, 64, 8), (101, 77, 12)] {
                v.push((
                    format!("value noise {w}x{h}/{cell} seed {seed}"),
                    synth::value_noise(w, h, cell, seed),
                ));
            }
        }
        v.push((
            "gradient".into(),
            synth::gradient(
                128,
                96,
                [[0, 0, 0], [255, 0, 0], [0, 255, 0], [255, 255, 255]],
            ),
        ));
        v.push((
            "simulator-like gradient".into(),
            synth::gradient(
                512,
                512,
                [[200, 40, 90], [20, 180, 60], [90, 90, 250], [250, 240, 10]],
            ),
        ));
        v
    }

    #[test]
    fn unprocessed_textures_have_strong_seams_and_processed_ones_none() {
        for (name, img) in inputs() {
            let before = seam_ratio(&img).expect("big enough");
            let after = seam_ratio(&make_seamless(&img)).expect("same size");
            assert!(before > 6.0, "{name}: before {before}");
            assert!(
                after <= SEAMLESS_MAX_RATIO,
                "{name}: after {after} (before {before})"
            );
        }
    }

    #[test]
    fn tileable_textures_calibrate_the_threshold() {
        let mut worst = 0.0f64;
        for seed in 0..6 {
            for (w, h, cell) in [(256, 256, 32), (208, 128, 16), (64, 64, 8), (96, 72, 12)] {
                let r = seam_ratio(&synth::tileable_noise(w, h, cell, seed)).expect("ratio");
                worst = worst.max(r);
            }
        }
        // The calibration quoted in SEAMLESS_MAX_RATIO's docs.
        assert!((1.0..1.15).contains(&worst), "{worst}");
        assert!(worst < SEAMLESS_MAX_RATIO);
    }

    #[test]
    fn the_ratio_is_about_one_for_white_noise_and_zero_for_flat_images() {
        // White noise has no seam to find: every step is like any other.
        let noise = synth::white_noise(128, 128, 4);
        let r = seam_ratio(&noise).expect("ratio");
        assert!((0.85..1.15).contains(&r), "{r}");
        assert_eq!(
            seam_ratio(&RgbaImage::filled(8, 8, [5, 5, 5, 255])),
            Some(0.0)
        );
        // One odd border column: the seam step is 7 times the mean of the 7 interior steps.
        let odd = RgbaImage::from_fn(8, 8, |x, _| {
            if x == 7 {
                [9, 9, 9, 255]
            } else {
                [0, 0, 0, 255]
            }
        });
        assert_eq!(seam_ratio(&odd), Some(7.0));
    }

    #[test]
    fn weights_are_one_at_the_borders_and_zero_at_the_break() {
        for n in [2u32, 3, 4, 5, 8, 9, 64, 1023] {
            let w = weights(n);
            assert_eq!(w.len(), n as usize);
            assert_eq!((w[0], w[n as usize - 1]), (ONE, ONE), "n={n}");
            // Zero at the break once the band is at least a pixel away from it.
            if n >= 8 {
                let b = (n - n / 2 - 1) as usize;
                assert_eq!((w[b], w[b + 1]), (0, 0), "n={n}: {w:?}");
            }
        }
        assert_eq!(weights(1), vec![0]);
        assert!(weights(0).is_empty());
        assert_eq!((norm(0), norm(ONE), norm(ONE / 2)), (1024, 1024, 1448));
    }

    #[test]
    fn tiny_images_do_not_panic() {
        let one = RgbaImage::filled(1, 1, [1, 2, 3, 4]);
        assert_eq!(make_seamless(&one), one);
        assert_eq!(seam_ratio(&one), None);
        let column = synth::white_noise(1, 9, 3);
        let out = make_seamless(&column);
        assert_eq!((out.width(), out.height()), (1, 9));
        assert!(seam_ratio(&out).is_some());
        let row = synth::white_noise(9, 1, 3);
        assert_eq!(make_seamless(&row).height(), 1);
        let two = synth::white_noise(2, 2, 3);
        assert_eq!(seam_ratio(&make_seamless(&two)), None);
    }

    #[test]
    fn a_flat_image_stays_flat_and_blending_is_deterministic() {
        let flat = RgbaImage::filled(33, 17, [10, 200, 30, 255]);
        assert_eq!(make_seamless(&flat), flat);
        let img = synth::value_noise(96, 64, 8, 7);
        assert_eq!(make_seamless(&img), make_seamless(&img.clone()));
    }
}
