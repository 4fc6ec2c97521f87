//! Test pack `mini-abi2`: the smallest pack of ABI `comfyui:workflow@2.0.0` (world
//! `postprocessing-pack`). Template `invert` takes an image (`LoadImage` -> `SaveImage`),
//! has parameter examples, and is post-processed: every pixel's red, green and blue are
//! inverted (alpha kept), reported as one step `invert`. Template `plain` has a mask
//! parameter and no post-processing.

wit_bindgen::generate!({
    path: "../../../wit/v2",
    world: "postprocessing-pack",
});

use comfyui::workflow::types::{
    BuildError, FieldError, PackInfo, Param, ParamSpec, PostprocessStep, Postprocessed,
    RgbaImage, TemplateInfo, Value, ValueKind,
};

struct Pack;

fn spec(name: &str, kind: ValueKind, description: &str) -> ParamSpec {
    ParamSpec {
        name: name.to_string(),
        kind,
        description: description.to_string(),
        required: false,
        default: None,
        minimum: None,
        maximum: None,
        multiple_of: None,
        choices: Vec::new(),
        aliases: Vec::new(),
        examples: Vec::new(),
    }
}

fn template(id: &str, params: Vec<ParamSpec>, postprocess: bool) -> TemplateInfo {
    TemplateInfo {
        id: id.to_string(),
        name: id.to_string(),
        description: format!("mini-abi2 test template `{id}`."),
        category: "test".to_string(),
        tags: vec!["test".to_string()],
        default_width: 64,
        default_height: 64,
        params,
        postprocess,
    }
}

fn image_name(params: &[Param], name: &str) -> Option<String> {
    params.iter().find_map(|p| match &p.value {
        Value::Image(image) if p.name == name => Some(image.name.clone()),
        _ => None,
    })
}

fn load_and_save(image: &str, prefix: &str) -> String {
    let image = image.replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        concat!(
            r#"{{"1":{{"class_type":"LoadImage","inputs":{{"image":"{image}"}}}},"#,
            r#""2":{{"class_type":"SaveImage","inputs":{{"images":["1",0],"filename_prefix":"{prefix}"}}}}}}"#
        ),
        image = image,
        prefix = prefix,
    )
}

impl exports::comfyui::workflow::templates::Guest for Pack {
    fn info() -> PackInfo {
        PackInfo {
            name: env!("CARGO_PKG_NAME").to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: env!("CARGO_PKG_DESCRIPTION").to_string(),
        }
    }

    fn list() -> Vec<TemplateInfo> {
        vec![
            template(
                "invert",
                vec![
                    ParamSpec {
                        required: true,
                        ..spec("image", ValueKind::Image, "The image to invert.")
                    },
                    ParamSpec {
                        default: Some(Value::Text("an inverted picture".to_string())),
                        examples: vec![
                            Value::Text("a red fox".to_string()),
                            Value::Text("a castle at dusk".to_string()),
                        ],
                        ..spec("prompt", ValueKind::Text, "What the picture shows.")
                    },
                    ParamSpec {
                        default: Some(Value::Integer(20)),
                        minimum: Some(1.0),
                        maximum: Some(50.0),
                        examples: vec![Value::Integer(10), Value::Integer(30)],
                        ..spec("steps", ValueKind::Integer, "Sampling steps.")
                    },
                ],
                true,
            ),
            template(
                "plain",
                vec![
                    ParamSpec {
                        required: true,
                        ..spec("image", ValueKind::Image, "The picture.")
                    },
                    spec("mask", ValueKind::Mask, "Where to change it."),
                ],
                false,
            ),
        ]
    }

    fn build(id: String, params: Vec<Param>) -> Result<String, BuildError> {
        let prefix = match id.as_str() {
            "invert" => "mini-abi2/invert",
            "plain" => "mini-abi2/plain",
            _ => return Err(BuildError::UnknownTemplate(id)),
        };
        match image_name(&params, "image") {
            Some(image) => Ok(load_and_save(&image, prefix)),
            None => Err(BuildError::InvalidParams(vec![FieldError {
                param: "image".to_string(),
                message: "no image given".to_string(),
            }])),
        }
    }
}

impl exports::comfyui::workflow::postprocessor::Guest for Pack {
    fn postprocess(
        id: String,
        _params: Vec<Param>,
        image: RgbaImage,
    ) -> Result<Postprocessed, BuildError> {
        if id != "invert" {
            return Err(BuildError::UnknownTemplate(id));
        }
        let mut pixels = image.pixels;
        for px in pixels.chunks_exact_mut(4) {
            px[0] = 255 - px[0];
            px[1] = 255 - px[1];
            px[2] = 255 - px[2];
        }
        let count = pixels.len() / 4;
        Ok(Postprocessed {
            image: RgbaImage {
                width: image.width,
                height: image.height,
                pixels,
            },
            steps: vec![PostprocessStep {
                name: "invert".to_string(),
                detail: format!("inverted the colours of {count} pixels"),
            }],
        })
    }
}

export!(Pack);
