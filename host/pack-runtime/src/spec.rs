//! Plain Rust types describing packs and templates, independent of the
//! generated WIT bindings so that the rest of the host never sees wasmtime types.

use serde::Serialize;

/// Identity a pack declares about itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PackInfo {
    /// Pack name, e.g. `game-assets`.
    pub name: String,
    /// Pack version chosen by its author.
    pub version: String,
    /// One line on what the pack offers.
    pub description: String,
}

/// The JSON type a parameter accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamKind {
    /// A JSON string.
    Text,
    /// A whole JSON number.
    Integer,
    /// Any JSON number.
    Number,
    /// A JSON boolean.
    Boolean,
    /// An image, sent as a JSON string naming its source (ABI 2.x).
    Image,
    /// A mask, sent like an image; white marks the region to change (ABI 2.x).
    Mask,
}

impl ParamKind {
    /// The JSON Schema `type` for this kind.
    pub fn json_type(self) -> &'static str {
        match self {
            ParamKind::Text => "string",
            ParamKind::Integer => "integer",
            ParamKind::Number => "number",
            ParamKind::Boolean => "boolean",
            ParamKind::Image | ParamKind::Mask => "string",
        }
    }

    /// Whether values of this kind are uploaded images ([`ParamValue::Image`]).
    pub fn is_image(self) -> bool {
        matches!(self, ParamKind::Image | ParamKind::Mask)
    }
}

/// An input image the host has decoded, checked and uploaded to ComfyUI for
/// one image or mask parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInput {
    /// The name ComfyUI knows the upload by (what `LoadImage.image` takes).
    pub name: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Whether the uploaded file has an alpha channel.
    pub has_alpha: bool,
    /// SHA-256 of the image as the client sent it (a mask: before its conversion to grey),
    /// hex. Host-side only: recorded in provenance, never passed to the pack.
    pub sha256: String,
}

impl ImageInput {
    /// The recorded form ([`ParamValue::to_json`] of an image) read back, for a job whose
    /// parameters come from the job store; `None` if `value` is not that shape.
    pub fn from_json(value: &serde_json::Value) -> Option<ImageInput> {
        let dimension = |key: &str| value.get(key)?.as_u64().and_then(|v| u32::try_from(v).ok());
        Some(ImageInput {
            name: value.get("image")?.as_str()?.to_owned(),
            width: dimension("width")?,
            height: dimension("height")?,
            has_alpha: value.get("has_alpha")?.as_bool()?,
            sha256: value.get("sha256")?.as_str()?.to_owned(),
        })
    }
}

/// A parameter value after host-side checking.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    /// Text.
    Text(String),
    /// Whole number.
    Integer(i64),
    /// Real number.
    Number(f64),
    /// Flag.
    Boolean(bool),
    /// An uploaded image or mask.
    Image(ImageInput),
}

impl ParamValue {
    /// The value as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            ParamValue::Text(s) => s.clone().into(),
            ParamValue::Integer(i) => (*i).into(),
            ParamValue::Number(n) => serde_json::Number::from_f64(*n)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            ParamValue::Boolean(b) => (*b).into(),
            ParamValue::Image(image) => serde_json::json!({
                "image": image.name,
                "width": image.width,
                "height": image.height,
                "has_alpha": image.has_alpha,
                "sha256": image.sha256,
            }),
        }
    }
}

/// Another accepted spelling of a choice.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alias {
    /// What callers may send.
    pub name: String,
    /// The choice it maps to.
    pub target: String,
}

/// One parameter of a template, as declared by its pack.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    /// Name as callers send it.
    pub name: String,
    /// Accepted type.
    pub kind: ParamKind,
    /// What the parameter does.
    pub description: String,
    /// Whether the caller must give it.
    pub required: bool,
    /// Value used when omitted.
    pub default: Option<ParamValue>,
    /// Inclusive lower bound.
    pub minimum: Option<f64>,
    /// Inclusive upper bound.
    pub maximum: Option<f64>,
    /// Integers must be a multiple of this.
    pub multiple_of: Option<u32>,
    /// Allowed text values; empty means any.
    pub choices: Vec<String>,
    /// Other accepted spellings of choices.
    pub aliases: Vec<Alias>,
    /// Typical values for the JSON Schema's `examples`; each passes this
    /// spec (checked at load). Always empty for image and mask kinds, and
    /// for packs of ABI 1.x.
    pub examples: Vec<ParamValue>,
}

/// A template offered by a pack.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateInfo {
    /// Unique id across all packs.
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// What it produces.
    pub description: String,
    /// Category for filtering.
    pub category: String,
    /// Tags for filtering.
    pub tags: Vec<String>,
    /// Default output width.
    pub default_width: u32,
    /// Default output height.
    pub default_height: u32,
    /// Parameters, in the pack's order.
    pub params: Vec<ParamSpec>,
    /// Whether the host post-processes each output image with the pack's
    /// `postprocessor` export (ABI 2.x; always false for 1.x packs).
    pub postprocess: bool,
}

impl TemplateInfo {
    /// The spec of a parameter by name.
    pub fn param(&self, name: &str) -> Option<&ParamSpec> {
        self.params.iter().find(|p| p.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_value_reads_back_from_its_recorded_form() {
        let input = ImageInput {
            name: "comfyui-mcp/comfyui-mcp-ab.png".into(),
            width: 640,
            height: 480,
            has_alpha: true,
            sha256: "ab".repeat(32),
        };
        let recorded = ParamValue::Image(input.clone()).to_json();
        assert_eq!(ImageInput::from_json(&recorded), Some(input));
        assert_eq!(ImageInput::from_json(&serde_json::json!("a.png")), None);
        assert_eq!(
            ImageInput::from_json(
                &serde_json::json!({"image": "a", "width": -1, "height": 1, "has_alpha": false, "sha256": ""})
            ),
            None
        );
    }
}
