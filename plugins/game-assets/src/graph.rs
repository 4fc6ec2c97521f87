//! Turns a template and decoded settings into a ComfyUI API-format graph (JSON text).
//!
//! Text-to-image templates are built here; templates that start from an input image
//! (`Input::Image`, `Input::Inpaint`) are built by `image_graph.rs`, which shares the
//! prompt and save nodes below.
//!
//! Text-to-image shape (node ids are fixed strings, so graphs are diffable and provenance
//! is stable):
//!
//! ```text
//! "1" CheckpointLoaderSimple ─MODEL(0)──────────────────────────▶ "5" KSampler
//!                            ─CLIP(1)─▶ "2" CLIPTextEncode (+) ──▶      │
//!                            ─CLIP(1)─▶ "3" CLIPTextEncode (−) ──▶      │
//!                                       "4" EmptyLatentImage ────▶      ▼
//!                            ─VAE(2)──────────────────────────▶ "6" VAEDecode
//! Direct:    "6" ─▶ "7" SaveImage
//! PixelArt:  "6" ─▶ "7" ImageScale (nearest-exact, crop disabled) ─▶ "8" SaveImage
//! ```
//!
//! Every class, input name, type and output index is that of stock ComfyUI's
//! `/object_info` (a test checks the graphs against the catalog bundled with the host).
//! Invariant: the output is a pure function of its inputs; keys are written in a fixed
//! order (each node as `writer.rs` appends it), so equal inputs give byte-identical JSON.

use crate::comfyui::workflow::types::BuildError;
use crate::image_graph;
use crate::params::Settings;
use crate::templates::{Input, Style, TemplateDef};
use crate::writer::Graph;

/// Largest side, in pixels, the pixel-art sampler renders at.
pub const PIXEL_ART_MAX_RENDER_SIDE: u32 = 1024;

/// Largest pixel-art oversampling factor.
pub const PIXEL_ART_MAX_FACTOR: u32 = 4;

/// Bytes reserved for a graph's text: more than any template writes with a
/// prompt of a few hundred characters, so the buffer rarely grows.
const GRAPH_CAPACITY: usize = 4096;

/// Builds the graph for `def` with `settings`, loading checkpoint `ckpt`.
pub fn build(def: &TemplateDef, settings: &Settings, ckpt: &str) -> Result<String, BuildError> {
    let mut graph = Graph::with_capacity(GRAPH_CAPACITY + settings.prompt.len());
    match def.input {
        Input::Text => text_graph(&mut graph, def, settings, ckpt),
        Input::Image | Input::Inpaint => image_graph::graph(&mut graph, def, settings, ckpt)?,
    }
    Ok(graph.finish())
}

/// Nodes "1" to "3": the checkpoint and the two prompts.
pub fn head(graph: &mut Graph, def: &TemplateDef, settings: &Settings, ckpt: &str) {
    graph.node("1", "CheckpointLoaderSimple", |i| {
        i.text("ckpt_name", ckpt);
    });
    graph.node("2", "CLIPTextEncode", |i| {
        i.text("text", &def.positive_prompt(&settings.prompt))
            .link("clip", "1", 1);
    });
    graph.node("3", "CLIPTextEncode", |i| {
        i.text("text", &def.negative_prompt(&settings.negative_prompt))
            .link("clip", "1", 1);
    });
}

/// The KSampler of both graph kinds: model and prompts from `head`, the latent
/// from output 0 of node `latent`.
pub fn sampler(graph: &mut Graph, id: &str, settings: &Settings, latent: &str) {
    graph.node(id, "KSampler", |i| {
        i.link("model", "1", 0)
            .int("seed", settings.seed)
            .int("steps", settings.steps)
            .number("cfg", settings.cfg_scale)
            .text("sampler_name", &settings.sampler)
            .text("scheduler", &settings.scheduler)
            .link("positive", "2", 0)
            .link("negative", "3", 0)
            .link("latent_image", latent, 0)
            .number("denoise", settings.denoise);
    });
}

/// Node `id`: VAEDecode of output 0 of node `samples`, with the checkpoint's VAE.
pub fn decode(graph: &mut Graph, id: &str, samples: &str) {
    graph.node(id, "VAEDecode", |i| {
        i.link("samples", samples, 0).link("vae", "1", 2);
    });
}

/// The text-to-image graph.
fn text_graph(graph: &mut Graph, def: &TemplateDef, settings: &Settings, ckpt: &str) {
    let (latent_width, latent_height) = match def.style {
        Style::Direct => (settings.width, settings.height),
        Style::PixelArt => {
            let k = render_scale(settings.width, settings.height);
            (settings.width * k, settings.height * k)
        }
    };
    head(graph, def, settings, ckpt);
    graph.node("4", "EmptyLatentImage", |i| {
        i.int("width", latent_width)
            .int("height", latent_height)
            .int("batch_size", settings.batch_size);
    });
    sampler(graph, "5", settings, "4");
    decode(graph, "6", "5");
    let prefix = save_prefix(def);
    match def.style {
        Style::Direct => save_image(graph, "7", "6", &prefix),
        Style::PixelArt => {
            graph.node("7", "ImageScale", |i| {
                i.link("image", "6", 0)
                    .text("upscale_method", "nearest-exact")
                    .int("width", settings.width)
                    .int("height", settings.height)
                    .text("crop", "disabled");
            });
            save_image(graph, "8", "7", &prefix);
        }
    }
}

/// `SaveImage.filename_prefix` of a template's outputs.
pub fn save_prefix(def: &TemplateDef) -> String {
    format!("comfyui-mcp/{}", def.id)
}

/// Node `id`: a SaveImage fed by the IMAGE output (index 0) of node `from`.
pub fn save_image(graph: &mut Graph, id: &str, from: &str, prefix: &str) {
    graph.node(id, "SaveImage", |i| {
        i.link("images", from, 0).text("filename_prefix", prefix);
    });
}

/// Pixel-art oversampling factor: the largest integer `k` in `1..=4` with
/// `k * max(width, height) <= 1024`, and 1 when even the requested size is larger.
/// An integer factor makes the nearest-exact downscale map each output pixel to one
/// `k x k` block, and keeps the latent size a multiple of 8.
pub fn render_scale(width: u32, height: u32) -> u32 {
    let side = width.max(height).max(1);
    (PIXEL_ART_MAX_RENDER_SIDE / side).clamp(1, PIXEL_ART_MAX_FACTOR)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::comfyui::workflow::types::{Param, Value};
    use crate::templates::{Input, TEMPLATES, find};
    use serde_json::{Value as Json, json};
    use std::path::Path;

    fn settings(def: &TemplateDef, extra: &[(&str, Value)]) -> Settings {
        let mut params = vec![
            Param {
                name: "prompt".to_string(),
                value: Value::Text("a brave \"quoted\" fox\n".to_string()),
            },
            Param {
                name: "seed".to_string(),
                value: Value::Integer(9_007_199_254_740_991),
            },
        ];
        params.extend(extra.iter().map(|(n, v)| Param {
            name: n.to_string(),
            value: v.clone(),
        }));
        Settings::decode(def, &params).expect("valid settings")
    }

    fn graph(id: &str, extra: &[(&str, Value)]) -> Json {
        let def = find(id).expect("template exists");
        let text = build(def, &settings(def, extra), "model.safetensors").expect("builds");
        serde_json::from_str(&text).expect("valid JSON")
    }

    pub(crate) fn object_info() -> Json {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../host/comfyui/data/object_info.json");
        let text = std::fs::read_to_string(&path).expect("bundled object_info.json");
        serde_json::from_str(&text).expect("object_info parses")
    }

    /// Checks a graph the way ComfyUI's validation does, for the features we use:
    /// known classes, only declared inputs, every required input present, links to
    /// existing nodes with a matching output type, combo values in their lists, and
    /// numbers within bounds; and at least one output node.
    pub(crate) fn check_against_catalog(graph: &Json, catalog: &Json) {
        let nodes = graph.as_object().expect("graph is an object");
        let mut has_output = false;
        for (id, node) in nodes {
            let class = node["class_type"].as_str().expect("class_type");
            let info = &catalog[class];
            assert!(info.is_object(), "node {id}: unknown class {class}");
            has_output |= info["output_node"] == json!(true);
            let required = info["input"]["required"]
                .as_object()
                .expect("required inputs");
            let inputs = node["inputs"].as_object().expect("inputs");
            for name in required.keys() {
                assert!(
                    inputs.contains_key(name),
                    "node {id} ({class}): missing {name}"
                );
            }
            for (name, value) in inputs {
                let decl = required
                    .get(name)
                    .unwrap_or_else(|| panic!("node {id} ({class}): undeclared input {name}"));
                let (kind, opts) = (&decl[0], &decl[1]);
                match value {
                    Json::Array(link) => {
                        let from = link[0].as_str().expect("link source id");
                        let index = link[1].as_u64().expect("link output index") as usize;
                        let src_class = nodes[from]["class_type"].as_str().expect("class");
                        let outputs = catalog[src_class]["output"].as_array().expect("outputs");
                        assert_eq!(
                            outputs.get(index),
                            Some(kind),
                            "node {id}.{name}: link to {from}[{index}] has the wrong type"
                        );
                    }
                    Json::String(s) if kind.is_array() => {
                        let allowed = kind.as_array().expect("combo");
                        assert!(
                            allowed.contains(&json!(s)),
                            "node {id}.{name}: {s} not allowed"
                        );
                    }
                    Json::String(_) => assert_eq!(kind, "STRING", "node {id}.{name}"),
                    Json::Bool(_) => assert_eq!(kind, "BOOLEAN", "node {id}.{name}"),
                    Json::Number(n) => {
                        assert!(kind == "INT" || kind == "FLOAT", "node {id}.{name}: {kind}");
                        if kind == "INT" {
                            assert!(n.is_u64() || n.is_i64(), "node {id}.{name}: not an integer");
                        }
                        let v = n.as_f64().expect("number");
                        if let Some(min) = opts["min"].as_f64() {
                            assert!(v >= min, "node {id}.{name}: {v} < {min}");
                        }
                        if let Some(max) = opts["max"].as_f64() {
                            assert!(v <= max, "node {id}.{name}: {v} > {max}");
                        }
                    }
                    other => panic!("node {id}.{name}: unexpected literal {other}"),
                }
            }
        }
        assert!(has_output, "graph has no output node");
    }

    #[test]
    fn every_template_builds_a_graph_stock_comfyui_accepts() {
        let mut catalog = object_info();
        // The bundled catalog comes from a ComfyUI without models; install ours.
        catalog["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] =
            json!(["model.safetensors"]);
        for def in TEMPLATES.iter().filter(|t| t.input == Input::Text) {
            for extra in [
                vec![],
                vec![
                    ("width", Value::Integer(2048)),
                    ("height", Value::Integer(64)),
                    ("batch_size", Value::Integer(4)),
                    ("sampler", Value::Text("uni_pc_bh2".to_string())),
                    ("scheduler", Value::Text("kl_optimal".to_string())),
                    ("denoise", Value::Number(0.0)),
                    ("cfg_scale", Value::Number(30.0)),
                    ("steps", Value::Integer(150)),
                ],
            ] {
                let g = graph(def.id, &extra);
                check_against_catalog(&g, &catalog);
            }
        }
    }

    /// The host's golden files (`tests/golden/<template>/<case>.json`) pin the graphs of
    /// the text templates; 2.0 must build exactly the same graphs from the same params.
    #[test]
    fn text_templates_still_build_the_golden_graphs() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden");
        let installed = [
            "tiny-random-sd15.safetensors".to_string(),
            "random-sd15-full.safetensors".to_string(),
        ];
        let mut checked = 0;
        for def in TEMPLATES.iter().filter(|t| t.input == Input::Text) {
            let dir = root.join(def.id);
            let mut files: Vec<_> = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .map(|e| e.expect("entry").path())
                .collect();
            files.sort();
            for path in files {
                let golden: Json =
                    serde_json::from_str(&std::fs::read_to_string(&path).expect("read"))
                        .expect("golden JSON");
                let params: Vec<Param> = golden["params"]
                    .as_object()
                    .expect("params")
                    .iter()
                    .map(|(name, v)| Param {
                        name: name.clone(),
                        value: match v {
                            Json::String(s) => Value::Text(s.clone()),
                            Json::Bool(b) => Value::Boolean(*b),
                            Json::Number(n) if n.is_i64() => {
                                Value::Integer(n.as_i64().expect("i64"))
                            }
                            Json::Number(n) => Value::Number(n.as_f64().expect("f64")),
                            other => panic!("{}: unexpected {other}", path.display()),
                        },
                    })
                    .collect();
                let s = Settings::decode(def, &params).expect("valid golden params");
                let ckpt = crate::checkpoint::choose(s.checkpoint.as_deref(), &installed)
                    .expect("checkpoint");
                let built: Json =
                    serde_json::from_str(&build(def, &s, &ckpt).expect("builds")).expect("JSON");
                assert_eq!(built, golden["graph"], "{}", path.display());
                checked += 1;
            }
        }
        assert_eq!(checked, 13);
    }

    #[test]
    fn sampler_and_scheduler_lists_are_those_of_the_catalog() {
        let catalog = object_info();
        let ks = &catalog["KSampler"]["input"]["required"];
        assert_eq!(ks["sampler_name"][0], json!(crate::comfy::SAMPLERS));
        assert_eq!(ks["scheduler"][0], json!(crate::comfy::SCHEDULERS));
    }

    #[test]
    fn same_inputs_give_byte_identical_json_with_stable_key_order() {
        let def = find("item-icon").expect("exists");
        let s = settings(def, &[("negative_prompt", Value::Text("red".to_string()))]);
        let a = build(def, &s, "m.ckpt").expect("builds");
        let b = build(def, &s.clone(), "m.ckpt").expect("builds");
        assert_eq!(a, b);
        assert!(a.starts_with(r#"{"1":{"class_type":"CheckpointLoaderSimple","inputs":{"ckpt_name":"m.ckpt"}},"2":"#), "{a}");
        assert!(
            a.contains(r#""seed":9007199254740991,"steps":20,"cfg":7.0,"sampler_name":"euler""#),
            "{a}"
        );
    }

    #[test]
    fn direct_templates_sample_at_the_requested_size_and_save() {
        let g = graph(
            "character-portrait",
            &[
                ("width", Value::Integer(512)),
                ("height", Value::Integer(768)),
            ],
        );
        assert_eq!(
            g["4"]["inputs"],
            json!({"width": 512, "height": 768, "batch_size": 1})
        );
        assert_eq!(g["7"]["class_type"], "SaveImage");
        assert_eq!(g["7"]["inputs"]["images"], json!(["6", 0]));
        assert_eq!(
            g["7"]["inputs"]["filename_prefix"],
            "comfyui-mcp/character-portrait"
        );
        assert!(g.get("8").is_none());
        let text = g["2"]["inputs"]["text"].as_str().expect("text");
        assert!(
            text.contains("a brave \"quoted\" fox, head and shoulders"),
            "{text}"
        );
    }

    #[test]
    fn pixel_art_oversamples_then_downscales_nearest_exact() {
        let g = graph("pixel-art", &[]);
        assert_eq!(g["4"]["inputs"]["width"], 1024);
        assert_eq!(g["4"]["inputs"]["height"], 1024);
        assert_eq!(
            g["7"],
            json!({"class_type": "ImageScale", "inputs": {"image": ["6", 0],
                "upscale_method": "nearest-exact", "width": 256, "height": 256, "crop": "disabled"}})
        );
        assert_eq!(g["8"]["inputs"]["images"], json!(["7", 0]));
        assert_eq!(g["8"]["inputs"]["filename_prefix"], "comfyui-mcp/pixel-art");

        let wide = graph(
            "pixel-art",
            &[
                ("width", Value::Integer(320)),
                ("height", Value::Integer(128)),
            ],
        );
        assert_eq!(
            (
                &wide["4"]["inputs"]["width"],
                &wide["4"]["inputs"]["height"]
            ),
            (&json!(960), &json!(384))
        );
    }

    #[test]
    fn render_scale_is_capped() {
        assert_eq!(render_scale(64, 64), 4);
        assert_eq!(render_scale(256, 256), 4);
        assert_eq!(render_scale(264, 64), 3);
        assert_eq!(render_scale(512, 512), 2);
        assert_eq!(render_scale(1024, 64), 1);
        assert_eq!(render_scale(2048, 2048), 1);
    }
}
