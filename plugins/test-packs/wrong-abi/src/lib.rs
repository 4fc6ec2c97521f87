//! Test pack `wrong-abi`: a well-formed pack built against a copy of the WIT whose
//! package is `comfyui:workflow@2.0.0` (in `wit/`, otherwise identical to the real one).
//! Its imports (`host`, `types`) and its export (`templates`) are therefore all
//! `comfyui:workflow/*@2.0.0`, but their types are 1.0's. A host serving 2.x must refuse
//! it as an export mismatch naming 2.0.0 (a host serving only 1.x refused it as another
//! major). Its template, `wrong-abi`, would build a tiny valid graph if it were ever called.

wit_bindgen::generate!({
    path: "wit",
    world: "workflow-pack",
});

use comfyui::workflow::host::{self, Level};
use comfyui::workflow::types::{BuildError, PackInfo, Param, TemplateInfo};
use exports::comfyui::workflow::templates::Guest;

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
        vec![TemplateInfo {
            id: "wrong-abi".to_string(),
            name: "Wrong ABI".to_string(),
            description: "Built against comfyui:workflow@2.0.0.".to_string(),
            category: "test".to_string(),
            tags: vec!["test".to_string()],
            default_width: 64,
            default_height: 64,
            params: Vec::new(),
        }]
    }

    fn build(id: String, _params: Vec<Param>) -> Result<String, BuildError> {
        if id != "wrong-abi" {
            return Err(BuildError::UnknownTemplate(id));
        }
        host::log(
            Level::Debug,
            "wrong-abi: building (a 1.x host should never get here)",
        );
        Ok(concat!(
            r#"{"1":{"class_type":"EmptyImage","inputs":{"width":64,"height":64,"batch_size":1,"color":0}},"#,
            r#""2":{"class_type":"SaveImage","inputs":{"images":["1",0],"filename_prefix":"comfyui-mcp/wrong-abi"}}}"#
        )
        .to_string())
    }
}

export!(Pack);
