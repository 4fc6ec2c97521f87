//! Graphs of the templates that start from an input image: `image-variation` (img2img)
//! and `inpaint`.
//!
//! Shape (fixed node ids; optional nodes are left out, never renumbered):
//!
//! ```text
//! "1".."3" checkpoint and prompts, as in graph.rs
//! "4" LoadImage(image) ─▶ ["5" ImageScale (lanczos) when the size is not already
//!      a multiple of 8 within 64..2048] ─▶ "6" VAEEncode
//! inpaint only:
//! "7" LoadImageMask(mask, channel red) ─▶ ["8" GrowMask(grow_mask_by) when > 0]
//!      ─▶ "9" SetLatentNoiseMask(samples "6")
//! ─▶ ["10" RepeatLatentBatch when batch_size > 1] ─▶ "11" KSampler(denoise)
//! ─▶ "12" VAEDecode ─▶ "13" SaveImage
//! ```
//!
//! Inpainting uses `SetLatentNoiseMask` on the VAE-encoded image rather than
//! `VAEEncodeForInpaint`: the latter blanks the masked pixels to grey before encoding,
//! which only an inpainting checkpoint can fill in (a regular SD1.5 checkpoint paints
//! grey blobs unless denoise is 1.0), while a noise mask works with every checkpoint and
//! every denoise: the sampler repaints only inside the mask and keeps the encoded
//! image elsewhere. ComfyUI resizes the noise mask to the latent itself, so the mask
//! keeps its upload size even when the image is scaled.
//!
//! Invariant (as for every graph): a pure function of its inputs, byte-identical JSON.

use crate::comfyui::workflow::types::{BuildError, FieldError};
use crate::graph::{decode, head, sampler, save_image, save_prefix};
use crate::params::{IMAGE, Settings, Upload};
use crate::templates::{Input, TemplateDef};
use crate::writer::Graph;

/// Smallest side the sampler works at.
pub const MIN_SIDE: u32 = 64;
/// Largest side the sampler works at (the text templates' `width`/`height` maximum).
pub const MAX_SIDE: u32 = 2048;

/// Writes the graph of an image template into `graph`.
pub fn graph(
    graph: &mut Graph,
    def: &TemplateDef,
    settings: &Settings,
    ckpt: &str,
) -> Result<(), BuildError> {
    let image = settings.image.as_ref().ok_or_else(|| missing(IMAGE.name))?;
    // Checked before anything is written: a failed build returns no graph at all.
    let mask = match def.input {
        Input::Inpaint => Some(settings.mask.as_ref().ok_or_else(|| missing("mask"))?),
        _ => None,
    };
    head(graph, def, settings, ckpt);
    graph.node("4", "LoadImage", |i| {
        i.text("image", &image.name);
    });
    let (width, height) = sampling_size(image.width, image.height);
    let mut pixels = "4";
    if (width, height) != (image.width, image.height) {
        graph.node("5", "ImageScale", |i| {
            i.link("image", "4", 0)
                .text("upscale_method", "lanczos")
                .int("width", width)
                .int("height", height)
                .text("crop", "disabled");
        });
        pixels = "5";
    }
    graph.node("6", "VAEEncode", |i| {
        i.link("pixels", pixels, 0).link("vae", "1", 2);
    });
    let mut latent = "6";
    if let Some(mask) = mask {
        add_mask(graph, mask, settings.grow_mask_by);
        latent = "9";
    }
    if settings.batch_size > 1 {
        graph.node("10", "RepeatLatentBatch", |i| {
            i.link("samples", latent, 0)
                .int("amount", settings.batch_size);
        });
        latent = "10";
    }
    sampler(graph, "11", settings, latent);
    decode(graph, "12", "11");
    save_image(graph, "13", "12", &save_prefix(def));
    Ok(())
}

/// Nodes "7" to "9": the mask, widened, as the noise mask of latent "6".
fn add_mask(graph: &mut Graph, mask: &Upload, grow_by: u32) {
    graph.node("7", "LoadImageMask", |i| {
        i.text("image", &mask.name).text("channel", "red");
    });
    let mut source = "7";
    if grow_by > 0 {
        graph.node("8", "GrowMask", |i| {
            i.link("mask", "7", 0)
                .int("expand", grow_by)
                .flag("tapered_corners", true);
        });
        source = "8";
    }
    graph.node("9", "SetLatentNoiseMask", |i| {
        i.link("samples", "6", 0).link("mask", source, 0);
    });
}

/// The size an input image is sampled at: scaled (keeping the aspect ratio) so the
/// longer side is at most 2048 or else the shorter side at least 64, then each side
/// rounded down to a multiple of 8 and kept within 64..=2048 (extreme aspect ratios are
/// squeezed rather than refused). Equal to the input size when that already fits.
pub fn sampling_size(width: u32, height: u32) -> (u32, u32) {
    let (w, h) = (u64::from(width.max(1)), u64::from(height.max(1)));
    let (long, short) = (w.max(h), w.min(h));
    let (num, den) = if long > u64::from(MAX_SIDE) {
        (u64::from(MAX_SIDE), long)
    } else if short < u64::from(MIN_SIDE) {
        (u64::from(MIN_SIDE), short)
    } else {
        (1, 1)
    };
    let side = |v: u64| -> u32 {
        let scaled = (v * num / den) / 8 * 8;
        scaled.clamp(u64::from(MIN_SIDE), u64::from(MAX_SIDE)) as u32
    };
    (side(w), side(h))
}

fn missing(param: &str) -> BuildError {
    BuildError::InvalidParams(vec![FieldError {
        param: param.to_string(),
        message: "is required".to_string(),
    }])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comfyui::workflow::types::{ImageInput, Param, Value};
    use crate::graph::tests::{check_against_catalog, object_info};
    use crate::templates::find;
    use serde_json::{Value as Json, json};

    fn upload(name: &str, width: u32, height: u32) -> Value {
        Value::Image(ImageInput {
            name: name.to_string(),
            width,
            height,
            has_alpha: false,
        })
    }

    fn params(extra: &[(&str, Value)]) -> Vec<Param> {
        let mut p = vec![
            Param {
                name: "prompt".into(),
                value: Value::Text("a castle".into()),
            },
            Param {
                name: "seed".into(),
                value: Value::Integer(5),
            },
        ];
        p.extend(extra.iter().map(|(n, v)| Param {
            name: n.to_string(),
            value: v.clone(),
        }));
        p
    }

    fn graph_of(id: &str, extra: &[(&str, Value)]) -> Json {
        let def = find(id).expect("template");
        let settings = Settings::decode(def, &params(extra)).expect("valid");
        let text = crate::graph::build(def, &settings, "model.safetensors").expect("builds");
        serde_json::from_str(&text).expect("JSON")
    }

    fn catalog() -> Json {
        let mut catalog = object_info();
        catalog["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] =
            json!(["model.safetensors"]);
        for class in ["LoadImage", "LoadImageMask"] {
            catalog[class]["input"]["required"]["image"][0] =
                json!(["comfyui-mcp/in.png", "comfyui-mcp/mask.png"]);
        }
        catalog
    }

    #[test]
    fn variation_encodes_the_image_and_samples_with_its_denoise() {
        let g = graph_of(
            "image-variation",
            &[("image", upload("comfyui-mcp/in.png", 512, 768))],
        );
        check_against_catalog(&g, &catalog());
        assert_eq!(
            g["4"],
            json!({"class_type": "LoadImage", "inputs": {"image": "comfyui-mcp/in.png"}})
        );
        assert!(g.get("5").is_none(), "512x768 needs no scaling");
        assert_eq!(
            g["6"]["inputs"],
            json!({"pixels": ["4", 0], "vae": ["1", 2]})
        );
        assert_eq!(g["11"]["inputs"]["latent_image"], json!(["6", 0]));
        assert_eq!(
            g["11"]["inputs"]["denoise"],
            json!(0.6),
            "the template's default"
        );
        assert_eq!(g["12"]["inputs"]["samples"], json!(["11", 0]));
        assert_eq!(
            g["13"]["inputs"],
            json!({"images": ["12", 0], "filename_prefix": "comfyui-mcp/image-variation"})
        );
        let ids: Vec<&String> = g.as_object().expect("object").keys().collect();
        assert_eq!(ids, ["1", "2", "3", "4", "6", "11", "12", "13"]);
        // Nothing of the inpaint branch.
        assert!(g.get("7").is_none() && g.get("9").is_none());
    }

    #[test]
    fn variation_scales_odd_sizes_and_repeats_batches() {
        let g = graph_of(
            "image-variation",
            &[
                ("image", upload("comfyui-mcp/in.png", 4000, 3000)),
                ("denoise", Value::Number(0.25)),
                ("batch_size", Value::Integer(3)),
            ],
        );
        check_against_catalog(&g, &catalog());
        assert_eq!(
            g["5"]["inputs"],
            json!({"image": ["4", 0], "upscale_method": "lanczos", "width": 2048, "height": 1536, "crop": "disabled"})
        );
        assert_eq!(g["6"]["inputs"]["pixels"], json!(["5", 0]));
        assert_eq!(
            g["10"],
            json!({"class_type": "RepeatLatentBatch", "inputs": {"samples": ["6", 0], "amount": 3}})
        );
        assert_eq!(g["11"]["inputs"]["latent_image"], json!(["10", 0]));
        assert_eq!(g["11"]["inputs"]["denoise"], json!(0.25));
    }

    #[test]
    fn inpaint_masks_the_encoded_latent() {
        let g = graph_of(
            "inpaint",
            &[
                ("image", upload("comfyui-mcp/in.png", 300, 200)),
                ("mask", upload("comfyui-mcp/mask.png", 300, 200)),
            ],
        );
        check_against_catalog(&g, &catalog());
        assert_eq!(g["5"]["inputs"]["width"], 296);
        assert_eq!(g["5"]["inputs"]["height"], 200);
        assert_eq!(
            g["7"],
            json!({"class_type": "LoadImageMask", "inputs": {"image": "comfyui-mcp/mask.png", "channel": "red"}})
        );
        assert_eq!(
            g["8"]["inputs"],
            json!({"mask": ["7", 0], "expand": 6, "tapered_corners": true})
        );
        assert_eq!(
            g["9"]["inputs"],
            json!({"samples": ["6", 0], "mask": ["8", 0]})
        );
        assert_eq!(g["11"]["inputs"]["latent_image"], json!(["9", 0]));
        assert_eq!(g["11"]["inputs"]["denoise"], json!(1.0));

        let g = graph_of(
            "inpaint",
            &[
                ("image", upload("comfyui-mcp/in.png", 512, 512)),
                ("mask", upload("comfyui-mcp/mask.png", 512, 512)),
                ("grow_mask_by", Value::Integer(0)),
                ("batch_size", Value::Integer(2)),
            ],
        );
        check_against_catalog(&g, &catalog());
        assert!(g.get("8").is_none(), "no widening asked");
        assert_eq!(g["9"]["inputs"]["mask"], json!(["7", 0]));
        assert_eq!(g["10"]["inputs"]["samples"], json!(["9", 0]));
    }

    #[test]
    fn image_params_are_required_and_checked() {
        let def = find("inpaint").expect("template");
        let errors = match Settings::decode(
            def,
            &params(&[
                ("image", upload("a.png", 64, 64)),
                ("mask", upload("m.png", 64, 65)),
            ]),
        ) {
            Err(BuildError::InvalidParams(e)) => e,
            other => panic!("expected invalid-params, got {other:?}"),
        };
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].param, "mask");
        assert_eq!(
            errors[0].message,
            "the mask is 64x65 but the image is 64x64; they must have the same size"
        );
        let errors = match Settings::decode(def, &params(&[("image", Value::Text("x".into()))])) {
            Err(BuildError::InvalidParams(e)) => e,
            other => panic!("expected invalid-params, got {other:?}"),
        };
        let got: Vec<(&str, &str)> = errors
            .iter()
            .map(|e| (e.param.as_str(), e.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("image", "expected an image, got text"),
                ("mask", "is required")
            ]
        );
        // Text templates know no `image`.
        let portrait = find("character-portrait").expect("template");
        assert!(Settings::decode(portrait, &params(&[("image", upload("a.png", 8, 8))])).is_err());
        // Image templates know no `width`.
        let variation = find("image-variation").expect("template");
        assert!(
            Settings::decode(
                variation,
                &params(&[
                    ("image", upload("a.png", 64, 64)),
                    ("width", Value::Integer(64))
                ])
            )
            .is_err()
        );
    }

    #[test]
    fn sampling_sizes_are_multiples_of_8_within_bounds() {
        assert_eq!(sampling_size(512, 512), (512, 512));
        assert_eq!(sampling_size(513, 517), (512, 512));
        assert_eq!(sampling_size(4096, 1024), (2048, 512));
        assert_eq!(sampling_size(32, 16), (128, 64));
        assert_eq!(sampling_size(1, 1), (64, 64));
        assert_eq!(
            sampling_size(10_000, 10),
            (2048, 64),
            "squeezed, not refused"
        );
        assert_eq!(sampling_size(u32::MAX, u32::MAX), (2048, 2048));
        for (w, h) in [(100, 37), (2049, 3), (777, 2222), (64, 2048)] {
            let (a, b) = sampling_size(w, h);
            assert!(
                a % 8 == 0 && b % 8 == 0 && (64..=2048).contains(&a) && (64..=2048).contains(&b)
            );
        }
    }
}
