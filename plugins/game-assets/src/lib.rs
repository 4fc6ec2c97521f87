//! `game-assets`: the workflow pack shipped with comfyui-mcp.
//!
//! Four text-to-image templates for game art (`character-portrait`, `item-icon`,
//! `environment-texture`, `pixel-art`), each a ComfyUI API-format graph made only of
//! core nodes. This module is the glue to the WIT world `comfyui:workflow/workflow-pack`:
//! it asks the host for installed checkpoints, logs once per build, and delegates the
//! rest to pure modules (which are unit-tested on the native target).
//!
//! Invariants: `build` never panics on any input (every problem is a `build-error`),
//! and the same template id + parameters + installed checkpoints give byte-identical JSON.

pub mod imaging;
mod checkpoint;
mod comfy;
mod graph;
mod params;
mod templates;

wit_bindgen::generate!({
    path: "../../wit/v1",
    world: "workflow-pack",
});

use comfyui::workflow::host::{self, Level};
use comfyui::workflow::types::{BuildError, PackInfo, Param, TemplateInfo};
use exports::comfyui::workflow::templates::Guest;

/// The exported pack; stateless (the host gives every call a fresh instance).
struct GameAssets;

impl Guest for GameAssets {
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
                "building {id}: {}x{} steps={} cfg={} sampler={} scheduler={} seed={} batch={} checkpoint={ckpt}",
                settings.width,
                settings.height,
                settings.steps,
                settings.cfg_scale,
                settings.sampler,
                settings.scheduler,
                settings.seed,
                settings.batch_size,
            ),
        );
        graph::build(def, &settings, &ckpt)
    }
}

export!(GameAssets);
