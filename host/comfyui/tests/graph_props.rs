//! Property tests of the graph check and the node policy: on arbitrary JSON, and on graphs
//! shaped like real ones (stock classes, their input names, links between nodes), they never
//! panic and their reports stay within the budgets.

use comfyui::graph::{GraphLimits, check_with};
use comfyui::nodes::NodeCatalog;
use comfyui::policy::NodePolicy;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A few stock class names, near misses, and policy-refused classes.
fn class_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("KSampler".to_owned()),
        Just("EmptyImage".to_owned()),
        Just("SaveImage".to_owned()),
        Just("CheckpointLoaderSimple".to_owned()),
        Just("CheckpointSave".to_owned()),
        Just("OpenAIDalle3".to_owned()),
        Just("KSamplr".to_owned()),
        "[A-Za-z]{0,12}",
    ]
}

/// An input value: a literal, a link to one of `ids` nodes (or elsewhere), or odd JSON.
fn input_value(ids: usize) -> impl Strategy<Value = Value> {
    prop_oneof![
        any_json(),
        (0..ids.max(1) + 1, 0u64..4).prop_map(|(id, slot)| json!([id.to_string(), slot])),
        Just(json!("euler")),
        Just(json!("eulerr")),
        (-10i64..100_000).prop_map(Value::from),
    ]
}

/// Graphs shaped like API graphs: numbered nodes with a class and named inputs.
fn graph_like() -> impl Strategy<Value = Value> {
    (1usize..40).prop_flat_map(|n| {
        let input_names = prop_oneof![
            Just("seed".to_owned()),
            Just("images".to_owned()),
            Just("model".to_owned()),
            Just("width".to_owned()),
            Just("sampler_name".to_owned()),
            Just("filename_prefix".to_owned()),
            "[a-z_]{0,8}",
        ];
        let node = (
            class_name(),
            prop::collection::btree_map(input_names, input_value(n), 0..6),
        )
            .prop_map(|(class, inputs)| {
                json!({"class_type": class, "inputs": Value::Object(inputs.into_iter().collect())})
            });
        prop::collection::vec(prop_oneof![9 => node, 1 => any_json()], n).prop_map(|nodes| {
            let graph: Map<String, Value> = nodes
                .into_iter()
                .enumerate()
                .map(|(i, node)| (i.to_string(), node))
                .collect();
            Value::Object(graph)
        })
    })
}

fn limits() -> impl Strategy<Value = GraphLimits> {
    (0usize..50, 0usize..8, 0usize..4).prop_map(|(max_nodes, max_errors, max_suggestions)| {
        GraphLimits {
            max_nodes,
            max_errors,
            max_suggestions,
        }
    })
}

fn assert_within(graph: &Value, limits: &GraphLimits) -> Result<(), TestCaseError> {
    let catalog = NodeCatalog::bundled();
    let nodes = graph.as_object().map_or(0, Map::len);
    match check_with(graph, &catalog, limits) {
        Ok(summary) => {
            prop_assert_eq!(summary.node_count, nodes);
            prop_assert!(nodes <= limits.max_nodes);
        }
        Err(errors) => {
            prop_assert!(!errors.is_empty());
            // One graph-wide error (not an object, empty, over the node cap) is always listed.
            prop_assert!(errors.len() <= limits.max_errors.max(1), "{}", errors.len());
            let suggested = errors
                .iter()
                .filter(|e| e.message.contains("did you mean"))
                .count();
            prop_assert!(suggested <= limits.max_suggestions);
            for error in &errors {
                prop_assert!(error.message.len() < 4_000, "{}", error.message.len());
            }
            let json = errors.to_json();
            let entries = json.as_array().map_or(0, Vec::len);
            prop_assert_eq!(entries, errors.len() + usize::from(errors.omitted() > 0));
        }
    }
    let _ = NodePolicy::default().check(graph, &catalog);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_check_never_panics_on_arbitrary_json(graph in any_json(), limits in limits()) {
        assert_within(&graph, &limits)?;
    }

    #[test]
    fn the_check_stays_within_its_budgets_on_graph_like_input(
        graph in graph_like(),
        limits in limits(),
    ) {
        assert_within(&graph, &limits)?;
        assert_within(&graph, &GraphLimits::DEFAULT)?;
    }

    #[test]
    fn the_policy_refuses_exactly_the_refused_classes(graph in graph_like()) {
        let catalog = NodeCatalog::bundled();
        let policy = NodePolicy::default();
        let refused: usize = graph
            .as_object()
            .unwrap()
            .values()
            .filter_map(|node| node.get("class_type").and_then(Value::as_str))
            .filter(|class| policy.refusal(class, &catalog).is_some())
            .count();
        match policy.check(&graph, &catalog) {
            Ok(()) => prop_assert_eq!(refused, 0),
            Err(violations) => {
                let counted: usize = violations.0.iter().map(|v| v.node_count).sum();
                prop_assert_eq!(counted, refused);
            }
        }
    }
}
