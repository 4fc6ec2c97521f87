//! Small wire types shared by the HTTP client, the websocket events and the job tracker.
//!
//! Invariant: these mirror ComfyUI's JSON exactly (field names as sent by ComfyUI 0.3.75), so
//! they round-trip through serde unchanged.

use serde::{Deserialize, Serialize};

/// One image ComfyUI produced or holds: what `/view` needs to fetch it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ImageRef {
    /// File name, e.g. `ComfyUI_00001_.png`.
    pub filename: String,
    /// Sub-folder inside the type's folder (`""` for none).
    #[serde(default)]
    pub subfolder: String,
    /// `output`, `temp` or `input`.
    #[serde(rename = "type", default = "default_image_type")]
    pub kind: String,
}

fn default_image_type() -> String {
    "output".into()
}

impl ImageRef {
    /// An `output` image.
    pub fn output(filename: impl Into<String>, subfolder: impl Into<String>) -> Self {
        Self {
            filename: filename.into(),
            subfolder: subfolder.into(),
            kind: "output".into(),
        }
    }
}
