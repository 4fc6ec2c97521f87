//! Test pack `post-hog`: an ABI 2.0 postprocessor that breaks each post-processing
//! limit on request, selected by the `mode` parameter of template `hog`:
//! * `echo`: returns the image unchanged (the input side of the pixel cap);
//! * `resize`: returns a `width` x `height` image (the output pixel cap);
//! * `short`: returns a buffer one byte shorter than `width * height * 4`;
//! * `zero`: returns a 0 x `height` image;
//! * `steps`: returns `count` steps, each detail `count` bytes long with a line break;
//! * `loop`: never returns (the time limit);
//! * `grow`: allocates without bound (the memory limit);
//! * `fail`: returns `failed` with a message.

wit_bindgen::generate!({
    path: "../../../wit/v2",
    world: "postprocessing-pack",
});

use comfyui::workflow::types::{
    BuildError, PackInfo, Param, ParamSpec, PostprocessStep, Postprocessed, RgbaImage,
    TemplateInfo, Value, ValueKind,
};

struct Pack;

const MODES: &[&str] = &[
    "echo", "resize", "short", "zero", "steps", "loop", "grow", "fail",
];

fn int_spec(name: &str, default: i64) -> ParamSpec {
    ParamSpec {
        name: name.to_string(),
        kind: ValueKind::Integer,
        description: format!("{name} for the modes that use it."),
        required: false,
        default: Some(Value::Integer(default)),
        minimum: Some(0.0),
        maximum: Some(1_000_000.0),
        multiple_of: None,
        choices: Vec::new(),
        aliases: Vec::new(),
        examples: Vec::new(),
    }
}

fn int(params: &[Param], name: &str) -> i64 {
    params
        .iter()
        .find_map(|p| match p.value {
            Value::Integer(i) if p.name == name => Some(i),
            _ => None,
        })
        .unwrap_or(0)
}

fn text(params: &[Param], name: &str) -> String {
    params
        .iter()
        .find_map(|p| match &p.value {
            Value::Text(t) if p.name == name => Some(t.clone()),
            _ => None,
        })
        .unwrap_or_default()
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
            id: "hog".to_string(),
            name: "Post hog".to_string(),
            description: "Breaks a post-processing limit chosen by `mode`.".to_string(),
            category: "test".to_string(),
            tags: vec!["test".to_string()],
            default_width: 8,
            default_height: 8,
            params: vec![
                ParamSpec {
                    name: "mode".to_string(),
                    kind: ValueKind::Text,
                    description: "Which limit to break.".to_string(),
                    required: false,
                    default: Some(Value::Text("echo".to_string())),
                    minimum: None,
                    maximum: None,
                    multiple_of: None,
                    choices: MODES.iter().map(|m| m.to_string()).collect(),
                    aliases: Vec::new(),
                    examples: vec![Value::Text("resize".to_string())],
                },
                int_spec("width", 8),
                int_spec("height", 8),
                int_spec("count", 1),
            ],
            postprocess: true,
        }]
    }

    fn build(id: String, _params: Vec<Param>) -> Result<String, BuildError> {
        if id != "hog" {
            return Err(BuildError::UnknownTemplate(id));
        }
        Ok(concat!(
            r#"{"1":{"class_type":"EmptyImage","inputs":{"width":8,"height":8,"batch_size":1,"color":0}},"#,
            r#""2":{"class_type":"SaveImage","inputs":{"images":["1",0],"filename_prefix":"post-hog"}}}"#
        )
        .to_string())
    }
}

fn sized(width: u32, height: u32, bytes: usize) -> RgbaImage {
    RgbaImage {
        width,
        height,
        pixels: vec![7; bytes],
    }
}

impl exports::comfyui::workflow::postprocessor::Guest for Pack {
    fn postprocess(
        id: String,
        params: Vec<Param>,
        image: RgbaImage,
    ) -> Result<Postprocessed, BuildError> {
        if id != "hog" {
            return Err(BuildError::UnknownTemplate(id));
        }
        let (w, h) = (int(&params, "width") as u32, int(&params, "height") as u32);
        let area = w as usize * h as usize * 4;
        let count = int(&params, "count") as usize;
        let image = match text(&params, "mode").as_str() {
            "echo" => image,
            "resize" => sized(w, h, area),
            "short" => sized(w, h, area.saturating_sub(1)),
            "zero" => sized(0, h, 0),
            "steps" => {
                let detail = format!("line\nbreak{}", "x".repeat(count.saturating_sub(10)));
                let steps = (0..count)
                    .map(|i| PostprocessStep {
                        name: format!("step-{i}"),
                        detail: detail.clone(),
                    })
                    .collect();
                return Ok(Postprocessed { image, steps });
            }
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "grow" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            _ => return Err(BuildError::Failed("post-hog: asked to fail".to_string())),
        };
        Ok(Postprocessed {
            image,
            steps: Vec::new(),
        })
    }
}

export!(Pack);
