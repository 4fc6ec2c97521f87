//! Property tests of workflow-file parsing and overrides: `parse_api_graph` never panics on
//! any bytes and honours its node cap; `apply_overrides` never panics, never adds or removes
//! nodes or inputs, never overwrites a link, and changes only inputs its keys name.

use comfyui_mcp::workflow_file::{apply_overrides, parse_api_graph};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// The override keys that set inputs by name on every node, with those inputs (the contract of
/// `apply_overrides`).
const SAMPLER_KEYS: &[(&str, &[&str])] = &[
    ("seed", &["seed", "noise_seed"]),
    ("steps", &["steps"]),
    ("cfg_scale", &["cfg"]),
    ("cfg", &["cfg"]),
    ("sampler", &["sampler_name"]),
    ("sampler_name", &["sampler_name"]),
    ("scheduler", &["scheduler"]),
    ("denoise", &["denoise"]),
    ("width", &["width"]),
    ("height", &["height"]),
    ("batch_size", &["batch_size"]),
];

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        ".{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map(".{0,5}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn input_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("seed".to_owned()),
        Just("noise_seed".to_owned()),
        Just("steps".to_owned()),
        Just("cfg".to_owned()),
        Just("text".to_owned()),
        Just("positive".to_owned()),
        Just("negative".to_owned()),
        Just("width".to_owned()),
        "[a-z]{1,6}",
    ]
}

fn graph() -> impl Strategy<Value = Value> {
    (1usize..12).prop_flat_map(|n| {
        let value = prop_oneof![
            any_json(),
            (0..n, 0u64..3).prop_map(|(id, slot)| json!([id.to_string(), slot])),
        ];
        let node = prop_oneof![
            8 => prop::collection::btree_map(input_name(), value, 0..6).prop_map(|inputs| {
                json!({"class_type": "X", "inputs": Value::Object(inputs.into_iter().collect())})
            }),
            1 => any_json(),
        ];
        prop::collection::vec(node, n).prop_map(|nodes| {
            Value::Object(
                nodes
                    .into_iter()
                    .enumerate()
                    .map(|(i, node)| (i.to_string(), node))
                    .collect(),
            )
        })
    })
}

fn override_key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(
            SAMPLER_KEYS
                .iter()
                .map(|(k, _)| (*k).to_owned())
                .collect::<Vec<_>>()
        ),
        Just("prompt".to_owned()),
        Just("negative_prompt".to_owned()),
        (0usize..12, input_name()).prop_map(|(node, input)| format!("{node}.{input}")),
        "[a-z.]{0,8}",
    ]
}

fn is_link(v: &Value) -> bool {
    matches!(v, Value::Array(a) if a.len() == 2 && a[0].is_string() && a[1].is_u64())
}

/// The ids of nodes linked into some node's `port` input.
fn linked_into(graph: &Value, port: &str) -> Vec<String> {
    graph
        .as_object()
        .into_iter()
        .flat_map(|g| g.values())
        .filter_map(|node| node.get("inputs").and_then(|i| i.get(port)))
        .filter(|v| is_link(v))
        .filter_map(|v| v[0].as_str().map(str::to_owned))
        .collect()
}

/// Whether override `key` may set input `input` of node `node` (an earlier override may have
/// linked a new encoder, so links before or after count).
fn key_names(key: &str, node: &str, input: &str, before: &Value, after: &Value) -> bool {
    if let Some((n, i)) = key.split_once('.') {
        return n == node && i == input;
    }
    let port = match key {
        "prompt" => Some("positive"),
        "negative_prompt" => Some("negative"),
        _ => None,
    };
    if let Some(port) = port {
        return input == "text"
            && linked_into(before, port)
                .into_iter()
                .chain(linked_into(after, port))
                .any(|id| id == node);
    }
    SAMPLER_KEYS
        .iter()
        .any(|(k, inputs)| *k == key && inputs.contains(&input))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parsing_never_panics_on_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_api_graph("w.json", &bytes, 2000);
    }

    #[test]
    fn parsing_never_panics_on_any_json_and_honours_the_node_cap(
        value in any_json(),
        cap in 0usize..6,
    ) {
        let bytes = serde_json::to_vec(&value).unwrap();
        if let Ok(graph) = parse_api_graph("w.json", &bytes, cap) {
            let nodes = graph.as_object().map_or(0, Map::len);
            prop_assert!(nodes <= cap, "{nodes} nodes over the cap {cap}");
        }
    }

    #[test]
    fn overrides_touch_only_the_literal_inputs_their_keys_name(
        before in graph(),
        overrides in prop::collection::btree_map(override_key(), any_json(), 0..5),
    ) {
        let overrides: Map<String, Value> = overrides.into_iter().collect();
        let mut after = before.clone();
        let result = apply_overrides(&mut after, &overrides);
        // Every key is reported once, as applied or as unmatched.
        prop_assert_eq!(result.applied.len() + result.unmatched.len(), overrides.len());
        let (before_nodes, after_nodes) = (before.as_object().unwrap(), after.as_object().unwrap());
        prop_assert_eq!(
            before_nodes.keys().collect::<Vec<_>>(),
            after_nodes.keys().collect::<Vec<_>>()
        );
        for (id, node) in before_nodes {
            let changed = &after_nodes[id];
            let (Some(inputs), Some(new_inputs)) = (
                node.get("inputs").and_then(Value::as_object),
                changed.get("inputs").and_then(Value::as_object),
            ) else {
                prop_assert_eq!(node, changed, "a node without an inputs object is untouched");
                continue;
            };
            prop_assert_eq!(inputs.keys().collect::<Vec<_>>(), new_inputs.keys().collect::<Vec<_>>());
            for (input, old) in inputs {
                let new = &new_inputs[input];
                if old == new {
                    continue;
                }
                prop_assert!(!is_link(old), "link {id}.{input} overwritten");
                let namer = result
                    .applied
                    .iter()
                    .find(|(key, value)| key_names(key, id, input, &before, &after) && *value == new);
                prop_assert!(namer.is_some(), "{id}.{input} changed to {new} by no key");
            }
        }
    }
}
