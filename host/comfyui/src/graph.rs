//! The graph checker: finds every defect ComfyUI's `POST /prompt` validation would refuse in an
//! API-format graph, before it is submitted, and says what is allowed instead.
//!
//! A graph is `{node_id: {"class_type": str, "inputs": {name: value | [node_id, output_index]},
//! "_meta"?: {...}}}`. [`check`] reports **all** defects, not just the first, each naming the
//! node, its class, the input, the bad value and what the input accepts.
//!
//! What is checked, following ComfyUI 0.3.75's `validate_prompt`/`validate_inputs`:
//! node shapes and `class_type`; unknown classes; missing required inputs (hidden inputs are
//! ComfyUI's own and never required); literal types; INT/FLOAT limits; combo membership; link
//! shape, target node, output index and type compatibility (`validate_node_input`: equal types,
//! `*` on either side, or an overlap of comma-separated type lists); at least one output node;
//! and dependency cycles (ComfyUI cannot run them).
//!
//! Deliberate differences from ComfyUI, all stricter except the last two:
//! - **Every** node is checked, not only those an output node depends on, and one bad output
//!   branch fails the whole graph (ComfyUI runs the valid outputs and answers 200 with
//!   `node_errors`; a template that is half broken is a bug we want to see).
//! - Literals are not coerced the way Python does. INT takes whole numbers only (`64.0` is fine,
//!   `64.7` is an error instead of a silent truncation to 64, a string is an error instead of
//!   `int("64")`); FLOAT takes numbers; STRING takes strings; BOOLEAN takes `true`/`false` only
//!   (ComfyUI's `bool("false")` is true). A literal where only a link makes sense (an `IMAGE`
//!   input) is an error; ComfyUI would only fail when running the node.
//! - A link into a combo input is accepted when the linked output is `COMBO` or `*`.
//! - Combos whose files can be uploaded (LoadImage) accept any name: the catalog may predate
//!   the upload, and ComfyUI checks those files itself (`custom_validation_failed`), which this
//!   offline check cannot do.
//!
//! Numeric limits come from the catalog as `f64`. Integers are compared against them exactly,
//! so any seed up to u64::MAX (KSampler's maximum, which rounds to 2^64) passes and 2^64 does
//! not. Limits that `f64` cannot hold exactly (PrimitiveInt's ±(2^63−1) round to ±2^63) can
//! let exactly ±2^63 through where ComfyUI would refuse it.
//!
//! Budgets ([`GraphLimits`], defaults written once in [`GraphLimits::DEFAULT`]): a graph of more
//! than `max_nodes` nodes is refused before any node is looked at; at most `max_errors` defects
//! are listed (the rest are counted, [`GraphErrors::omitted`]); at most `max_suggestions`
//! "did you mean" hints are computed per check, each one a length-filtered, bounded edit
//! distance with early exit over the catalog (or a combo's choices), and never for names longer
//! than [`SUGGEST_MAX_CHARS`]. Node ids, class names and input names taken from the graph are cut
//! to [`SHOWN_NAME_CHARS`] in messages and error fields, so the size of a report is bounded by
//! `max_errors` whatever the graph holds. The cost of one check is linear in the graph's size
//! (plus the catalog's choice lists); callers still run it off the async runtime.
//!
//! Invariants: [`check`] never panics on any JSON value, and the same graph always gives the
//! same errors in the same order (graph order, then class input order, then graph-wide errors).

use std::collections::HashMap;
use std::fmt;

use serde_json::{Map, Value};

use crate::nodes::{InputKind, InputSpec, NodeCatalog, NodeClass, json_type};

/// At most this many choices are spelled out in a message; the count is always given.
const SHOWN_CHOICES: usize = 12;
/// Values longer than this (in characters) are cut in messages.
const SHOWN_VALUE_CHARS: usize = 80;
/// Node ids, class names and input names from the graph longer than this (in characters) are
/// cut, in messages and in [`GraphError`] fields.
pub const SHOWN_NAME_CHARS: usize = 120;
/// Names longer than this (in characters) get no "did you mean" suggestion.
pub const SUGGEST_MAX_CHARS: usize = 100;

/// The budgets of one [`check_with`] run; plain data, defaults in [`GraphLimits::DEFAULT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GraphLimits {
    /// Largest number of nodes a graph may have; a bigger graph is refused as a whole
    /// ([`GraphErrorKind::TooManyNodes`]). Server setting: `COMFYUI_MCP_MAX_GRAPH_NODES`.
    pub max_nodes: usize,
    /// Most defects listed in one report; the others are only counted.
    /// Server setting: `COMFYUI_MCP_MAX_GRAPH_ERRORS`.
    pub max_errors: usize,
    /// Most "did you mean" suggestions computed in one check.
    /// Server setting: `COMFYUI_MCP_MAX_GRAPH_SUGGESTIONS`.
    pub max_suggestions: usize,
}

impl GraphLimits {
    /// The defaults: 2000 nodes, 50 listed defects, 20 suggestions.
    pub const DEFAULT: GraphLimits = GraphLimits {
        max_nodes: 2000,
        max_errors: 50,
        max_suggestions: 20,
    };
}

impl Default for GraphLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What a valid graph contains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphSummary {
    /// Ids of the output nodes (SaveImage, PreviewImage, ...), in graph order.
    pub output_nodes: Vec<String>,
    /// Number of nodes in the graph.
    pub node_count: usize,
}

/// The class of a defect. Names mirror ComfyUI's error types where ComfyUI has one
/// (see [`GraphErrorKind::comfy_type`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GraphErrorKind {
    /// The graph, a node or a node's `inputs` is not a JSON object (or the graph is not one).
    NotAnObject,
    /// A node has no `class_type`, or it is not a string.
    MissingClassType,
    /// The `class_type` is not a class this ComfyUI has.
    UnknownClass,
    /// A required input is absent.
    RequiredInputMissing,
    /// A literal of the wrong type (e.g. a string for an INT, a number for an IMAGE input).
    InvalidInputType,
    /// A number below the input's minimum.
    ValueTooSmall,
    /// A number above the input's maximum.
    ValueTooBig,
    /// A combo value that is not one of the choices.
    ValueNotInList,
    /// A list that is not a `[node_id, output_index]` link.
    BadLinkedInput,
    /// A link to a node id the graph does not have.
    LinkToMissingNode,
    /// A link to an output index the linked node does not have.
    BadOutputIndex,
    /// A link from an output whose type the input does not accept.
    ReturnTypeMismatch,
    /// No node of the graph is an output node, so ComfyUI would run nothing.
    NoOutputNode,
    /// Nodes depend on each other's outputs in a loop.
    Cycle,
    /// The graph has more nodes than [`GraphLimits::max_nodes`]; nothing else was checked.
    TooManyNodes,
}

impl GraphErrorKind {
    /// Stable snake_case name, used in [`GraphErrors::to_json`].
    pub fn as_str(self) -> &'static str {
        match self {
            GraphErrorKind::NotAnObject => "not_an_object",
            GraphErrorKind::MissingClassType => "missing_class_type",
            GraphErrorKind::UnknownClass => "unknown_class",
            GraphErrorKind::RequiredInputMissing => "required_input_missing",
            GraphErrorKind::InvalidInputType => "invalid_input_type",
            GraphErrorKind::ValueTooSmall => "value_smaller_than_min",
            GraphErrorKind::ValueTooBig => "value_bigger_than_max",
            GraphErrorKind::ValueNotInList => "value_not_in_list",
            GraphErrorKind::BadLinkedInput => "bad_linked_input",
            GraphErrorKind::LinkToMissingNode => "link_to_missing_node",
            GraphErrorKind::BadOutputIndex => "bad_output_index",
            GraphErrorKind::ReturnTypeMismatch => "return_type_mismatch",
            GraphErrorKind::NoOutputNode => "no_output_node",
            GraphErrorKind::Cycle => "dependency_cycle",
            GraphErrorKind::TooManyNodes => "too_many_nodes",
        }
    }

    /// The `type` ComfyUI 0.3.75 reports for this defect: in `error.type` for graph-level ones
    /// (`invalid_prompt`, `prompt_no_outputs`), in `node_errors` otherwise. A link to a missing
    /// node or output surfaces there as an exception during validation; ComfyUI has no
    /// validation error of its own for cycles (its recursive validation raises), and a graph
    /// that is not an object gets a plain 500.
    pub fn comfy_type(self) -> &'static str {
        match self {
            GraphErrorKind::NotAnObject
            | GraphErrorKind::MissingClassType
            | GraphErrorKind::UnknownClass
            | GraphErrorKind::TooManyNodes => "invalid_prompt",
            GraphErrorKind::NoOutputNode => "prompt_no_outputs",
            GraphErrorKind::LinkToMissingNode
            | GraphErrorKind::BadOutputIndex
            | GraphErrorKind::Cycle => "exception_during_inner_validation",
            other => other.as_str(),
        }
    }
}

impl fmt::Display for GraphErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One defect of a graph.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct GraphError {
    /// The node the defect is on; `None` for graph-wide defects.
    pub node_id: Option<String>,
    /// That node's `class_type`, when it has a string one.
    pub class_type: Option<String>,
    /// The input the defect is on, when there is one.
    pub input: Option<String>,
    /// What kind of defect.
    pub kind: GraphErrorKind,
    /// One line for a human or an agent: where, the bad value, and what is allowed.
    pub message: String,
    /// The text the graph gave, for a [`GraphErrorKind::ValueNotInList`] string literal (cut
    /// to [`SHOWN_NAME_CHARS`]), so callers can explain a missing model file; else `None`.
    pub received: Option<String>,
}

/// The defects of a graph (never empty when returned by [`check`]): at most
/// [`GraphLimits::max_errors`] listed, the others counted in [`GraphErrors::omitted`].
#[derive(Debug, Clone, PartialEq)]
pub struct GraphErrors {
    errors: Vec<GraphError>,
    omitted: usize,
    /// The cap that was in force, for the "and N more" line.
    cap: usize,
}

impl GraphErrors {
    /// A report of `errors`, none omitted.
    pub fn new(errors: Vec<GraphError>) -> Self {
        let cap = errors.len();
        Self {
            errors,
            omitted: 0,
            cap,
        }
    }

    /// The listed defects, in a stable order.
    pub fn errors(&self) -> &[GraphError] {
        &self.errors
    }

    /// Number of listed defects.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Number of defects found beyond the cap and not listed.
    pub fn omitted(&self) -> usize {
        self.omitted
    }

    /// True when there is no defect.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty() && self.omitted == 0
    }

    /// Iterates over the listed defects.
    pub fn iter(&self) -> std::slice::Iter<'_, GraphError> {
        self.errors.iter()
    }

    /// The "... and N more" line, when defects were omitted.
    fn omitted_line(&self) -> Option<String> {
        (self.omitted > 0).then(|| {
            format!(
                "... and {} more defects not listed (at most {} are reported)",
                self.omitted, self.cap
            )
        })
    }

    /// The defects as a JSON list for error payloads: each entry has `kind`, `comfy_type`,
    /// `message` and, when known, `node_id`, `class_type` and `input`. When defects were
    /// omitted, a last entry `{"kind": "more_defects_omitted", "omitted": N, "message"}` says
    /// how many.
    pub fn to_json(&self) -> Value {
        let mut list: Vec<Value> = self
            .errors
            .iter()
            .map(|error| {
                let mut entry = Map::new();
                entry.insert("kind".into(), error.kind.as_str().into());
                entry.insert("comfy_type".into(), error.kind.comfy_type().into());
                for (key, value) in [
                    ("node_id", &error.node_id),
                    ("class_type", &error.class_type),
                    ("input", &error.input),
                ] {
                    if let Some(value) = value {
                        entry.insert(key.into(), value.clone().into());
                    }
                }
                entry.insert("message".into(), error.message.clone().into());
                Value::Object(entry)
            })
            .collect();
        if let Some(line) = self.omitted_line() {
            let mut entry = Map::new();
            entry.insert("kind".into(), "more_defects_omitted".into());
            entry.insert("omitted".into(), self.omitted.into());
            entry.insert("message".into(), line.into());
            list.push(Value::Object(entry));
        }
        Value::Array(list)
    }
}

impl fmt::Display for GraphErrors {
    /// One line per listed defect, then the "... and N more" line when some were omitted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            f.write_str(&error.message)?;
        }
        if let Some(line) = self.omitted_line() {
            if !self.errors.is_empty() {
                f.write_str("\n")?;
            }
            f.write_str(&line)?;
        }
        Ok(())
    }
}

impl std::error::Error for GraphErrors {}

impl<'a> IntoIterator for &'a GraphErrors {
    type Item = &'a GraphError;
    type IntoIter = std::slice::Iter<'a, GraphError>;
    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}

/// Checks an API-format graph against a node catalog with the default [`GraphLimits`]; see
/// the module docs for what is checked.
///
/// Returns the output nodes when the graph is valid, otherwise the defects found.
pub fn check(graph: &Value, catalog: &NodeCatalog) -> Result<GraphSummary, GraphErrors> {
    check_with(graph, catalog, &GraphLimits::DEFAULT)
}

/// Checks an API-format graph against a node catalog within `limits`.
pub fn check_with(
    graph: &Value,
    catalog: &NodeCatalog,
    limits: &GraphLimits,
) -> Result<GraphSummary, GraphErrors> {
    let Some(nodes) = graph.as_object() else {
        return Err(GraphErrors::new(vec![GraphError {
            node_id: None,
            class_type: None,
            input: None,
            received: None,
            kind: GraphErrorKind::NotAnObject,
            message: format!(
                "the graph must be a JSON object mapping node ids to {{\"class_type\": ..., \"inputs\": {{...}}}}, got {}",
                json_type(graph)
            ),
        }]));
    };
    if nodes.len() > limits.max_nodes {
        return Err(GraphErrors::new(vec![GraphError {
            node_id: None,
            class_type: None,
            input: None,
            received: None,
            kind: GraphErrorKind::TooManyNodes,
            message: format!(
                "the graph has {} nodes, over the limit of {} nodes per graph; nothing else was \
                 checked (a server operator can raise the limit with --max-graph-nodes or \
                 COMFYUI_MCP_MAX_GRAPH_NODES)",
                nodes.len(),
                limits.max_nodes
            ),
        }]));
    }
    if nodes.is_empty() {
        return Err(GraphErrors::new(vec![GraphError {
            node_id: None,
            class_type: None,
            input: None,
            received: None,
            kind: GraphErrorKind::NoOutputNode,
            message:
                "the graph has no nodes, so it has no output node and ComfyUI would run nothing"
                    .to_owned(),
        }]));
    }

    let mut checker = Checker {
        catalog,
        nodes: Vec::with_capacity(nodes.len()),
        index: HashMap::with_capacity(nodes.len()),
        errors: Vec::new(),
        omitted: 0,
        max_errors: limits.max_errors,
        suggestions_left: limits.max_suggestions,
    };
    for (id, node) in nodes {
        checker.index.insert(id.as_str(), checker.nodes.len());
        let resolved = checker.resolve(id, node);
        checker.nodes.push(resolved);
    }
    let all_resolved = !checker.found_any();

    let mut deps: Vec<Vec<usize>> = vec![Vec::new(); checker.nodes.len()];
    let mut output_nodes = Vec::new();
    for (position, node_deps) in deps.iter_mut().enumerate() {
        let node = checker.nodes[position];
        let (Some(class), Some(inputs)) = (node.class, node.inputs) else {
            continue;
        };
        if class.output_node {
            output_nodes.push(node.id.to_owned());
        }
        checker.check_inputs(node, class, inputs, node_deps);
    }

    // Without a class for every node, "no output node" may just be a consequence.
    if output_nodes.is_empty() && all_resolved {
        checker.push_error(GraphError {
            node_id: None,
            class_type: None,
            input: None,
            received: None,
            kind: GraphErrorKind::NoOutputNode,
            message: "the graph has no output node, so ComfyUI would run nothing; add one such as \
                      SaveImage or PreviewImage (a class with output_node: true)"
                .to_owned(),
        });
    }
    for cycle in cycles(&deps) {
        checker.report_cycle(&cycle);
    }

    if !checker.found_any() {
        Ok(GraphSummary {
            output_nodes,
            node_count: checker.nodes.len(),
        })
    } else {
        Err(GraphErrors {
            errors: checker.errors,
            omitted: checker.omitted,
            cap: limits.max_errors,
        })
    }
}

/// One node after its shape and class were looked at.
#[derive(Clone, Copy)]
struct Node<'g> {
    id: &'g str,
    /// The `class_type` when it is a string (known or not).
    class_type: Option<&'g str>,
    /// The class, when the node is an object with a known `class_type`.
    class: Option<&'g NodeClass>,
    /// The `inputs` object (an absent one counts as empty).
    inputs: Option<&'g Map<String, Value>>,
}

impl Node<'_> {
    /// `node "3" (KSampler)`, the start of every message about this node (names cut to
    /// [`SHOWN_NAME_CHARS`]).
    fn label(&self) -> String {
        match self.class_type {
            Some(class) => format!("node {:?} ({})", clip(self.id), clip(class)),
            None => format!("node {:?}", clip(self.id)),
        }
    }
}

/// The state of one [`check`] run.
struct Checker<'g> {
    catalog: &'g NodeCatalog,
    /// Nodes in graph order.
    nodes: Vec<Node<'g>>,
    /// Node id → position in `nodes`.
    index: HashMap<&'g str, usize>,
    /// The listed defects (at most `max_errors`).
    errors: Vec<GraphError>,
    /// Defects found beyond `max_errors`.
    omitted: usize,
    max_errors: usize,
    /// "Did you mean" suggestions still allowed in this run.
    suggestions_left: usize,
}

/// The empty `inputs` of a node that has none.
fn no_inputs() -> &'static Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(Map::new)
}

impl<'g> Checker<'g> {
    /// Whether any defect was found (listed or not).
    fn found_any(&self) -> bool {
        !self.errors.is_empty() || self.omitted > 0
    }

    /// Whether the list is full: further defects are only counted, so callers skip building
    /// costly messages.
    fn full(&self) -> bool {
        self.errors.len() >= self.max_errors
    }

    /// Takes one suggestion from this run's budget, if the defect will be listed at all.
    fn take_suggestion(&mut self) -> bool {
        if self.full() || self.suggestions_left == 0 {
            return false;
        }
        self.suggestions_left -= 1;
        true
    }

    /// Records a graph-wide defect: listed while there is room, counted otherwise.
    fn push_error(&mut self, error: GraphError) {
        if self.full() {
            self.omitted += 1;
        } else {
            self.errors.push(error);
        }
    }

    /// Records a defect of a node: listed while there is room, counted otherwise.
    fn push(
        &mut self,
        node: &Node<'_>,
        input: Option<&str>,
        kind: GraphErrorKind,
        message: String,
    ) {
        self.push_received(node, input, kind, message, None);
    }

    /// [`Checker::push`], keeping the text the graph gave (see [`GraphError::received`]).
    fn push_received(
        &mut self,
        node: &Node<'_>,
        input: Option<&str>,
        kind: GraphErrorKind,
        message: String,
        received: Option<String>,
    ) {
        self.push_error(GraphError {
            node_id: Some(clip(node.id)),
            class_type: node.class_type.map(clip),
            input: input.map(clip),
            kind,
            message,
            received,
        });
    }

    /// Looks at a node's shape and class; reports what is wrong with them.
    fn resolve(&mut self, id: &'g str, value: &'g Value) -> Node<'g> {
        let mut node = Node {
            id,
            class_type: None,
            class: None,
            inputs: None,
        };
        let Some(object) = value.as_object() else {
            let message = format!(
                "{} must be an object {{\"class_type\": ..., \"inputs\": {{...}}}}, got {}",
                node.label(),
                json_type(value)
            );
            self.push(&node, None, GraphErrorKind::NotAnObject, message);
            return node;
        };
        match object.get("class_type") {
            Some(Value::String(class_type)) => node.class_type = Some(class_type),
            Some(other) => {
                let message = format!(
                    "{}: \"class_type\" must be a string naming a node class (e.g. \"KSampler\"), got {}",
                    node.label(),
                    show(other)
                );
                self.push(&node, None, GraphErrorKind::MissingClassType, message);
            }
            None => {
                let message = format!(
                    "{} has no \"class_type\"; every node needs one naming its node class (e.g. \"KSampler\")",
                    node.label()
                );
                self.push(&node, None, GraphErrorKind::MissingClassType, message);
            }
        }
        match object.get("inputs") {
            None => node.inputs = Some(no_inputs()),
            Some(Value::Object(inputs)) => node.inputs = Some(inputs),
            Some(other) => {
                let message = format!(
                    "{}: \"inputs\" must be an object mapping input names to values or links, got {}",
                    node.label(),
                    json_type(other)
                );
                self.push(&node, None, GraphErrorKind::NotAnObject, message);
            }
        }
        if let Some(class_type) = node.class_type {
            node.class = self.catalog.class(class_type);
            if node.class.is_none() {
                let hint = if self.take_suggestion() {
                    closest(class_type, self.catalog.classes().map(|c| c.name.as_str()))
                        .map(|name| format!("; did you mean {name:?}?"))
                        .unwrap_or_default()
                } else {
                    String::new()
                };
                let message = format!(
                    "{} uses class_type {:?}, which this ComfyUI does not have ({} node classes available{hint})",
                    node.label(),
                    clip(class_type),
                    self.catalog.len()
                );
                self.push(&node, None, GraphErrorKind::UnknownClass, message);
            }
        }
        node
    }

    /// Checks every declared input of a node, then links in undeclared inputs (ComfyUI ignores
    /// unknown inputs when validating but still follows their links when running).
    fn check_inputs(
        &mut self,
        node: Node<'g>,
        class: &'g NodeClass,
        inputs: &'g Map<String, Value>,
        deps: &mut Vec<usize>,
    ) {
        for spec in &class.inputs {
            match inputs.get(&spec.name) {
                Some(value) => self.check_value(&node, spec, value, deps),
                None if spec.required => {
                    let message = format!(
                        "{} is missing required input {:?} ({})",
                        node.label(),
                        spec.name,
                        describe(&spec.kind)
                    );
                    self.push(
                        &node,
                        Some(&spec.name),
                        GraphErrorKind::RequiredInputMissing,
                        message,
                    );
                }
                None => {}
            }
        }
        for (name, value) in inputs {
            if let Value::Array(items) = value
                && class.input(name).is_none()
                && !class.hidden.contains(name)
                && let [Value::String(_), Value::Number(_)] = items.as_slice()
            {
                self.check_link(&node, name, None, items, deps);
            }
        }
    }

    /// Checks one present input: a link (any JSON list) or a literal.
    fn check_value(
        &mut self,
        node: &Node<'g>,
        spec: &InputSpec,
        value: &'g Value,
        deps: &mut Vec<usize>,
    ) {
        match value {
            Value::Array(items) => self.check_link(node, &spec.name, Some(&spec.kind), items, deps),
            Value::Object(wrapper) if wrapper.contains_key("__value__") => {
                self.check_literal(node, spec, &wrapper["__value__"]);
            }
            literal => self.check_literal(node, spec, literal),
        }
    }

    /// Checks a link `[node_id, output_index]` and records the dependency.
    fn check_link(
        &mut self,
        node: &Node<'g>,
        input: &str,
        expected: Option<&InputKind>,
        items: &'g [Value],
        deps: &mut Vec<usize>,
    ) {
        let at = || format!("{} input {:?}", node.label(), clip(input));
        let (target_id, slot) = match items {
            [Value::String(target), Value::Number(slot)] => match slot.as_u64() {
                Some(slot) => (target.as_str(), slot),
                None if slot.as_i64().is_some() => {
                    let message = format!(
                        "{} links to output {slot} of node {target:?}; output indexes start at 0",
                        at()
                    );
                    self.push(node, Some(input), GraphErrorKind::BadOutputIndex, message);
                    return;
                }
                None => {
                    let message = format!(
                        "{}: {} is not a valid link; the output index must be a whole number",
                        at(),
                        show_items(items)
                    );
                    self.push(node, Some(input), GraphErrorKind::BadLinkedInput, message);
                    return;
                }
            },
            _ => {
                let message = format!(
                    "{}: {} is not a valid link; a link is exactly [\"<node id>\", <output index>] \
                     (wrap a literal list as {{\"__value__\": [...]}})",
                    at(),
                    show_items(items)
                );
                self.push(node, Some(input), GraphErrorKind::BadLinkedInput, message);
                return;
            }
        };
        let Some(&target) = self.index.get(target_id) else {
            // The node list costs a pass over the graph: only for a defect that is listed.
            let message = if self.full() {
                String::new()
            } else {
                format!(
                    "{} links to node {:?}, which is not in the graph (its nodes: {})",
                    at(),
                    clip(target_id),
                    self.node_list()
                )
            };
            self.push(
                node,
                Some(input),
                GraphErrorKind::LinkToMissingNode,
                message,
            );
            return;
        };
        deps.push(target);
        let target_node = self.nodes[target];
        // A target without a class was reported already; its outputs are unknown.
        let Some(target_class) = target_node.class else {
            return;
        };
        let Some(received) = usize::try_from(slot)
            .ok()
            .and_then(|slot| target_class.outputs.get(slot))
        else {
            let message = format!(
                "{} links to output {slot} of {}, which has {}",
                at(),
                target_node.label(),
                describe_outputs(target_class)
            );
            self.push(node, Some(input), GraphErrorKind::BadOutputIndex, message);
            return;
        };
        let Some(kind) = expected else { return };
        let expected_type = kind.type_name();
        if !types_match(received, expected_type) {
            let message = format!(
                "{} takes {expected_type} but is linked to output {slot} of {}, which is {received}",
                at(),
                target_node.label()
            );
            self.push(
                node,
                Some(input),
                GraphErrorKind::ReturnTypeMismatch,
                message,
            );
        }
    }

    /// Checks a literal value against the input's kind.
    fn check_literal(&mut self, node: &Node<'_>, spec: &InputSpec, value: &Value) {
        let mut suggest = || self.take_suggestion();
        if let Some((kind, problem)) = literal_defect(&spec.kind, value, &mut suggest) {
            let message = format!("{} input {:?}: {problem}", node.label(), spec.name);
            let received = value
                .as_str()
                .filter(|_| kind == GraphErrorKind::ValueNotInList)
                .map(clip);
            self.push_received(node, Some(&spec.name), kind, message, received);
        }
    }

    /// Reports one dependency cycle (positions in graph order).
    fn report_cycle(&mut self, cycle: &[usize]) {
        let first = self.nodes[cycle[0]];
        let message = if let [_] = cycle {
            format!(
                "{} links to one of its own outputs (dependency cycle); ComfyUI cannot run a node \
                 that needs its own result",
                first.label()
            )
        } else {
            let members: Vec<String> = cycle
                .iter()
                .take(SHOWN_CHOICES)
                .map(|&i| self.nodes[i].label())
                .collect();
            let shown = list_first(&members, cycle.len(), "nodes");
            format!(
                "{shown} form a dependency cycle (each needs the others' outputs, directly or \
                 indirectly); ComfyUI cannot run it"
            )
        };
        self.push(&first, None, GraphErrorKind::Cycle, message);
    }

    /// The graph's node ids for messages, cut when long.
    fn node_list(&self) -> String {
        let shown: Vec<String> = self
            .nodes
            .iter()
            .take(SHOWN_CHOICES)
            .map(|n| clip(n.id))
            .collect();
        list_first(&shown, self.nodes.len(), "nodes")
    }
}

/// What is wrong with a literal for an input of this kind (the message after `node ... input
/// ...: `), or `None` when it is acceptable.
/// `suggest` is asked (at most once) whether a "did you mean" hint may be computed.
fn literal_defect(
    kind: &InputKind,
    value: &Value,
    suggest: &mut dyn FnMut() -> bool,
) -> Option<(GraphErrorKind, String)> {
    let wrong_type = || {
        let problem = format!(
            "{} is {}; expected {}",
            show(value),
            json_type(value),
            describe(kind)
        );
        Some((GraphErrorKind::InvalidInputType, problem))
    };
    match kind {
        InputKind::Int { min, max, .. } => match value {
            Value::Number(number) => int_defect(number, *min, *max, kind),
            _ => wrong_type(),
        },
        InputKind::Float { min, max, .. } => match value.as_f64() {
            Some(x) => float_defect(x, value, *min, *max, kind),
            None => wrong_type(),
        },
        InputKind::String { .. } if value.is_string() => None,
        InputKind::String { .. } => wrong_type(),
        InputKind::Boolean if value.is_boolean() => None,
        InputKind::Boolean => Some((
            GraphErrorKind::InvalidInputType,
            format!(
                "{} is {}; expected true or false (ComfyUI would read any non-empty string as true)",
                show(value),
                json_type(value)
            ),
        )),
        InputKind::Combo { open: true, .. } if value.is_string() || value.is_number() => None,
        InputKind::Combo { open: true, .. } => wrong_type(),
        InputKind::Combo { options, .. } if combo_contains(options, value) => None,
        InputKind::Combo { options, .. } => {
            let hint = value.is_string() && !options.is_empty() && suggest();
            Some((
                GraphErrorKind::ValueNotInList,
                not_in_list(value, options, hint),
            ))
        }
        InputKind::Link(ty) if ty == "*" => None,
        InputKind::Link(_) => Some((
            GraphErrorKind::InvalidInputType,
            format!(
                "{} is a literal value, but this input takes {}",
                show(value),
                describe(kind)
            ),
        )),
    }
}

/// Range and wholeness of an INT literal; limits are compared exactly.
fn int_defect(
    number: &serde_json::Number,
    min: Option<f64>,
    max: Option<f64>,
    kind: &InputKind,
) -> Option<(GraphErrorKind, String)> {
    let allowed = describe(kind);
    let (error, problem) = match whole_number(number) {
        WholeNumber::Exact(n) => match (min, max) {
            (Some(min), _) if n < ceil_i128(min) => (
                GraphErrorKind::ValueTooSmall,
                format!("{n} is smaller than the minimum {}", int_limit(min)),
            ),
            (_, Some(max)) if n > floor_i128(max) => (
                GraphErrorKind::ValueTooBig,
                format!("{n} is bigger than the maximum {}", int_limit(max)),
            ),
            _ => return None,
        },
        WholeNumber::Fractional => (
            GraphErrorKind::InvalidInputType,
            format!("{number} is not a whole number (ComfyUI would silently truncate it)"),
        ),
        WholeNumber::TooSmall => (
            GraphErrorKind::ValueTooSmall,
            format!("{number} is below the 64-bit integer range"),
        ),
        WholeNumber::TooBig => (
            GraphErrorKind::ValueTooBig,
            format!("{number} is beyond the 64-bit integer range"),
        ),
    };
    Some((error, format!("{problem}; expected {allowed}")))
}

/// Range of a FLOAT literal.
fn float_defect(
    x: f64,
    value: &Value,
    min: Option<f64>,
    max: Option<f64>,
    kind: &InputKind,
) -> Option<(GraphErrorKind, String)> {
    let (error, problem) = match (min, max) {
        (Some(min), _) if x < min => (
            GraphErrorKind::ValueTooSmall,
            format!("{} is smaller than the minimum {min:?}", show(value)),
        ),
        (_, Some(max)) if x > max => (
            GraphErrorKind::ValueTooBig,
            format!("{} is bigger than the maximum {max:?}", show(value)),
        ),
        _ => return None,
    };
    Some((error, format!("{problem}; expected {}", describe(kind))))
}

/// An integer literal, classified against the 64-bit range ComfyUI's INT inputs use.
enum WholeNumber {
    Exact(i128),
    Fractional,
    TooSmall,
    TooBig,
}

/// Reads a JSON number as a whole number, exactly. serde_json keeps integers up to u64 exact;
/// anything else arrived as an `f64`.
fn whole_number(number: &serde_json::Number) -> WholeNumber {
    if let Some(n) = number.as_i64() {
        return WholeNumber::Exact(n.into());
    }
    if let Some(n) = number.as_u64() {
        return WholeNumber::Exact(n.into());
    }
    let x = number.as_f64().unwrap_or(f64::NAN);
    if x.fract() != 0.0 || x.is_nan() {
        WholeNumber::Fractional
    } else if x < -(2f64.powi(63)) {
        WholeNumber::TooSmall
    } else if x >= 2f64.powi(64) {
        WholeNumber::TooBig
    } else {
        // Whole and inside [-2^63, 2^64): the conversion is exact.
        WholeNumber::Exact(x as i128)
    }
}

/// The smallest integer ≥ `limit` (an integer `n` is ≥ `limit` iff `n ≥ ceil(limit)`).
fn ceil_i128(limit: f64) -> i128 {
    limit.ceil() as i128
}

/// The largest integer ≤ `limit` (an integer `n` is ≤ `limit` iff `n ≤ floor(limit)`).
fn floor_i128(limit: f64) -> i128 {
    limit.floor() as i128
}

/// An INT limit as ComfyUI wrote it. 2^64 can only come from u64::MAX (the f64 rounding of
/// 18446744073709551615), so it prints as that; `as u64` saturates to exactly it.
fn int_limit(limit: f64) -> String {
    if limit.fract() == 0.0 && limit >= 0.0 && limit <= 2f64.powi(64) {
        (limit as u64).to_string()
    } else if limit.fract() == 0.0 && limit < 0.0 && limit >= -(2f64.powi(64)) {
        format!("-{}", (-limit) as u64)
    } else {
        format!("{limit:?}")
    }
}

/// Whether an output of type `received` may feed an input of type `expected`, as ComfyUI's
/// `validate_node_input` (non-strict) decides: equal, `*` on either side, or overlapping
/// comma-separated type lists.
pub fn types_match(received: &str, expected: &str) -> bool {
    if received == expected || received == "*" || expected == "*" {
        return true;
    }
    if !received.contains(',') && !expected.contains(',') {
        return false;
    }
    let wanted: Vec<&str> = expected.split(',').map(str::trim).collect();
    if wanted.contains(&"*") {
        return true;
    }
    received
        .split(',')
        .map(str::trim)
        .any(|ty| ty == "*" || wanted.contains(&ty))
}

/// Whether a literal is one of a combo's options (numbers compare by value).
fn combo_contains(options: &[String], value: &Value) -> bool {
    match value {
        Value::String(text) => options.iter().any(|option| option == text),
        Value::Number(number) => {
            let text = number.to_string();
            let x = number.as_f64();
            options
                .iter()
                .any(|option| *option == text || (x.is_some() && option.parse::<f64>().ok() == x))
        }
        _ => false,
    }
}

/// `"euler_fancy" is not one of euler, heun, ... (42 choices); did you mean "euler"?`
/// A "did you mean" hint is looked for only when `suggest` is true.
fn not_in_list(value: &Value, options: &[String], suggest: bool) -> String {
    if options.is_empty() {
        return format!(
            "{} is not available: this ComfyUI lists no choices for this input (for a model file: \
             none of that kind is installed)",
            show(value)
        );
    }
    let names: Vec<&str> = options.iter().map(String::as_str).collect();
    let hint = value
        .as_str()
        .filter(|_| suggest)
        .and_then(|text| closest(text, names.iter().copied()))
        .map(|name| format!("; did you mean {name:?}?"))
        .unwrap_or_default();
    format!(
        "{} is not one of {}{hint}",
        show(value),
        list_with_count(&names, "choices")
    )
}

/// `a, b, c (3 choices)` or `a, b, ... (42 choices)`.
fn list_with_count(items: &[&str], noun: &str) -> String {
    let shown: Vec<&str> = items.iter().take(SHOWN_CHOICES).copied().collect();
    list_first(&shown, items.len(), noun)
}

/// `shown` (the first items of a list of `total`), then `, ...` when cut, then the count.
fn list_first<S: AsRef<str>>(shown: &[S], total: usize, noun: &str) -> String {
    let joined = shown
        .iter()
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join(", ");
    let more = if total > shown.len() { ", ..." } else { "" };
    let noun = if total == 1 {
        noun.trim_end_matches('s')
    } else {
        noun
    };
    format!("{joined}{more} ({total} {noun})")
}

/// What an input accepts, for messages: `an integer from 1 to 16384`, `a link to a MODEL output`.
fn describe(kind: &InputKind) -> String {
    let range = |min: Option<String>, max: Option<String>| match (min, max) {
        (Some(min), Some(max)) => format!(" from {min} to {max}"),
        (Some(min), None) => format!(" of at least {min}"),
        (None, Some(max)) => format!(" of at most {max}"),
        (None, None) => String::new(),
    };
    match kind {
        InputKind::Int { min, max, .. } => format!(
            "an integer{}",
            range(min.map(int_limit), max.map(int_limit))
        ),
        InputKind::Float { min, max, .. } => format!(
            "a number{}",
            range(min.map(|x| format!("{x:?}")), max.map(|x| format!("{x:?}")))
        ),
        InputKind::String { .. } => "a string".to_owned(),
        InputKind::Boolean => "true or false".to_owned(),
        InputKind::Combo { open: true, .. } => "a choice or file name".to_owned(),
        InputKind::Combo { options, .. } if options.is_empty() => {
            "one of its choices, but this ComfyUI lists none".to_owned()
        }
        InputKind::Combo { options, .. } => {
            let names: Vec<&str> = options.iter().map(String::as_str).collect();
            format!("one of {}", list_with_count(&names, "choices"))
        }
        InputKind::Link(ty) if ty == "*" => {
            "a link [\"<node id>\", <output index>] to any output".to_owned()
        }
        InputKind::Link(ty) => format!("a link [\"<node id>\", <output index>] to a {ty} output"),
    }
}

/// `1 output (0: IMAGE)` / `no outputs`.
fn describe_outputs(class: &NodeClass) -> String {
    match class.outputs.len() {
        0 => "no outputs".to_owned(),
        n => {
            let list: Vec<String> = class
                .outputs
                .iter()
                .enumerate()
                .map(|(i, ty)| format!("{i}: {ty}"))
                .collect();
            let noun = if n == 1 { "output" } else { "outputs" };
            format!("{n} {noun} ({})", list.join(", "))
        }
    }
}

/// A JSON value for a message, cut to a readable length. Serialising stops soon after the
/// cut, so a huge value costs no more than a small one.
fn show(value: &Value) -> String {
    /// Collects bytes up to a limit, then refuses more (which stops serde_json).
    struct Capped(Vec<u8>);
    impl std::io::Write for Capped {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            // Every char is at most 4 bytes: this many bytes hold the shown chars and one more.
            let room = (SHOWN_VALUE_CHARS + 1) * 4 - self.0.len().min((SHOWN_VALUE_CHARS + 1) * 4);
            if room == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            let take = buf.len().min(room);
            self.0.extend_from_slice(&buf[..take]);
            Ok(take)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut out = Capped(Vec::new());
    let _ = serde_json::to_writer(&mut out, value);
    let text = String::from_utf8_lossy(&out.0);
    match text.char_indices().nth(SHOWN_VALUE_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.into_owned(),
    }
}

/// A name taken from the graph (node id, class, input), cut to [`SHOWN_NAME_CHARS`].
fn clip(name: &str) -> String {
    match name.char_indices().nth(SHOWN_NAME_CHARS) {
        Some((cut, _)) => format!("{}...", &name[..cut]),
        None => name.to_owned(),
    }
}

/// A list literal for a message.
fn show_items(items: &[Value]) -> String {
    show(&Value::Array(items.to_vec()))
}

/// The candidate closest to `needle` (case-insensitive edit distance), if it is close enough
/// to be a likely typo (at most a third of its length, at least 1). Only called on error paths,
/// within the run's suggestion budget. Cost: candidates whose length differs by more than the
/// limit are skipped unread; the others cost a banded edit distance that stops as soon as the
/// limit is out of reach; needles over [`SUGGEST_MAX_CHARS`] get no suggestion.
fn closest<'a>(needle: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    if needle.chars().nth(SUGGEST_MAX_CHARS).is_some() {
        return None;
    }
    let needle: Vec<char> = needle.chars().flat_map(char::to_lowercase).collect();
    let limit = (needle.len() / 3).max(1);
    let mut best: Option<(usize, &str)> = None;
    let mut lower: Vec<char> = Vec::new();
    for candidate in candidates {
        // Lowercasing keeps the char count for almost every name; a name whose count changes
        // is measured again below.
        if candidate.len() < needle.len().saturating_sub(limit)
            || candidate.chars().count().abs_diff(needle.len()) > limit + 1
        {
            continue;
        }
        lower.clear();
        lower.extend(candidate.chars().flat_map(char::to_lowercase));
        if lower.len().abs_diff(needle.len()) > limit {
            continue;
        }
        // Only a strictly better candidate (or an equal one sorting first) matters.
        let bound = best.map_or(limit, |(d, _)| d);
        let Some(distance) = bounded_edit_distance(&needle, &lower, bound) else {
            continue;
        };
        if best.is_none_or(|(d, name)| (distance, candidate) < (d, name)) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, name)| name)
}

/// Levenshtein distance of `a` and `b` when it is at most `limit`, else `None`. Only the band
/// of width `2 * limit + 1` around the diagonal is computed, and the computation stops as soon
/// as every cell of a row exceeds `limit`: O(len * limit).
pub fn bounded_edit_distance(a: &[char], b: &[char], limit: usize) -> Option<usize> {
    if a.len().abs_diff(b.len()) > limit {
        return None;
    }
    let over = limit + 1;
    // row[j]: distance between a[..i] and b[..j]; cells outside the band hold `over`.
    let mut row: Vec<usize> = (0..=b.len()).map(|j| j.min(over)).collect();
    for (i, ca) in a.iter().enumerate() {
        let from = (i + 1).saturating_sub(limit).max(1);
        let to = (i + 1 + limit).min(b.len());
        let mut diagonal = row[from - 1];
        row[from - 1] = if from == 1 { (i + 1).min(over) } else { over };
        let mut row_min = row[from - 1];
        for j in from..=to {
            let above = row[j];
            let cost = if *ca == b[j - 1] {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j - 1])
            };
            row[j] = cost.min(over);
            row_min = row_min.min(row[j]);
            diagonal = above;
        }
        if to < b.len() {
            row[to + 1] = over;
        }
        if row_min > limit {
            return None;
        }
    }
    let distance = row[b.len()];
    (distance <= limit).then_some(distance)
}

/// The dependency cycles of a graph: strongly connected components with more than one node,
/// or one node that depends on itself (Tarjan's algorithm, iterative). Each cycle lists
/// positions in graph order; cycles are ordered by their first node.
fn cycles(deps: &[Vec<usize>]) -> Vec<Vec<usize>> {
    const UNSEEN: usize = usize::MAX;
    let n = deps.len();
    let mut found = Vec::new();
    if deps.iter().all(Vec::is_empty) {
        return found;
    }
    let mut order = vec![UNSEEN; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut calls: Vec<(usize, usize)> = Vec::new();
    let mut next = 0;
    for root in 0..n {
        if order[root] != UNSEEN {
            continue;
        }
        order[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        calls.push((root, 0));
        while let Some(&(v, child)) = calls.last() {
            if let Some(&w) = deps[v].get(child) {
                if let Some(top) = calls.last_mut() {
                    top.1 += 1;
                }
                if order[w] == UNSEEN {
                    order[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    calls.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(order[w]);
                }
                continue;
            }
            calls.pop();
            if let Some(&(parent, _)) = calls.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == order[v] {
                let mut component = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 || deps[v].contains(&v) {
                    component.sort_unstable();
                    found.push(component);
                }
            }
        }
    }
    found.sort_unstable();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_match_like_comfyui() {
        assert!(types_match("IMAGE", "IMAGE"));
        assert!(!types_match("LATENT", "IMAGE"));
        assert!(types_match("LATENT", "*"));
        assert!(types_match("*", "MODEL"));
        assert!(types_match(
            "RIG_TASK_ID",
            "MODEL_TASK_ID,RIG_TASK_ID,RETARGET_TASK_ID"
        ));
        assert!(types_match("STRING, INT", "INT"));
        assert!(!types_match("STRING,FLOAT", "INT,BOOLEAN"));
    }

    #[test]
    fn whole_numbers_are_exact_across_the_u64_range() {
        let n = |text: &str| serde_json::from_str::<serde_json::Number>(text).unwrap();
        assert!(matches!(
            whole_number(&n("9007199254740993")),
            WholeNumber::Exact(9_007_199_254_740_993)
        ));
        assert!(
            matches!(whole_number(&n("18446744073709551615")), WholeNumber::Exact(x) if x == u64::MAX as i128)
        );
        assert!(matches!(whole_number(&n("64.0")), WholeNumber::Exact(64)));
        assert!(matches!(whole_number(&n("64.7")), WholeNumber::Fractional));
        assert!(matches!(
            whole_number(&n("18446744073709551616")),
            WholeNumber::TooBig
        ));
        assert!(matches!(whole_number(&n("-1e30")), WholeNumber::TooSmall));
        // u64::MAX as a limit is 2^64 as f64: u64::MAX itself stays within it.
        let max = u64::MAX as f64;
        assert!(u64::MAX as i128 <= floor_i128(max));
        assert_eq!(int_limit(max), "18446744073709551615");
        assert_eq!(
            int_limit(-9_223_372_036_854_775_807.0),
            "-9223372036854775808"
        );
    }

    #[test]
    fn cycles_finds_loops_and_self_links_only() {
        assert!(cycles(&[vec![1], vec![2], vec![]]).is_empty());
        assert_eq!(
            cycles(&[vec![1], vec![0], vec![2], vec![]]),
            vec![vec![0, 1], vec![2]]
        );
        assert_eq!(
            cycles(&[vec![], vec![3], vec![1], vec![2], vec![0]]),
            vec![vec![1, 2, 3]]
        );
    }

    #[test]
    fn closest_suggests_only_near_names() {
        let names = ["euler", "euler_ancestral", "heun"];
        assert_eq!(closest("eulr", names.iter().copied()), Some("euler"));
        assert_eq!(closest("EULER", names.iter().copied()), Some("euler"));
        assert_eq!(closest("dpmpp_2m", names.iter().copied()), None);
    }

    /// Plain Levenshtein distance, the reference for the bounded one.
    fn edit_distance(a: &[char], b: &[char]) -> usize {
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.iter().enumerate() {
            let mut diagonal = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let above = row[j + 1];
                row[j + 1] = if ca == cb {
                    diagonal
                } else {
                    1 + diagonal.min(above).min(row[j])
                };
                diagonal = above;
            }
        }
        row[b.len()]
    }

    #[test]
    fn bounded_edit_distance_agrees_with_levenshtein_within_the_bound() {
        let words = [
            "",
            "a",
            "ab",
            "ba",
            "abc",
            "kitten",
            "sitting",
            "KSampler",
            "ksampler",
            "KSamplr",
            "euler",
            "euler_ancestral",
            "heun",
            "saturday",
            "sunday",
            "xxxxxxxxxxxx",
        ];
        for a in words {
            for b in words {
                let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
                let exact = edit_distance(&a, &b);
                for limit in 0..8 {
                    let expected = (exact <= limit).then_some(exact);
                    assert_eq!(
                        bounded_edit_distance(&a, &b, limit),
                        expected,
                        "{a:?} {b:?} limit {limit}"
                    );
                }
            }
        }
    }

    #[test]
    fn long_needles_get_no_suggestion() {
        let long = "k".repeat(SUGGEST_MAX_CHARS + 1);
        assert_eq!(closest(&long, [long.as_str()].into_iter()), None);
        let ok = "k".repeat(SUGGEST_MAX_CHARS);
        assert_eq!(closest(&ok, [ok.as_str()].into_iter()), Some(ok.as_str()));
    }

    #[test]
    fn huge_values_are_shown_cut_and_cheaply() {
        let huge = Value::from("x".repeat(1 << 20));
        let text = show(&huge);
        assert_eq!(text.chars().count(), SHOWN_VALUE_CHARS + 3, "{text}");
        assert!(text.ends_with("..."));
        assert_eq!(show(&Value::from("é")), "\"é\"");
    }

    #[test]
    fn long_choice_lists_are_cut_but_counted() {
        let options: Vec<String> = (0..42).map(|i| format!("s{i}")).collect();
        let text = not_in_list(&Value::from("zzz"), &options, true);
        assert!(text.contains("s0, s1"), "{text}");
        assert!(text.contains("... (42 choices)"), "{text}");
        assert!(!text.contains("s41"), "{text}");
    }
}
