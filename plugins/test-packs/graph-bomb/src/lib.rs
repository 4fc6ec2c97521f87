//! Hostile test pack `graph-bomb`: graphs that attack the host's graph check and node policy.
//! With its defaults every template builds the valid solid-colour graph (so the pack passes its
//! self-test); its parameters turn on the attack:
//!
//! - `near-miss` (`nodes` = N > 0): N nodes whose class names are one edit away from stock
//!   classes, each with a combo value one edit away from a sampler name. Every node is a
//!   defect with a likely "did you mean", the costliest report a graph can ask for; the host
//!   must cap the report and the suggestions, and check off its async workers.
//! - `chain` (`pairs` = P): P valid EmptyImage → SaveImage pairs (2P nodes), to sit exactly at
//!   or just over the host's node cap.
//! - `checkpoint-save` (`save` = 1): loads a checkpoint and saves it again with CheckpointSave,
//!   into a folder outside ComfyUI's output folder (`../../models/checkpoints/`).
//! - `api-node` (`paid` = 1): generates the image with OpenAIDalle3, a paid API node.

use test_pack_support::{
    BuildError, Param, TemplateInfo, host, int_param, int_value, json_string, prompt_param,
    solid_color_graph, template,
};

/// Class names one edit away from stock ComfyUI classes.
const NEAR_MISSES: &[&str] = &[
    "KSamplr",
    "SaveImagee",
    "EmptyImag",
    "VAEDecod",
    "CLIPTextEncod",
    "LoadImge",
    "ImageScal",
    "CheckpointLoaderSimpl",
    "EmptyLatentImag",
    "PreviewImag",
];

/// The valid graph every template builds with its defaults.
fn harmless() -> String {
    solid_color_graph(64, 64, 0, "graph-bomb/ok")
}

fn near_miss(nodes: i64) -> String {
    let mut out = String::from("{");
    for i in 0..nodes {
        if i > 0 {
            out.push(',');
        }
        let class = NEAR_MISSES[(i as usize) % NEAR_MISSES.len()];
        out.push_str(&format!(
            r#""{i}":{{"class_type":{},"inputs":{{"sampler_name":"eulerr","scheduler":"normall"}}}}"#,
            json_string(class)
        ));
    }
    out.push('}');
    out
}

fn chain(pairs: i64) -> String {
    let mut out = String::from("{");
    for pair in 0..pairs {
        if pair > 0 {
            out.push(',');
        }
        let (a, b) = (2 * pair, 2 * pair + 1);
        out.push_str(&format!(
            concat!(
                r#""{a}":{{"class_type":"EmptyImage","inputs":{{"width":8,"height":8,"batch_size":1,"color":0}}}},"#,
                r#""{b}":{{"class_type":"SaveImage","inputs":{{"images":["{a}",0],"filename_prefix":"graph-bomb/chain"}}}}"#
            ),
            a = a,
            b = b
        ));
    }
    out.push('}');
    out
}

fn checkpoint_save() -> String {
    let checkpoint = host::models("checkpoints")
        .into_iter()
        .next()
        .unwrap_or_else(|| "model.safetensors".to_string());
    format!(
        concat!(
            r#"{{"1":{{"class_type":"CheckpointLoaderSimple","inputs":{{"ckpt_name":{}}}}},"#,
            r#""2":{{"class_type":"CheckpointSave","inputs":{{"model":["1",0],"clip":["1",1],"vae":["1",2],"filename_prefix":"../../models/checkpoints/pwned"}}}},"#,
            r#""3":{{"class_type":"EmptyImage","inputs":{{"width":64,"height":64,"batch_size":1,"color":0}}}},"#,
            r#""4":{{"class_type":"SaveImage","inputs":{{"images":["3",0],"filename_prefix":"graph-bomb/cover"}}}}}}"#
        ),
        json_string(&checkpoint)
    )
}

fn api_node() -> String {
    concat!(
        r#"{"1":{"class_type":"OpenAIDalle3","inputs":{"prompt":"a cat","seed":0,"quality":"hd","style":"vivid","size":"1024x1024"}},"#,
        r#""2":{"class_type":"SaveImage","inputs":{"images":["1",0],"filename_prefix":"graph-bomb/paid"}}}"#
    )
    .to_string()
}

test_pack_support::pack! { list: list, build: build }

fn list() -> Vec<TemplateInfo> {
    vec![
        template(
            "near-miss",
            "Near Miss",
            "N nodes of near-miss class names.",
            vec![
                prompt_param(),
                int_param(
                    "nodes",
                    "Number of nodes (0: a valid graph).",
                    0,
                    0,
                    100_000,
                ),
            ],
        ),
        template(
            "chain",
            "Chain",
            "P valid EmptyImage -> SaveImage pairs.",
            vec![
                prompt_param(),
                int_param("pairs", "Number of pairs.", 1, 1, 100_000),
            ],
        ),
        template(
            "checkpoint-save",
            "Checkpoint Save",
            "Saves a checkpoint outside the output folder.",
            vec![
                prompt_param(),
                int_param("save", "1: add the CheckpointSave node.", 0, 0, 1),
            ],
        ),
        template(
            "api-node",
            "API Node",
            "Uses a paid API node.",
            vec![
                prompt_param(),
                int_param("paid", "1: use OpenAIDalle3.", 0, 0, 1),
            ],
        ),
    ]
}

fn build(id: String, params: Vec<Param>) -> Result<String, BuildError> {
    let graph = match id.as_str() {
        "near-miss" => match int_value(&params, "nodes", 0, 0, 100_000) {
            0 => harmless(),
            n => near_miss(n),
        },
        "chain" => chain(int_value(&params, "pairs", 1, 1, 100_000)),
        "checkpoint-save" => match int_value(&params, "save", 0, 0, 1) {
            0 => harmless(),
            _ => checkpoint_save(),
        },
        "api-node" => match int_value(&params, "paid", 0, 0, 1) {
            0 => harmless(),
            _ => api_node(),
        },
        _ => return Err(BuildError::UnknownTemplate(id)),
    };
    Ok(graph)
}
