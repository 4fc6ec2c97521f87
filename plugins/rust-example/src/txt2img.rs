//! The text-to-image template: its declaration, the checks the host cannot make, and its graph.
//!
//! comfyui-mcp's example packs (plugins/*-example) build this same template in Python,
//! JavaScript and Rust: same parameters, same graph for the same inputs. The host has already checked
//! kinds, ranges and multiples against `info().params`, filled in defaults and made the seed
//! concrete, so decoding only reads the values.

use serde_json::{Value as Json, json};

use crate::comfyui::workflow::types::{
    BuildError, FieldError, Param, ParamSpec, TemplateInfo, Value, ValueKind,
};

/// The template's id (unique across every pack a server loads).
pub const TEMPLATE_ID: &str = "rs-txt2img";
/// The model folder checkpoints come from.
pub const CHECKPOINTS: &str = "checkpoints";
/// Largest seed: 2^53 - 1, exact in every JSON client.
const MAX_SEED: i64 = (1 << 53) - 1;

fn spec(name: &str, kind: ValueKind, description: &str, default: Option<Value>) -> ParamSpec {
    ParamSpec {
        name: name.to_string(),
        kind,
        description: description.to_string(),
        required: false,
        default,
        minimum: None,
        maximum: None,
        multiple_of: None,
        choices: Vec::new(),
        aliases: Vec::new(),
    }
}

fn ranged(mut spec: ParamSpec, min: f64, max: f64, multiple_of: Option<u32>) -> ParamSpec {
    spec.minimum = Some(min);
    spec.maximum = Some(max);
    spec.multiple_of = multiple_of;
    spec
}

/// What the template is and every parameter it takes.
pub fn info() -> TemplateInfo {
    let text = |v: &str| Some(Value::Text(v.to_string()));
    let size = |name, what| {
        ranged(
            spec(name, ValueKind::Integer, what, Some(Value::Integer(512))),
            64.0,
            2048.0,
            Some(8),
        )
    };
    let mut prompt = spec("prompt", ValueKind::Text, "What to draw.", None);
    prompt.required = true;
    TemplateInfo {
        id: TEMPLATE_ID.to_string(),
        name: "Text to image (Rust)".to_string(),
        description:
            "Plain SD1.5 text-to-image with core ComfyUI nodes, from a pack written in Rust."
                .to_string(),
        category: "examples".to_string(),
        tags: vec!["txt2img".to_string(), "rust".to_string()],
        default_width: 512,
        default_height: 512,
        params: vec![
            prompt,
            spec(
                "negative_prompt",
                ValueKind::Text,
                "What to avoid.",
                text("blurry, low quality"),
            ),
            size("width", "Image width in pixels."),
            size("height", "Image height in pixels."),
            ranged(
                spec(
                    "steps",
                    ValueKind::Integer,
                    "Sampling steps.",
                    Some(Value::Integer(20)),
                ),
                1.0,
                150.0,
                None,
            ),
            ranged(
                spec(
                    "cfg_scale",
                    ValueKind::Number,
                    "How closely to follow the prompt.",
                    Some(Value::Number(7.0)),
                ),
                1.0,
                30.0,
                None,
            ),
            ranged(
                spec(
                    "seed",
                    ValueKind::Integer,
                    "Random seed for reproducible results; -1 = random.",
                    Some(Value::Integer(-1)),
                ),
                -1.0,
                MAX_SEED as f64,
                None,
            ),
            spec(
                "checkpoint",
                ValueKind::Text,
                "Checkpoint file; default: the first one ComfyUI has.",
                None,
            ),
        ],
    }
}

/// The parameters of one build, as the host passed them.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Settings {
    pub prompt: String,
    pub negative_prompt: String,
    pub width: i64,
    pub height: i64,
    pub steps: i64,
    pub cfg_scale: f64,
    pub seed: i64,
    pub checkpoint: Option<String>,
}

fn invalid(param: &str, message: String) -> BuildError {
    BuildError::InvalidParams(vec![FieldError {
        param: param.to_string(),
        message,
    }])
}

impl Settings {
    /// Reads the parameters; refuses a blank prompt (the one check the host cannot make).
    pub fn decode(params: &[Param]) -> Result<Settings, BuildError> {
        let mut s = Settings::default();
        for Param { name, value } in params {
            match (name.as_str(), value) {
                ("prompt", Value::Text(v)) => s.prompt = v.clone(),
                ("negative_prompt", Value::Text(v)) => s.negative_prompt = v.clone(),
                ("checkpoint", Value::Text(v)) => s.checkpoint = Some(v.clone()),
                ("width", Value::Integer(v)) => s.width = *v,
                ("height", Value::Integer(v)) => s.height = *v,
                ("steps", Value::Integer(v)) => s.steps = *v,
                ("seed", Value::Integer(v)) => s.seed = *v,
                ("cfg_scale", Value::Number(v)) => s.cfg_scale = *v,
                (other, v) => return Err(invalid(other, format!("unexpected value {v:?}"))),
            }
        }
        if s.prompt.trim().is_empty() {
            return Err(invalid(
                "prompt",
                "the prompt is blank; describe what to draw".to_string(),
            ));
        }
        Ok(s)
    }
}

/// The caller's checkpoint if ComfyUI has it (or lists none), else the first installed one.
pub fn choose_checkpoint(
    requested: Option<&str>,
    installed: &[String],
) -> Result<String, BuildError> {
    match requested {
        Some(name) if installed.is_empty() || installed.iter().any(|m| m == name) => Ok(name.to_string()),
        Some(name) => Err(invalid(
            "checkpoint",
            format!("checkpoint `{name}` is not installed in ComfyUI; installed: {}", installed.join(", ")),
        )),
        None => installed.first().cloned().ok_or_else(|| {
            BuildError::Failed(
                "no checkpoint installed in ComfyUI (models/checkpoints is empty); install one or pass `checkpoint`"
                    .to_string(),
            )
        }),
    }
}

/// The ComfyUI API-format graph for these settings.
pub fn graph(s: &Settings, checkpoint: &str) -> Json {
    json!({
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": s.prompt, "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": s.negative_prompt, "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": s.width, "height": s.height, "batch_size": 1}},
        "5": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["1", 0],
                "seed": s.seed,
                "steps": s.steps,
                "cfg": s.cfg_scale,
                "sampler_name": "euler",
                "scheduler": "normal",
                "positive": ["2", 0],
                "negative": ["3", 0],
                "latent_image": ["4", 0],
                "denoise": 1.0
            }
        },
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": format!("comfyui-mcp/{TEMPLATE_ID}")}}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(name: &str, value: Value) -> Param {
        Param {
            name: name.to_string(),
            value,
        }
    }

    #[test]
    fn a_blank_prompt_is_refused_naming_the_parameter() {
        match Settings::decode(&[param("prompt", Value::Text("  ".to_string()))]) {
            Err(BuildError::InvalidParams(errors)) => assert_eq!(errors[0].param, "prompt"),
            other => panic!("expected invalid-params, got {other:?}"),
        }
    }

    #[test]
    fn the_first_installed_checkpoint_is_the_default() {
        let installed = ["b.safetensors".to_string(), "a.safetensors".to_string()];
        assert_eq!(
            choose_checkpoint(None, &installed).ok().as_deref(),
            Some("b.safetensors")
        );
        assert!(matches!(
            choose_checkpoint(None, &[]),
            Err(BuildError::Failed(_))
        ));
        assert!(matches!(
            choose_checkpoint(Some("c"), &installed),
            Err(BuildError::InvalidParams(_))
        ));
    }

    #[test]
    fn the_graph_carries_the_settings() {
        let s = Settings {
            prompt: "a fox".to_string(),
            width: 64,
            height: 128,
            steps: 2,
            cfg_scale: 7.0,
            seed: 5,
            ..Settings::default()
        };
        let g = graph(&s, "m.safetensors");
        assert_eq!(g["1"]["inputs"]["ckpt_name"], "m.safetensors");
        assert_eq!(g["2"]["inputs"]["text"], "a fox");
        assert_eq!(g["4"]["inputs"]["height"], 128);
        assert_eq!(g["5"]["inputs"]["seed"], 5);
    }
}
