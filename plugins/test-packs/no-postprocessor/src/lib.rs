//! Test pack `no-postprocessor`: ABI 2.0, world `workflow-pack` (no `postprocessor`
//! export), yet its template `flagged` sets `postprocess`. The host must refuse it at
//! load, naming the template and the missing export.

wit_bindgen::generate!({
    path: "../../../wit/v2",
    world: "workflow-pack",
});

use comfyui::workflow::types::{BuildError, PackInfo, Param, TemplateInfo};

struct Pack;

impl exports::comfyui::workflow::templates::Guest for Pack {
    fn info() -> PackInfo {
        PackInfo {
            name: env!("CARGO_PKG_NAME").to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: env!("CARGO_PKG_DESCRIPTION").to_string(),
        }
    }

    fn list() -> Vec<TemplateInfo> {
        let template = |id: &str, postprocess| TemplateInfo {
            id: id.to_string(),
            name: id.to_string(),
            description: "no-postprocessor test template.".to_string(),
            category: "test".to_string(),
            tags: Vec::new(),
            default_width: 64,
            default_height: 64,
            params: Vec::new(),
            postprocess,
        };
        vec![template("unflagged", false), template("flagged", true)]
    }

    fn build(id: String, _params: Vec<Param>) -> Result<String, BuildError> {
        Err(BuildError::Failed(format!("{id}: never built")))
    }
}

export!(Pack);
