//! The node catalog and the graph checker against the bundled object_info of ComfyUI 0.3.75 and
//! the graphs recorded from a real ComfyUI: every recorded defect is caught before submission.

use std::path::{Path, PathBuf};

use comfyui::graph::{GraphError, GraphErrorKind, GraphErrors, check};
use comfyui::nodes::{InputKind, NodeCatalog};
use serde_json::{Value, json};

fn transcripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/transcripts")
}

fn transcript(name: &str) -> Value {
    let path = transcripts_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The graph a transcript posted.
fn posted_graph(name: &str) -> Value {
    transcript(name)["request"]["json_body"]["prompt"].clone()
}

/// The bundled catalog with the two checkpoints the recording server had (as listed in
/// `error_invalid_enum_ckpt_name_with_models_present.json`).
fn catalog_with_models() -> NodeCatalog {
    let mut catalog = (*NodeCatalog::bundled()).clone();
    catalog
        .set_choices(
            "CheckpointLoaderSimple",
            "ckpt_name",
            vec![
                "random-sd15-full.safetensors".into(),
                "tiny-random-sd15.safetensors".into(),
            ],
        )
        .unwrap();
    catalog
}

fn errors_of(graph: &Value, catalog: &NodeCatalog) -> GraphErrors {
    match check(graph, catalog) {
        Ok(summary) => panic!("expected errors, the graph passed: {summary:?}"),
        Err(errors) => errors,
    }
}

/// The single error of a graph that must have exactly one.
fn only_error(graph: &Value) -> GraphError {
    let errors = errors_of(graph, &NodeCatalog::bundled());
    assert_eq!(errors.len(), 1, "expected one error, got:\n{errors}");
    errors.errors()[0].clone()
}

fn assert_error(error: &GraphError, kind: GraphErrorKind, node: Option<&str>, input: Option<&str>) {
    assert_eq!(error.kind, kind, "{error:?}");
    assert_eq!(error.node_id.as_deref(), node, "{error:?}");
    assert_eq!(error.input.as_deref(), input, "{error:?}");
}

/// EmptyImage → ImageInvert → SaveImage, the model-free graph of the transcripts.
fn invert_graph() -> Value {
    json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "t/x"}}
    })
}

fn with(mut graph: Value, node: &str, input: &str, value: Value) -> Value {
    graph[node]["inputs"][input] = value;
    graph
}

// ---- catalog ---------------------------------------------------------------------------------

#[test]
fn bundled_catalog_parses_every_class_and_input() {
    let raw: Value = serde_json::from_slice(
        &std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("data/object_info.json"))
            .unwrap(),
    )
    .unwrap();
    let catalog = NodeCatalog::bundled();
    let raw = raw.as_object().unwrap();
    assert_eq!(raw.len(), 534);
    assert_eq!(catalog.len(), 534);
    for (name, def) in raw {
        let class = catalog
            .class(name)
            .unwrap_or_else(|| panic!("{name} missing"));
        let declared = ["required", "optional"]
            .iter()
            .filter_map(|s| def["input"].get(*s).and_then(Value::as_object))
            .map(|m| m.len())
            .sum::<usize>();
        assert_eq!(class.inputs.len(), declared, "{name}: an input was skipped");
        assert_eq!(
            class.outputs.len(),
            def["output"].as_array().unwrap().len(),
            "{name}"
        );
    }
    assert_eq!(catalog.classes().filter(|c| c.api_node).count(), 105);
    assert!(catalog.class_names().windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn ksampler_parses_limits_combos_and_links() {
    let catalog = NodeCatalog::bundled();
    let ksampler = catalog.class("KSampler").unwrap();
    assert_eq!(ksampler.outputs, ["LATENT"]);
    assert!(!ksampler.output_node);
    let names: Vec<_> = ksampler.inputs.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "model",
            "seed",
            "steps",
            "cfg",
            "sampler_name",
            "scheduler",
            "positive",
            "negative",
            "latent_image",
            "denoise"
        ]
    );
    assert_eq!(
        ksampler.input("seed").unwrap().kind,
        InputKind::Int {
            min: Some(0.0),
            max: Some(u64::MAX as f64),
            step: None
        }
    );
    assert_eq!(
        ksampler.input("model").unwrap().kind,
        InputKind::Link("MODEL".into())
    );
    let samplers = catalog.choices("KSampler", "sampler_name").unwrap();
    assert_eq!(samplers.len(), 42);
    assert_eq!(samplers[0], "euler");
    assert!(catalog.choices("KSampler", "seed").is_none());
    // No model installed on the recording server's first start: the file list is empty.
    assert_eq!(
        catalog
            .choices("CheckpointLoaderSimple", "ckpt_name")
            .unwrap()
            .len(),
        0
    );
}

#[test]
fn v3_combos_parse_with_and_without_options() {
    let catalog = NodeCatalog::bundled();
    match &catalog
        .class("ImageBlend")
        .unwrap()
        .input("blend_mode")
        .unwrap()
        .kind
    {
        InputKind::Combo { options, open } => {
            assert!(!open);
            assert_eq!(&options[..2], ["normal", "multiply"]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        catalog
            .class("LoadImageOutput")
            .unwrap()
            .input("image")
            .unwrap()
            .kind,
        InputKind::Combo {
            options: vec![],
            open: true
        }
    );
    // Uploadable file lists are open: files uploaded later are valid.
    assert!(matches!(
        catalog
            .class("LoadImage")
            .unwrap()
            .input("image")
            .unwrap()
            .kind,
        InputKind::Combo { open: true, .. }
    ));
    // Hidden inputs are kept apart.
    let save = catalog.class("SaveImage").unwrap();
    assert_eq!(save.hidden, ["prompt", "extra_pnginfo"]);
    assert!(save.output_node);
    assert!(save.input("prompt").is_none());
    let v3_hidden = catalog.classes().find(|c| c.api_node).unwrap();
    assert!(
        v3_hidden.hidden.iter().any(|h| h == "unique_id"),
        "{v3_hidden:?}"
    );
}

// ---- valid graphs ----------------------------------------------------------------------------

#[test]
fn recorded_t2i_graph_passes() {
    let summary = check(
        &posted_graph("prompt_t2i_tiny.json"),
        &catalog_with_models(),
    )
    .unwrap();
    assert_eq!(summary.output_nodes, ["9"]);
    assert_eq!(summary.node_count, 7);
}

#[test]
fn every_recorded_accepted_graph_passes() {
    let catalog = catalog_with_models();
    for name in [
        "prompt_ok.json",
        "prompt_client_chosen_prompt_id.json",
        "prompt_execution_error.json",
        "prompt_loadimage_uploaded.json",
        "prompt_t2i_full.json",
        "prompt_t2i_preview_legacy.json",
        "prompt_t2i_preview_metadata.json",
    ] {
        if let Err(errors) = check(&posted_graph(name), &catalog) {
            panic!("{name}:\n{errors}");
        }
    }
}

#[test]
fn accepts_extremes_wrappers_extras_and_typed_links() {
    let catalog = catalog_with_models();
    let mut graph = posted_graph("prompt_t2i_tiny.json");
    for seed in [
        json!(0),
        json!(9_007_199_254_740_992u64),
        json!(9_007_199_254_740_993u64),
        json!(u64::MAX),
        json!(42.0),
    ] {
        graph["3"]["inputs"]["seed"] = seed.clone();
        assert!(check(&graph, &catalog).is_ok(), "seed {seed}");
    }
    // A literal list wrapped in __value__, a _meta block, unknown and hidden inputs are fine.
    graph["6"]["inputs"]["text"] = json!({"__value__": "wrapped"});
    graph["3"]["_meta"] = json!({"title": "KSampler"});
    graph["3"]["inputs"]["not_an_input"] = json!(5);
    graph["9"]["inputs"]["prompt"] = json!({"x": 1});
    // A primitive feeding a widget input, and a '*' input fed by anything.
    graph["20"] = json!({"class_type": "PrimitiveInt", "inputs": {"value": 3}});
    graph["3"]["inputs"]["steps"] = json!(["20", 0]);
    graph["21"] = json!({"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}});
    let summary = check(&graph, &catalog).unwrap();
    assert_eq!(summary.output_nodes, ["9", "21"]);
    assert_eq!(summary.node_count, 9);
}

// ---- one defect per kind ---------------------------------------------------------------------

#[test]
fn graph_that_is_not_an_object() {
    for graph in [json!([1, 2, 3]), json!("hello"), json!(null)] {
        assert_error(&only_error(&graph), GraphErrorKind::NotAnObject, None, None);
    }
    let error = only_error(&json!({}));
    assert_error(&error, GraphErrorKind::NoOutputNode, None, None);
}

#[test]
fn node_or_inputs_that_are_not_objects() {
    let mut graph = invert_graph();
    graph["4"] = json!("SaveImage");
    assert_error(
        &only_error(&graph),
        GraphErrorKind::NotAnObject,
        Some("4"),
        None,
    );
    let mut graph = invert_graph();
    graph["2"]["inputs"] = json!([["1", 0]]);
    assert_error(
        &only_error(&graph),
        GraphErrorKind::NotAnObject,
        Some("2"),
        None,
    );
}

#[test]
fn missing_class_type() {
    let mut graph = invert_graph();
    graph["2"].as_object_mut().unwrap().remove("class_type");
    assert_error(
        &only_error(&graph),
        GraphErrorKind::MissingClassType,
        Some("2"),
        None,
    );
    graph["2"]["class_type"] = json!(7);
    assert_error(
        &only_error(&graph),
        GraphErrorKind::MissingClassType,
        Some("2"),
        None,
    );
}

#[test]
fn unknown_class_suggests_a_near_name() {
    let mut graph = invert_graph();
    graph["2"]["class_type"] = json!("ImageInvret");
    let error = only_error(&graph);
    assert_error(&error, GraphErrorKind::UnknownClass, Some("2"), None);
    assert_eq!(error.class_type.as_deref(), Some("ImageInvret"));
    assert!(
        error.message.contains("did you mean \"ImageInvert\""),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("534 node classes"),
        "{}",
        error.message
    );
}

#[test]
fn required_input_missing() {
    let mut graph = invert_graph();
    graph["1"]["inputs"]
        .as_object_mut()
        .unwrap()
        .remove("width");
    let error = only_error(&graph);
    assert_error(
        &error,
        GraphErrorKind::RequiredInputMissing,
        Some("1"),
        Some("width"),
    );
    assert_eq!(
        error.message,
        "node \"1\" (EmptyImage) is missing required input \"width\" (an integer from 1 to 16384)"
    );
}

#[test]
fn invalid_input_types() {
    let cases = [
        ("1", "width", json!("64")),
        ("1", "width", json!(64.7)),
        ("1", "width", json!(true)),
        ("3", "filename_prefix", json!(5)),
        ("2", "image", json!("a literal where a link belongs")),
    ];
    for (node, input, value) in cases {
        let error = only_error(&with(invert_graph(), node, input, value.clone()));
        assert_error(
            &error,
            GraphErrorKind::InvalidInputType,
            Some(node),
            Some(input),
        );
        assert!(
            error.message.contains(&value.to_string()),
            "{}",
            error.message
        );
    }
    let mut graph = posted_graph("prompt_t2i_tiny.json");
    graph["20"] = json!({"class_type": "ImageCrop", "inputs": {"image": ["8", 0], "width": 8, "height": 8, "x": 0, "y": 0}});
    graph["21"] = json!({"class_type": "SaveAnimatedWEBP", "inputs": {"images": ["20", 0], "filename_prefix": "x", "fps": 6.0, "lossless": "false", "quality": 80, "method": "default"}});
    let errors = errors_of(&graph, &catalog_with_models());
    assert_eq!(errors.len(), 1, "{errors}");
    assert_error(
        &errors.errors()[0],
        GraphErrorKind::InvalidInputType,
        Some("21"),
        Some("lossless"),
    );
    assert!(
        errors.errors()[0]
            .message
            .contains("non-empty string as true"),
        "{}",
        errors.errors()[0].message
    );
}

#[test]
fn values_out_of_range() {
    let error = only_error(&with(invert_graph(), "1", "batch_size", json!(0)));
    assert_error(
        &error,
        GraphErrorKind::ValueTooSmall,
        Some("1"),
        Some("batch_size"),
    );
    assert_eq!(
        error.message,
        "node \"1\" (EmptyImage) input \"batch_size\": 0 is smaller than the minimum 1; expected an integer from 1 to 4096"
    );
    let error = only_error(&with(invert_graph(), "1", "width", json!(100000)));
    assert_error(
        &error,
        GraphErrorKind::ValueTooBig,
        Some("1"),
        Some("width"),
    );

    let catalog = catalog_with_models();
    let mut graph = posted_graph("prompt_t2i_tiny.json");
    graph["3"]["inputs"]["seed"] = json!(-1);
    graph["3"]["inputs"]["cfg"] = json!(100.5);
    graph["3"]["inputs"]["denoise"] = json!(-0.5);
    let errors = errors_of(&graph, &catalog);
    let found: Vec<_> = errors
        .iter()
        .map(|e| (e.kind, e.input.as_deref().unwrap()))
        .collect();
    assert_eq!(
        found,
        [
            (GraphErrorKind::ValueTooSmall, "seed"),
            (GraphErrorKind::ValueTooBig, "cfg"),
            (GraphErrorKind::ValueTooSmall, "denoise"),
        ]
    );
    assert!(
        errors.errors()[0]
            .message
            .contains("from 0 to 18446744073709551615"),
        "{}",
        errors.errors()[0].message
    );
    // One past u64::MAX cannot be a seed.
    graph = posted_graph("prompt_t2i_tiny.json");
    graph["3"]["inputs"]["seed"] = serde_json::from_str("18446744073709551616").unwrap();
    let errors = errors_of(&graph, &catalog);
    assert_error(
        &errors.errors()[0],
        GraphErrorKind::ValueTooBig,
        Some("3"),
        Some("seed"),
    );
}

#[test]
fn value_not_in_list_names_the_choices() {
    let catalog = catalog_with_models();
    let mut graph = posted_graph("prompt_t2i_tiny.json");
    graph["3"]["inputs"]["sampler_name"] = json!("euler_fancy");
    let errors = errors_of(&graph, &catalog);
    assert_eq!(errors.len(), 1, "{errors}");
    let error = &errors.errors()[0];
    assert_error(
        error,
        GraphErrorKind::ValueNotInList,
        Some("3"),
        Some("sampler_name"),
    );
    assert!(
        error.message.starts_with(
            "node \"3\" (KSampler) input \"sampler_name\": \"euler_fancy\" is not one of euler, euler_cfg_pp, "
        ),
        "{}",
        error.message
    );
    assert!(
        error.message.contains(", ... (42 choices)"),
        "{}",
        error.message
    );
    // V3 combo, a short list given in full.
    let graph = json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "LatentBatchSeedBehavior", "inputs": {"samples": ["3", 0], "seed_behavior": "frozen"}},
        "3": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "4": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}}
    });
    let error = only_error(&graph);
    assert_error(
        &error,
        GraphErrorKind::ValueNotInList,
        Some("2"),
        Some("seed_behavior"),
    );
    assert!(
        error
            .message
            .ends_with("is not one of random, fixed (2 choices)"),
        "{}",
        error.message
    );
    // An empty file list says so.
    let error = only_error(&posted_graph("error_invalid_enum_ckpt_name.json"));
    assert!(
        error.message.contains("lists no choices"),
        "{}",
        error.message
    );
}

#[test]
fn malformed_links() {
    for bad in [
        json!(["1"]),
        json!(["1", 0, 0]),
        json!([1, 0]),
        json!(["1", 0.5]),
        json!([]),
    ] {
        let error = only_error(&with(invert_graph(), "2", "image", bad.clone()));
        assert_error(
            &error,
            GraphErrorKind::BadLinkedInput,
            Some("2"),
            Some("image"),
        );
    }
    let error = only_error(&with(invert_graph(), "2", "image", json!(["1", -1])));
    assert_error(
        &error,
        GraphErrorKind::BadOutputIndex,
        Some("2"),
        Some("image"),
    );
}

#[test]
fn link_to_missing_node_and_bad_output_index() {
    let error = only_error(&with(invert_graph(), "2", "image", json!(["99", 0])));
    assert_error(
        &error,
        GraphErrorKind::LinkToMissingNode,
        Some("2"),
        Some("image"),
    );
    assert!(
        error.message.contains("\"99\"") && error.message.contains("1, 2, 3 (3 nodes)"),
        "{}",
        error.message
    );
    let error = only_error(&with(invert_graph(), "2", "image", json!(["1", 5])));
    assert_error(
        &error,
        GraphErrorKind::BadOutputIndex,
        Some("2"),
        Some("image"),
    );
    assert!(
        error.message.ends_with("which has 1 output (0: IMAGE)"),
        "{}",
        error.message
    );
    // Links in undeclared inputs are followed by ComfyUI when running, so they must resolve too.
    let error = only_error(&with(invert_graph(), "2", "extra", json!(["42", 0])));
    assert_error(
        &error,
        GraphErrorKind::LinkToMissingNode,
        Some("2"),
        Some("extra"),
    );
}

#[test]
fn return_type_mismatch() {
    let mut graph = invert_graph();
    graph["4"] = json!({"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}});
    graph["2"]["inputs"]["image"] = json!(["4", 0]);
    let error = only_error(&graph);
    assert_error(
        &error,
        GraphErrorKind::ReturnTypeMismatch,
        Some("2"),
        Some("image"),
    );
    assert_eq!(
        error.message,
        "node \"2\" (ImageInvert) input \"image\" takes IMAGE but is linked to output 0 of node \"4\" (EmptyLatentImage), which is LATENT"
    );
    // An INT widget fed by a STRING output.
    let mut graph = invert_graph();
    graph["5"] = json!({"class_type": "PrimitiveString", "inputs": {"value": "64"}});
    graph["1"]["inputs"]["width"] = json!(["5", 0]);
    assert_error(
        &only_error(&graph),
        GraphErrorKind::ReturnTypeMismatch,
        Some("1"),
        Some("width"),
    );
}

#[test]
fn no_output_node() {
    let mut graph = invert_graph();
    graph.as_object_mut().unwrap().remove("3");
    let error = only_error(&graph);
    assert_error(&error, GraphErrorKind::NoOutputNode, None, None);
    assert!(error.message.contains("SaveImage"), "{}", error.message);
}

#[test]
fn dependency_cycles() {
    let mut graph = invert_graph();
    graph["4"] = json!({"class_type": "ImageInvert", "inputs": {"image": ["5", 0]}});
    graph["5"] = json!({"class_type": "ImageInvert", "inputs": {"image": ["4", 0]}});
    graph["6"] = json!({"class_type": "PreviewImage", "inputs": {"images": ["5", 0]}});
    let error = only_error(&graph);
    assert_error(&error, GraphErrorKind::Cycle, Some("4"), None);
    assert!(
        error
            .message
            .contains("\"4\" (ImageInvert), node \"5\" (ImageInvert)"),
        "{}",
        error.message
    );
    let error = only_error(&with(invert_graph(), "2", "image", json!(["2", 0])));
    assert_error(&error, GraphErrorKind::Cycle, Some("2"), None);
}

#[test]
fn all_defects_are_reported_in_a_stable_order() {
    let graph = json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": "wide", "height": 0, "color": 0}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["9", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["1", 3]}},
        "4": {"class_type": "Nope", "inputs": {}}
    });
    let errors = errors_of(&graph, &NodeCatalog::bundled());
    let found: Vec<_> = errors
        .iter()
        .map(|e| (e.node_id.as_deref(), e.kind, e.input.as_deref()))
        .collect();
    assert_eq!(
        found,
        [
            (Some("4"), GraphErrorKind::UnknownClass, None),
            (Some("1"), GraphErrorKind::InvalidInputType, Some("width")),
            (Some("1"), GraphErrorKind::ValueTooSmall, Some("height")),
            (
                Some("1"),
                GraphErrorKind::RequiredInputMissing,
                Some("batch_size")
            ),
            (Some("2"), GraphErrorKind::LinkToMissingNode, Some("image")),
            (Some("3"), GraphErrorKind::BadOutputIndex, Some("images")),
            (
                Some("3"),
                GraphErrorKind::RequiredInputMissing,
                Some("filename_prefix")
            ),
        ]
    );
    assert_eq!(errors.to_string().lines().count(), 7);
    let json = errors.to_json();
    let first = &json[1];
    assert_eq!(first["kind"], "invalid_input_type");
    assert_eq!(first["comfy_type"], "invalid_input_type");
    assert_eq!(first["node_id"], "1");
    assert_eq!(first["class_type"], "EmptyImage");
    assert_eq!(first["input"], "width");
    assert!(first["message"].as_str().unwrap().contains("\"wide\""));
    assert_eq!(json[0]["comfy_type"], "invalid_prompt");
    assert!(json[0].get("input").is_none());
}

/// Odd values in every input of every node, and odd node shapes: the checker never panics,
/// refuses what it cannot accept, and every message is one line naming the node.
#[test]
fn odd_values_everywhere_never_panic() {
    let catalog = catalog_with_models();
    let base = posted_graph("prompt_t2i_tiny.json");
    let odd = [
        json!(null),
        json!(true),
        json!(-1),
        json!(1e300),
        json!(-1e300),
        json!("x\ny"),
        json!([]),
        json!(["3"]),
        json!(["3", 0]),
        json!(["x", 0]),
        json!(["4", 99999999999999999999.0]),
        json!({"__value__": null}),
        json!({"__value__": [1, 2]}),
        json!({}),
        json!("a".repeat(10_000)),
    ];
    for (node_id, node) in base.as_object().unwrap() {
        for input in node["inputs"].as_object().unwrap().keys() {
            for value in &odd {
                let graph = with(base.clone(), node_id, input, value.clone());
                let errors = match check(&graph, &catalog) {
                    Err(errors) => errors,
                    Ok(_) => {
                        // Only text inputs take odd strings; a link may equal the original one.
                        let text = matches!(input.as_str(), "text" | "filename_prefix");
                        assert!(
                            (text && value.is_string()) || node["inputs"][input] == *value,
                            "node {node_id} input {input} accepted {value}"
                        );
                        continue;
                    }
                };
                for error in &errors {
                    assert!(!error.message.contains('\n'), "{error:?}");
                    assert!(error.message.len() < 2_000, "{error:?}");
                    if let Some(node) = &error.node_id {
                        assert!(error.message.contains(&format!("{node:?}")), "{error:?}");
                    }
                }
            }
        }
    }
    for node in [
        json!(null),
        json!([]),
        json!({"class_type": null}),
        json!({"class_type": "KSampler", "inputs": 5}),
    ] {
        let mut graph = base.clone();
        graph["3"] = node;
        assert!(check(&graph, &catalog).is_err());
    }
}

// ---- the recorded ComfyUI refusals -----------------------------------------------------------

/// Our kind for a ComfyUI error entry (`None`: a defect this offline check cannot see).
fn expected_kind(error: &Value) -> Option<GraphErrorKind> {
    let kind = match error["type"].as_str().unwrap() {
        "required_input_missing" => GraphErrorKind::RequiredInputMissing,
        "value_bigger_than_max" => GraphErrorKind::ValueTooBig,
        "value_smaller_than_min" => GraphErrorKind::ValueTooSmall,
        "invalid_input_type" => GraphErrorKind::InvalidInputType,
        "value_not_in_list" => GraphErrorKind::ValueNotInList,
        "return_type_mismatch" => GraphErrorKind::ReturnTypeMismatch,
        "bad_linked_input" => GraphErrorKind::BadLinkedInput,
        // Python's KeyError on prompt[o_id] / IndexError on RETURN_TYPES[slot].
        "exception_during_inner_validation" | "exception_during_validation" => {
            match error["extra_info"]["exception_type"].as_str().unwrap() {
                "KeyError" => GraphErrorKind::LinkToMissingNode,
                "IndexError" => GraphErrorKind::BadOutputIndex,
                other => panic!("unexpected exception type {other}"),
            }
        }
        "invalid_prompt" if error["message"].as_str().unwrap().contains("class_type") => {
            GraphErrorKind::MissingClassType
        }
        "invalid_prompt" => GraphErrorKind::UnknownClass,
        "prompt_no_outputs" => GraphErrorKind::NoOutputNode,
        // LoadImage of a file that is not there: only ComfyUI can look at its disk.
        "custom_validation_failed" => return None,
        other => panic!("unexpected ComfyUI error type {other}"),
    };
    Some(kind)
}

/// The node a graph-level `invalid_prompt` names in its details: `Node ID '#2'`.
fn invalid_prompt_node(error: &Value) -> Option<String> {
    let details = error["details"].as_str()?;
    Some(
        details
            .strip_prefix("Node ID '#")?
            .strip_suffix('\'')?
            .to_owned(),
    )
}

/// Every recorded graph ComfyUI refused (or partly refused) is refused by us with the same
/// defect on the same node. Where ComfyUI names the input, so do we — except for links to a
/// missing node or output, which ComfyUI files under the linked node's id with the input name
/// of the node *downstream* of it (an artefact of its recursion); we name the input that holds
/// the bad link, on the same node.
#[test]
fn recorded_comfyui_refusals_are_caught_before_submission() {
    let catalog = catalog_with_models();
    let mut checked = 0;
    let mut names: Vec<_> = std::fs::read_dir(transcripts_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with("error_") && name.ends_with(".json"))
        .collect();
    names.push("partial_one_output_invalid.json".into());
    names.sort();
    for name in names {
        let recorded = transcript(&name);
        let Some(graph) = recorded["request"]["json_body"].get("prompt") else {
            continue; // no graph at all (empty or malformed body, no "prompt" key)
        };
        let response = &recorded["response"];
        if response["status"] == 500 {
            // ComfyUI crashes on a prompt that is not an object; we say what is wrong.
            assert_error(&only_error(graph), GraphErrorKind::NotAnObject, None, None);
            checked += 1;
            continue;
        }
        let body = &response["json"];
        let mut expected: Vec<(Option<String>, GraphErrorKind, Option<String>)> = Vec::new();
        if let Some(error) = body.get("error")
            && error["type"] != "prompt_outputs_failed_validation"
        {
            expected.push((
                invalid_prompt_node(error),
                expected_kind(error).unwrap(),
                None,
            ));
        }
        for (node_id, node) in body["node_errors"].as_object().unwrap() {
            for error in node["errors"].as_array().unwrap() {
                let Some(kind) = expected_kind(error) else {
                    continue;
                };
                let input = match kind {
                    GraphErrorKind::LinkToMissingNode | GraphErrorKind::BadOutputIndex => None,
                    _ => error["extra_info"]["input_name"]
                        .as_str()
                        .map(str::to_owned),
                };
                expected.push((Some(node_id.clone()), kind, input));
            }
        }
        let result = check(graph, &catalog);
        if expected.is_empty() {
            assert_eq!(
                name, "error_loadimage_missing_file.json",
                "{name}: nothing to expect"
            );
            assert!(result.is_ok(), "{name}: {result:?}");
            checked += 1;
            continue;
        }
        let errors = result.expect_err(&name);
        assert_eq!(errors.len(), expected.len(), "{name}: got\n{errors}");
        for (node, kind, input) in &expected {
            assert!(
                errors.iter().any(|e| e.node_id == *node
                    && e.kind == *kind
                    && (input.is_none() || e.input == *input)),
                "{name}: expected {kind} on node {node:?} input {input:?}, got\n{errors}"
            );
        }
        checked += 1;
    }
    assert_eq!(
        checked, 19,
        "every recorded graph-carrying refusal was looked at"
    );
}

#[test]
fn recorded_float_for_int_is_refused_although_comfyui_truncates_it() {
    let error = only_error(&posted_graph("ok_float_for_int_input.json"));
    assert_error(
        &error,
        GraphErrorKind::InvalidInputType,
        Some("1"),
        Some("width"),
    );
    assert!(
        error.message.contains("64.7 is not a whole number"),
        "{}",
        error.message
    );
}

// ---- budgets: node count, error count, suggestions -------------------------------------------

/// `count` nodes: EmptyImage → SaveImage pairs (a valid graph when `count` is even).
fn chain_of_pairs(count: usize) -> Value {
    let mut graph = serde_json::Map::new();
    for pair in 0..count / 2 {
        let source = format!("{}", 2 * pair);
        graph.insert(
            source.clone(),
            json!({"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}),
        );
        graph.insert(
            format!("{}", 2 * pair + 1),
            json!({"class_type": "SaveImage", "inputs": {"images": [source, 0], "filename_prefix": "p"}}),
        );
    }
    Value::Object(graph)
}

#[test]
fn a_graph_at_the_node_cap_passes_and_one_over_is_refused_naming_the_limit() {
    let catalog = NodeCatalog::bundled();
    let cap = comfyui::graph::GraphLimits::default().max_nodes;
    assert_eq!(cap, 2000, "documented default");
    let at_cap = chain_of_pairs(cap);
    assert_eq!(check(&at_cap, &catalog).unwrap().node_count, cap);

    let mut over = at_cap;
    over.as_object_mut().unwrap().insert(
        "extra".into(),
        json!({"class_type": "PreviewImage", "inputs": {"images": ["0", 0]}}),
    );
    let errors = errors_of(&over, &catalog);
    assert_eq!(errors.len(), 1, "{errors}");
    let error = &errors.errors()[0];
    assert_eq!(error.kind, GraphErrorKind::TooManyNodes);
    assert!(error.message.contains("2001 nodes"), "{error:?}");
    assert!(error.message.contains("2000"), "{error:?}");
    assert!(
        error.message.contains("COMFYUI_MCP_MAX_GRAPH_NODES"),
        "{error:?}"
    );

    // A smaller configured cap applies the same way.
    let limits = comfyui::graph::GraphLimits {
        max_nodes: 4,
        ..Default::default()
    };
    assert!(comfyui::graph::check_with(&chain_of_pairs(4), &catalog, &limits).is_ok());
    let errors = comfyui::graph::check_with(&chain_of_pairs(6), &catalog, &limits).unwrap_err();
    assert_eq!(errors.errors()[0].kind, GraphErrorKind::TooManyNodes);
}

/// Thousands of class names one letter away from real ones: every node is an unknown class
/// with a likely suggestion. The report stays capped and only a bounded number of suggestions
/// is computed.
#[test]
fn thousands_of_near_miss_classes_give_a_capped_report_with_bounded_suggestions() {
    let catalog = NodeCatalog::bundled();
    let limits = comfyui::graph::GraphLimits::default();
    let names: Vec<String> = catalog.classes().map(|c| c.name.clone()).collect();
    let mut graph = serde_json::Map::new();
    for i in 0..limits.max_nodes {
        let mut name = names[i % names.len()].clone();
        name.push('x');
        // Inputs with many bad combo values too, each a suggestion candidate.
        graph.insert(
            format!("{i}"),
            json!({"class_type": name, "inputs": {"sampler_name": "eulerr"}}),
        );
    }
    let errors = errors_of(&Value::Object(graph), &catalog);
    assert_eq!(errors.len(), limits.max_errors, "listed defects are capped");
    assert_eq!(errors.omitted(), limits.max_nodes - limits.max_errors);
    let suggested = errors
        .iter()
        .filter(|e| e.message.contains("did you mean"))
        .count();
    assert!(suggested > 0, "near misses still get some suggestions");
    assert!(
        suggested <= limits.max_suggestions,
        "{suggested} suggestions over the cap {}",
        limits.max_suggestions
    );
    let text = errors.to_string();
    assert!(
        text.ends_with(&format!(
            "... and {} more defects not listed (at most {} are reported)",
            limits.max_nodes - limits.max_errors,
            limits.max_errors
        )),
        "{}",
        &text[text.len().saturating_sub(200)..]
    );
    let json = errors.to_json();
    let list = json.as_array().unwrap();
    assert_eq!(list.len(), limits.max_errors + 1);
    assert_eq!(list.last().unwrap()["kind"], "more_defects_omitted");
    assert_eq!(
        list.last().unwrap()["omitted"],
        limits.max_nodes - limits.max_errors
    );
}

/// Hostile sizes inside a node (a huge id, a huge class name, a huge value, many inputs) give
/// messages of bounded size.
#[test]
fn hostile_sizes_give_bounded_messages() {
    let catalog = NodeCatalog::bundled();
    let long_id = "i".repeat(100_000);
    let long_class = "KSampler".repeat(10_000);
    let mut inputs = serde_json::Map::new();
    for i in 0..5_000 {
        inputs.insert(format!("extra{i}"), json!([format!("missing{i}"), 0]));
    }
    let graph = json!({
        long_id.clone(): {"class_type": long_class, "inputs": {}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": ["x".repeat(1 << 20)]}},
        "3": {"class_type": "PreviewImage", "inputs": inputs},
    });
    let errors = errors_of(&graph, &catalog);
    assert!(errors.len() <= comfyui::graph::GraphLimits::default().max_errors);
    for error in &errors {
        assert!(error.message.len() < 2_000, "{} bytes", error.message.len());
        assert!(error.node_id.as_ref().is_none_or(|id| id.len() < 300));
        assert!(error.class_type.as_ref().is_none_or(|c| c.len() < 300));
    }
}
