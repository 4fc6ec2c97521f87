//! `game-assets`: the workflow pack shipped with comfyui-mcp (pack ABI
//! `comfyui:workflow@2.0.0`, world `postprocessing-pack`).
//!
//! Six templates for game art, each a ComfyUI API-format graph made only of core nodes:
//! four text-to-image ones (`character-portrait`, `item-icon`, `environment-texture`,
//! `pixel-art`) and two that start from an uploaded image (`image-variation`,
//! `inpaint`). Three are post-processed by the pack itself, on the decoded RGBA pixels
//! the host passes: `pixel-art` gets a median-cut palette, `environment-texture` is made
//! seamless, `item-icon` gets a transparent background (see `post.rs` and the
//! `game-assets-imaging` crate in `imaging/`).
//!
//! This module is the glue to the WIT world: it asks the host for installed checkpoints,
//! logs once per call, and delegates the rest to pure modules (unit-tested natively).
//!
//! Invariants: `build` and `postprocess` never panic on any input (every problem is a
//! `build-error`), and equal inputs (template id, parameters, installed checkpoints,
//! pixels) give byte-identical results.

mod checkpoint;
mod comfy;
mod graph;
mod image_graph;
mod params;
mod post;
mod templates;
mod writer;

wit_bindgen::generate!({
    path: "../../wit/v2",
    world: "postprocessing-pack",
});

use comfyui::workflow::host::{self, Level};
use comfyui::workflow::types::{
    BuildError, PackInfo, Param, PostprocessStep, Postprocessed, RgbaImage as WitImage,
    TemplateInfo,
};
use exports::comfyui::workflow::postprocessor::Guest as PostprocessorGuest;
use exports::comfyui::workflow::templates::Guest as TemplatesGuest;

/// The exported pack; stateless (the host gives every call a fresh instance).
struct GameAssets;

impl TemplatesGuest for GameAssets {
    fn info() -> PackInfo {
        PackInfo {
            name: env!("CARGO_PKG_NAME").to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: env!("CARGO_PKG_DESCRIPTION").to_string(),
        }
    }

    fn list() -> Vec<TemplateInfo> {
        templates::TEMPLATES
            .iter()
            .map(templates::TemplateDef::info)
            .collect()
    }

    fn build(id: String, params: Vec<Param>) -> Result<String, BuildError> {
        let def = templates::find(&id).ok_or_else(|| BuildError::UnknownTemplate(id.clone()))?;
        let settings = params::Settings::decode(def, &params)?;
        let installed = host::models(comfy::CHECKPOINT_FOLDER);
        let ckpt = checkpoint::choose(settings.checkpoint.as_deref(), &installed)?;
        host::log(
            Level::Debug,
            &format!(
                "building {id}: {}x{} steps={} cfg={} sampler={} scheduler={} seed={} denoise={} batch={} checkpoint={ckpt}",
                settings.width,
                settings.height,
                settings.steps,
                settings.cfg_scale,
                settings.sampler,
                settings.scheduler,
                settings.seed,
                settings.denoise,
                settings.batch_size,
            ),
        );
        graph::build(def, &settings, &ckpt)
    }
}

impl PostprocessorGuest for GameAssets {
    fn postprocess(
        id: String,
        params: Vec<Param>,
        image: WitImage,
    ) -> Result<Postprocessed, BuildError> {
        let def = templates::find(&id).ok_or_else(|| BuildError::UnknownTemplate(id.clone()))?;
        let settings = params::Settings::decode(def, &params)?;
        let (width, height) = (image.width, image.height);
        let input = imaging::RgbaImage::new(width, height, image.pixels)
            .map_err(|e| BuildError::Failed(format!("cannot post-process: {e}")))?;
        let (output, steps) = post::apply(def.post, &settings, input);
        host::log(
            Level::Debug,
            &format!(
                "post-processed a {width}x{height} {id} image: {}",
                if steps.is_empty() {
                    "unchanged".to_string()
                } else {
                    steps
                        .iter()
                        .map(|s| s.detail.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                }
            ),
        );
        Ok(Postprocessed {
            image: WitImage {
                width: output.width(),
                height: output.height(),
                pixels: output.into_pixels(),
            },
            steps: steps
                .into_iter()
                .map(|s| PostprocessStep {
                    name: s.name.to_string(),
                    detail: s.detail,
                })
                .collect(),
        })
    }
}

export!(GameAssets);
