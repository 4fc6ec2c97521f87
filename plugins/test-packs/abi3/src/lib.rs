//! Test pack `abi3`: a well-formed pack built against a copy of the 2.0 WIT whose
//! package is `comfyui:workflow@3.0.0` (in `wit/`, otherwise identical). Its imports
//! and exports are all `comfyui:workflow/*@3.0.0`; a host serving 1.x and 2.x must
//! refuse it before compiling and name the version found and both supported majors.

wit_bindgen::generate!({
    path: "wit",
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
        vec![TemplateInfo {
            id: "abi3".to_string(),
            name: "ABI 3".to_string(),
            description: "Built against comfyui:workflow@3.0.0.".to_string(),
            category: "test".to_string(),
            tags: vec!["test".to_string()],
            default_width: 64,
            default_height: 64,
            params: Vec::new(),
            postprocess: false,
        }]
    }

    fn build(id: String, _params: Vec<Param>) -> Result<String, BuildError> {
        if id != "abi3" {
            return Err(BuildError::UnknownTemplate(id));
        }
        comfyui::workflow::host::log(
            comfyui::workflow::host::Level::Debug,
            "abi3: building (a 1.x/2.x host should never get here)",
        );
        Ok(concat!(
            r#"{"1":{"class_type":"EmptyImage","inputs":{"width":64,"height":64,"batch_size":1,"color":0}},"#,
            r#""2":{"class_type":"SaveImage","inputs":{"images":["1",0],"filename_prefix":"abi3"}}}"#
        )
        .to_string())
    }
}

export!(Pack);
