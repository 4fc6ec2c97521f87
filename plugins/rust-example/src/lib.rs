//! A comfyui-mcp workflow pack written in Rust: one text-to-image template.
//!
//! This file is the glue to the WIT world `workflow-pack` (`wit/workflow.wit`): it exports
//! `comfyui:workflow/templates` and asks the host (`comfyui:workflow/host`) for the installed
//! checkpoints. The template itself (parameters, checks, graph) is plain Rust in
//! `txt2img.rs`, unit-tested on the native target with `cargo test`.
//!
//! The host runs every call in a fresh sandbox with no files, no network and fixed clocks;
//! `build` is a pure function of its parameters and of `host::models`, and never panics
//! (every problem is a `BuildError` the user reads).

mod txt2img;

wit_bindgen::generate!({
    path: "wit",
    world: "workflow-pack",
});

use comfyui::workflow::host::{self, Level};
use comfyui::workflow::types::{BuildError, PackInfo, Param, TemplateInfo};
use exports::comfyui::workflow::templates::Guest;

/// The exported pack; stateless (the host gives every call a fresh instance).
struct Pack;

impl Guest for Pack {
    fn info() -> PackInfo {
        PackInfo {
            name: env!("CARGO_PKG_NAME").to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: env!("CARGO_PKG_DESCRIPTION").to_string(),
        }
    }

    fn list() -> Vec<TemplateInfo> {
        vec![txt2img::info()]
    }

    fn build(id: String, params: Vec<Param>) -> Result<String, BuildError> {
        if id != txt2img::TEMPLATE_ID {
            return Err(BuildError::UnknownTemplate(id));
        }
        let settings = txt2img::Settings::decode(&params)?;
        let checkpoint = txt2img::choose_checkpoint(
            settings.checkpoint.as_deref(),
            &host::models(txt2img::CHECKPOINTS),
        )?;
        host::log(
            Level::Debug,
            &format!(
                "building {id}: {}x{} steps={} seed={} checkpoint={checkpoint}",
                settings.width, settings.height, settings.steps, settings.seed
            ),
        );
        Ok(txt2img::graph(&settings, &checkpoint).to_string())
    }
}

export!(Pack);
