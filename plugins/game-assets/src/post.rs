//! Which post-processor runs on a template's output images, and how its work is reported.
//!
//! The host calls `postprocess` once per output image of a template whose `postprocess`
//! flag is set (`Post` other than `None`), with the parameters `build` got. Steps have
//! stable names: `palette` (pixel-art), `seamless` (environment-texture), `background`
//! (item-icon). When there is nothing to do (background removal switched off, a sprite
//! that already has few enough colours, an image too small to have an interior) the
//! image comes back unchanged with no step.

use crate::params::Settings;
use crate::templates::Post;
use imaging::{RgbaImage, background, palette, seamless};

/// One step applied to an image, for the job's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Stable short name.
    pub name: &'static str,
    /// What was done, for humans.
    pub detail: String,
}

/// Runs `post` on `image` with the template's `settings`.
pub fn apply(post: Post, settings: &Settings, image: RgbaImage) -> (RgbaImage, Vec<Step>) {
    match post {
        Post::None => (image, Vec::new()),
        Post::Palette => palette_step(settings, image),
        Post::Seamless => seamless_step(image),
        Post::Background => background_step(settings, image),
    }
}

fn palette_step(settings: &Settings, image: RgbaImage) -> (RgbaImage, Vec<Step>) {
    match palette::quantize(image, settings.palette_colors, settings.dither) {
        (image, None) => (image, Vec::new()),
        (image, Some(q)) => {
            let detail = format!(
                "quantized {} colours to {} (median cut{}{})",
                q.colours_before,
                q.palette_len,
                if q.bucketed { " of 5-bit buckets" } else { "" },
                if q.dithered {
                    ", ordered dithering"
                } else {
                    ""
                }
            );
            (
                image,
                vec![Step {
                    name: "palette",
                    detail,
                }],
            )
        }
    }
}

fn seamless_step(image: RgbaImage) -> (RgbaImage, Vec<Step>) {
    let show = |r: Option<f64>| r.map_or_else(|| "n/a".to_string(), |r| format!("{r:.2}"));
    let bound = seamless::SEAMLESS_MAX_RATIO;
    let before = seamless::seam_ratio(&image);
    // An image that tiles already (noise-like renders do) is delivered as it is: the blend
    // could only make its seam stronger relative to its steps.
    if let Some(r) = before.filter(|&r| r <= bound) {
        let detail = format!(
            "already tiles: wrap seam ratio {} (seamless <= {bound}); left as it is",
            show(Some(r))
        );
        let step = Step {
            name: "seamless",
            detail,
        };
        return (image, vec![step]);
    }
    let out = seamless::make_seamless(&image);
    // The input is dropped before the result is measured and returned: at most two
    // images are alive at once.
    drop(image);
    let detail = format!(
        "four-copy half-offset blend; wrap seam ratio {} -> {} (seamless <= {bound})",
        show(before),
        show(seamless::seam_ratio(&out)),
    );
    (
        out,
        vec![Step {
            name: "seamless",
            detail,
        }],
    )
}

fn background_step(settings: &Settings, image: RgbaImage) -> (RgbaImage, Vec<Step>) {
    if !settings.transparent_background {
        return (image, Vec::new());
    }
    match background::remove_background(image) {
        (image, None) => (image, Vec::new()),
        (image, Some(cut)) => {
            let [r, g, b] = cut.background;
            let percent = cut.cleared as f64 * 100.0 / image.len() as f64;
            let mut detail = format!(
                "background rgb({r}, {g}, {b}) within {} made transparent: {percent:.1}% of pixels",
                cut.tolerance
            );
            if cut.centre_kept {
                detail.push_str(
                    "; centre kept opaque (the background colour reached nearly everything)",
                );
            }
            (
                image,
                vec![Step {
                    name: "background",
                    detail,
                }],
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comfyui::workflow::types::{Param, Value};
    use crate::templates::find;
    use imaging::synth;

    fn settings(id: &str, extra: &[(&str, Value)]) -> Settings {
        let mut params = vec![
            Param {
                name: "prompt".into(),
                value: Value::Text("x".into()),
            },
            Param {
                name: "seed".into(),
                value: Value::Integer(1),
            },
        ];
        params.extend(extra.iter().map(|(n, v)| Param {
            name: n.to_string(),
            value: v.clone(),
        }));
        Settings::decode(find(id).expect("template"), &params).expect("valid")
    }

    #[test]
    fn pixel_art_gets_its_palette() {
        let img = synth::white_noise(64, 64, 1);
        let s = settings("pixel-art", &[]);
        assert_eq!(s.palette_colors, 16);
        let (out, steps) = apply(Post::Palette, &s, img.clone());
        assert!(out.distinct_colours() <= 16);
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0].name, "palette");
        assert_eq!(steps[0].detail, "quantized 4096 colours to 16 (median cut)");
        let s = settings(
            "pixel-art",
            &[
                ("palette_colors", Value::Integer(2)),
                ("dither", Value::Boolean(true)),
            ],
        );
        let (out, steps) = apply(Post::Palette, &s, img);
        assert!(out.distinct_colours() <= 2);
        assert!(
            steps[0].detail.ends_with("(median cut, ordered dithering)"),
            "{}",
            steps[0].detail
        );
        // Few colours already: unchanged, no step.
        let flat = RgbaImage::filled(8, 8, [1, 2, 3, 255]);
        assert_eq!(apply(Post::Palette, &s, flat.clone()), (flat, vec![]));
    }

    #[test]
    fn textures_become_seamless() {
        let img = synth::value_noise(128, 128, 16, 3);
        let (out, steps) = apply(Post::Seamless, &settings("environment-texture", &[]), img);
        assert!(seamless::seam_ratio(&out).expect("ratio") <= seamless::SEAMLESS_MAX_RATIO);
        assert_eq!(steps[0].name, "seamless");
        assert!(
            steps[0]
                .detail
                .starts_with("four-copy half-offset blend; wrap seam ratio "),
            "{}",
            steps[0].detail
        );
        let (_, steps) = apply(
            Post::Seamless,
            &settings("environment-texture", &[]),
            RgbaImage::filled(1, 1, [0; 4]),
        );
        assert!(steps[0].detail.contains("n/a -> n/a"));
    }

    #[test]
    fn a_texture_that_already_tiles_is_delivered_as_it_is() {
        // Noise-like renders (a random-weight checkpoint gives them) tile already: their wrap
        // steps are like any other. Blending one can only make its seam ratio worse (on a
        // real ComfyUI it took one from 1.01 to 1.25), so it is left as it is.
        let s = settings("environment-texture", &[]);
        for seed in 0..8u32 {
            let cell = [2, 4, 8, 16][seed as usize % 4];
            let img = synth::tileable_noise(256, 256, cell, u64::from(seed));
            let before = seamless::seam_ratio(&img).expect("ratio");
            assert!(before <= seamless::SEAMLESS_MAX_RATIO, "{before}");
            let (out, steps) = apply(Post::Seamless, &s, img.clone());
            assert!(
                out == img,
                "seed {seed}: an image that tiles is not changed"
            );
            assert_eq!(steps[0].name, "seamless");
            assert!(
                steps[0]
                    .detail
                    .starts_with("already tiles: wrap seam ratio "),
                "{}",
                steps[0].detail
            );
        }
    }

    #[test]
    fn icons_lose_their_background_unless_switched_off() {
        let img = RgbaImage::from_fn(32, 32, |x, y| {
            if (8..24).contains(&x) && (8..24).contains(&y) {
                [250, 0, 0, 255]
            } else {
                [0, 0, 250, 255]
            }
        });
        let on = settings("item-icon", &[]);
        assert!(on.transparent_background, "default true");
        let (out, steps) = apply(Post::Background, &on, img.clone());
        assert_eq!(out.get(0, 0)[3], 0);
        assert_eq!(out.get(16, 16)[3], 255);
        assert_eq!(steps[0].name, "background");
        assert_eq!(
            steps[0].detail,
            "background rgb(0, 0, 250) within 16 made transparent: 75.0% of pixels"
        );
        let off = settings(
            "item-icon",
            &[("transparent_background", Value::Boolean(false))],
        );
        assert_eq!(
            apply(Post::Background, &off, img.clone()),
            (img.clone(), vec![])
        );
        // Other templates: nothing.
        assert_eq!(apply(Post::None, &on, img.clone()), (img, vec![]));
    }
}
