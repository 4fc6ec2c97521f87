//! Test pack `bad-example`: ABI 2.0 parameter examples the host must refuse at load:
//! `steps` has an example above its maximum, `sampler` one outside its choices, and
//! the image parameter `init` declares an example at all. Each problem names its
//! parameter.

wit_bindgen::generate!({
    path: "../../../wit/v2",
    world: "workflow-pack",
});

use comfyui::workflow::types::{
    BuildError, ImageInput, PackInfo, Param, ParamSpec, TemplateInfo, Value, ValueKind,
};

struct Pack;

fn spec(name: &str, kind: ValueKind, examples: Vec<Value>) -> ParamSpec {
    ParamSpec {
        name: name.to_string(),
        kind,
        description: format!("{name} with a bad example."),
        required: false,
        default: None,
        minimum: None,
        maximum: None,
        multiple_of: None,
        choices: Vec::new(),
        aliases: Vec::new(),
        examples,
    }
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
        vec![TemplateInfo {
            id: "bad-example".to_string(),
            name: "Bad example".to_string(),
            description: "Examples that fail their specs.".to_string(),
            category: "test".to_string(),
            tags: Vec::new(),
            default_width: 64,
            default_height: 64,
            params: vec![
                ParamSpec {
                    minimum: Some(1.0),
                    maximum: Some(50.0),
                    ..spec(
                        "steps",
                        ValueKind::Integer,
                        vec![Value::Integer(20), Value::Integer(500)],
                    )
                },
                ParamSpec {
                    choices: vec!["euler".to_string(), "dpmpp_2m".to_string()],
                    ..spec(
                        "sampler",
                        ValueKind::Text,
                        vec![Value::Text("heun".to_string())],
                    )
                },
                spec(
                    "init",
                    ValueKind::Image,
                    vec![Value::Image(ImageInput {
                        name: "example.png".to_string(),
                        width: 8,
                        height: 8,
                        has_alpha: false,
                    })],
                ),
            ],
            postprocess: false,
        }]
    }

    fn build(id: String, _params: Vec<Param>) -> Result<String, BuildError> {
        Err(BuildError::Failed(format!("{id}: never built")))
    }
}

export!(Pack);
