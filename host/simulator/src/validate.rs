//! Graph validation exactly as ComfyUI 0.3.75's `validate_prompt` / `validate_inputs` do it.
//!
//! Written independently of the host's own checker: it follows the server's algorithm step
//! by step (including its quirks) so that every error object, message text and `node_errors`
//! entry matches the recordings:
//! - errors of a linked-node exception are filed under the *upstream* node, with the
//!   downstream input's name and config;
//! - `dependent_outputs` collects every failing output for every failing node seen so far;
//! - widget values are converted in place (`int()`, `float()`, `str()`, `bool()`), so the
//!   queued prompt holds the converted values;
//! - at least one valid output makes the whole prompt valid (partial validity).
//!
//! Invariant: validation never panics on any JSON; where Python would raise outside its
//! `try` blocks the result is [`Validation::Crash`] (the server answers 500).

use serde_json::{Map, Value, json};

use crate::catalog::{Catalog, Category, InputSpec, combo_options_of};
use crate::files::{Dir, FileStore, join, split_annotation};
use crate::pyval::{self, PyErr};
use crate::traceback;

/// The outcome of validating a prompt.
#[derive(Debug)]
pub(crate) enum Validation {
    /// Python raised where nothing catches it: the server answers 500.
    Crash(PyErr),
    /// 400 `{"error": error, "node_errors": node_errors}`.
    Invalid {
        /// The graph-level error object.
        error: Value,
        /// Per-node errors.
        node_errors: Value,
    },
    /// 200: these outputs run; `node_errors` lists the outputs that were dropped.
    Valid {
        /// Output node ids to execute, in prompt order.
        outputs: Vec<String>,
        /// Per-node errors of the dropped outputs (often `{}`).
        node_errors: Value,
    },
}

/// Validates `prompt` (the `prompt` field of `POST /prompt`), converting widget values in place.
pub(crate) fn validate_prompt(
    prompt: &mut Value,
    partial_targets: Option<&Value>,
    catalog: &Catalog,
    files: &FileStore,
) -> Validation {
    let map = match prompt {
        Value::Object(map) => map,
        Value::Array(a) if a.is_empty() => return no_outputs(),
        Value::String(s) if s.is_empty() => return no_outputs(),
        other => {
            return Validation::Crash(PyErr::new(
                "TypeError",
                format!("invalid prompt of type '{}'", pyval::type_name(other)),
            ));
        }
    };
    let outputs = match collect_outputs(map, partial_targets, catalog) {
        Ok(outputs) => outputs,
        Err(early) => return *early,
    };
    if outputs.is_empty() {
        return no_outputs();
    }
    let mut v = Validator {
        prompt: map,
        catalog,
        files,
        validated: Vec::new(),
        in_progress: Vec::new(),
    };
    v.validate_outputs(&outputs)
}

fn error_object(kind: &str, message: &str, details: &str) -> Value {
    json!({"type": kind, "message": message, "details": details, "extra_info": {}})
}

fn no_outputs() -> Validation {
    Validation::Invalid {
        error: error_object("prompt_no_outputs", "Prompt has no outputs", ""),
        node_errors: json!({}),
    }
}

/// The first loop of `validate_prompt`: every node needs a known `class_type`; output nodes
/// (restricted to `partial_execution_targets` when given) are collected in prompt order.
fn collect_outputs(
    map: &Map<String, Value>,
    partial_targets: Option<&Value>,
    catalog: &Catalog,
) -> Result<Vec<String>, Box<Validation>> {
    let mut outputs = Vec::new();
    for (id, node) in map {
        let has_class = match node {
            Value::Object(m) => m.contains_key("class_type"),
            other => {
                pyval::contains(other, "class_type").map_err(|e| Box::new(Validation::Crash(e)))?
            }
        };
        if !has_class {
            return Err(Box::new(Validation::Invalid {
                error: error_object(
                    "invalid_prompt",
                    "Cannot execute because a node is missing the class_type property.",
                    &format!("Node ID '#{id}'"),
                ),
                node_errors: json!({}),
            }));
        }
        let class_type =
            pyval::get_item(node, "class_type").map_err(|e| Box::new(Validation::Crash(e)))?;
        let known = match class_type {
            Value::String(s) => catalog.has_class(s),
            Value::Array(_) | Value::Object(_) => {
                return Err(Box::new(Validation::Crash(PyErr::new(
                    "TypeError",
                    format!("unhashable type: '{}'", pyval::type_name(class_type)),
                ))));
            }
            _ => false,
        };
        if !known {
            return Err(Box::new(Validation::Invalid {
                error: error_object(
                    "invalid_prompt",
                    &format!(
                        "Cannot execute because node {} does not exist.",
                        pyval::py_str(class_type)
                    ),
                    &format!("Node ID '#{id}'"),
                ),
                node_errors: json!({}),
            }));
        }
        let class = class_type.as_str().unwrap_or_default();
        if catalog.is_output_node(class) {
            let selected = match partial_targets {
                None | Some(Value::Null) => true,
                Some(Value::Array(items)) => items.iter().any(|i| i.as_str() == Some(id)),
                Some(other) => {
                    pyval::contains(other, id).map_err(|e| Box::new(Validation::Crash(e)))?
                }
            };
            if selected {
                outputs.push(id.clone());
            }
        }
    }
    Ok(outputs)
}

/// An exception raised inside `validate_inputs`, with the frame that raised it.
struct Raised {
    err: PyErr,
    frame: String,
}

impl Raised {
    fn new(err: PyErr, frame: String) -> Self {
        Self { err, frame }
    }
}

/// `(valid, reasons)` as stored in ComfyUI's `validated` dict.
type Outcome = (bool, Vec<Value>);

struct Validator<'a> {
    prompt: &'a mut Map<String, Value>,
    catalog: &'a Catalog,
    files: &'a FileStore,
    /// ComfyUI's `validated` dict, in insertion order.
    validated: Vec<(String, Outcome)>,
    /// Nodes whose validation is under way (a revisit means a cycle).
    in_progress: Vec<String>,
}

impl Validator<'_> {
    fn validate_outputs(&mut self, outputs: &[String]) -> Validation {
        let mut good = Vec::new();
        let mut failed: Vec<(String, Vec<Value>)> = Vec::new();
        let mut node_errors = Map::new();
        for o in outputs {
            let (valid, reasons) = match self.validate_inputs(o) {
                Ok(outcome) => outcome,
                Err(raised) => {
                    let reasons = vec![json!({
                        "type": "exception_during_validation",
                        "message": "Exception when validating node",
                        "details": raised.err.message,
                        "extra_info": {
                            "exception_type": raised.err.type_name,
                            "traceback": [traceback::validate_prompt_call(), raised.frame],
                        }
                    })];
                    self.set_validated(o, (false, reasons.clone()));
                    (false, reasons)
                }
            };
            if valid {
                good.push(o.clone());
                continue;
            }
            failed.push((o.clone(), reasons));
            for (node_id, (ok, reasons)) in &self.validated {
                if *ok || reasons.is_empty() {
                    continue;
                }
                let entry = node_errors.entry(node_id.clone()).or_insert_with(|| {
                    let class_type = self
                        .prompt
                        .get(node_id)
                        .and_then(|n| n.get("class_type"))
                        .cloned()
                        .unwrap_or(Value::Null);
                    json!({"errors": reasons, "dependent_outputs": [], "class_type": class_type})
                });
                if let Some(deps) = entry
                    .get_mut("dependent_outputs")
                    .and_then(Value::as_array_mut)
                {
                    deps.push(Value::String(o.clone()));
                }
            }
        }
        let node_errors = Value::Object(node_errors);
        if good.is_empty() {
            let lines: Vec<String> = failed
                .iter()
                .flat_map(|(_, reasons)| reasons.iter())
                .map(|e| {
                    format!(
                        "{}: {}",
                        e["message"].as_str().unwrap_or_default(),
                        e["details"].as_str().unwrap_or_default()
                    )
                })
                .collect();
            return Validation::Invalid {
                error: error_object(
                    "prompt_outputs_failed_validation",
                    "Prompt outputs failed validation",
                    &lines.join("\n"),
                ),
                node_errors,
            };
        }
        Validation::Valid {
            outputs: good,
            node_errors,
        }
    }

    fn get_validated(&self, id: &str) -> Option<&Outcome> {
        self.validated.iter().find(|(k, _)| k == id).map(|(_, o)| o)
    }

    /// Python dict assignment: an existing key keeps its position.
    fn set_validated(&mut self, id: &str, outcome: Outcome) {
        match self.validated.iter_mut().find(|(k, _)| k == id) {
            Some(slot) => slot.1 = outcome,
            None => self.validated.push((id.to_string(), outcome)),
        }
    }

    fn set_input(&mut self, id: &str, name: &str, value: Value) {
        if let Some(inputs) = self
            .prompt
            .get_mut(id)
            .and_then(|n| n.get_mut("inputs"))
            .and_then(Value::as_object_mut)
        {
            inputs.insert(name.to_string(), value);
        }
    }

    fn validate_inputs(&mut self, id: &str) -> Result<Outcome, Raised> {
        if let Some(done) = self.get_validated(id) {
            return Ok(done.clone());
        }
        if self.in_progress.iter().any(|p| p == id) {
            return Err(Raised::new(
                PyErr::new("RecursionError", "maximum recursion depth exceeded"),
                traceback::recursion(),
            ));
        }
        let depth = self.in_progress.len();
        self.in_progress.push(id.to_string());
        let result = self.validate_node(id);
        self.in_progress.truncate(depth);
        let outcome = result?;
        self.set_validated(id, outcome.clone());
        Ok(outcome)
    }

    fn validate_node(&mut self, id: &str) -> Result<Outcome, Raised> {
        let node = self.prompt.get(id).cloned().unwrap_or(Value::Null);
        let inputs = pyval::get_item(&node, "inputs")
            .map_err(|e| Raised::new(e, traceback::node_inputs_lookup()))?
            .clone();
        let class = node
            .get("class_type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let custom = custom_validation_inputs(&class);
        let mut errors: Vec<Value> = Vec::new();
        let mut valid = true;

        for x in self.catalog.input_names(&class) {
            let Some(spec) = self.catalog.input_spec(&class, &x) else {
                continue;
            };
            let present = match &inputs {
                Value::Object(m) => m.contains_key(&x),
                other => pyval::contains(other, &x)
                    .map_err(|e| Raised::new(e, traceback::input_value_lookup()))?,
            };
            if !present {
                if spec.category == Category::Required {
                    errors.push(json!({
                        "type": "required_input_missing",
                        "message": "Required input is missing",
                        "details": x,
                        "extra_info": {"input_name": x}
                    }));
                }
                continue;
            }
            let val = pyval::get_item(&inputs, &x)
                .map_err(|e| Raised::new(e, traceback::input_value_lookup()))?
                .clone();
            let info = json!([spec.input_type, spec.extra]);
            if let Value::Array(link) = &val {
                match self.check_link(&x, link, &spec, &info, custom)? {
                    LinkCheck::Ok => {}
                    LinkCheck::Error(e) => errors.push(e),
                    LinkCheck::UpstreamInvalid => valid = false,
                }
            } else if let Some(e) = self.check_widget(id, &x, val, &spec, &info, custom)? {
                errors.push(e);
            }
        }

        if !custom.is_empty() {
            errors.extend(self.custom_validation(id, &class)?);
        }
        Ok((errors.is_empty() && valid, errors))
    }

    fn check_link(
        &mut self,
        x: &str,
        link: &[Value],
        spec: &InputSpec,
        info: &Value,
        custom: &[&str],
    ) -> Result<LinkCheck, Raised> {
        if link.len() != 2 {
            return Ok(LinkCheck::Error(json!({
                "type": "bad_linked_input",
                "message": "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                "details": x,
                "extra_info": {"input_name": x, "input_config": info, "received_value": link}
            })));
        }
        let o_id = match &link[0] {
            Value::String(s) if self.prompt.contains_key(s) => s.clone(),
            Value::Array(_) | Value::Object(_) => {
                let e = PyErr::new(
                    "TypeError",
                    format!("unhashable type: '{}'", pyval::type_name(&link[0])),
                );
                return Err(Raised::new(e, traceback::linked_node_lookup()));
            }
            other => {
                return Err(Raised::new(
                    PyErr::key_error(other),
                    traceback::linked_node_lookup(),
                ));
            }
        };
        let o_class = self.prompt[&o_id]
            .get("class_type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let returns = self.catalog.outputs(&o_class);
        let received_type = tuple_index(&returns, &link[1])
            .map_err(|e| Raised::new(e, traceback::linked_slot_lookup()))?;
        if !custom.contains(&"input_types") && !types_compatible(&received_type, &spec.input_type) {
            return Ok(LinkCheck::Error(json!({
                "type": "return_type_mismatch",
                "message": "Return type mismatch between linked nodes",
                "details": format!(
                    "{x}, received_type({}) mismatch input_type({})",
                    pyval::py_str(&received_type),
                    pyval::py_str(&spec.input_type)
                ),
                "extra_info": {
                    "input_name": x,
                    "input_config": info,
                    "received_type": received_type,
                    "linked_node": link
                }
            })));
        }
        match self.validate_inputs(&o_id) {
            Ok((true, _)) => Ok(LinkCheck::Ok),
            Ok((false, _)) => Ok(LinkCheck::UpstreamInvalid),
            Err(raised) => {
                let reasons = vec![json!({
                    "type": "exception_during_inner_validation",
                    "message": "Exception when validating inner node",
                    "details": raised.err.message,
                    "extra_info": {
                        "input_name": x,
                        "input_config": info,
                        "exception_message": raised.err.message,
                        "exception_type": raised.err.type_name,
                        "traceback": [traceback::inner_validation_call(), raised.frame],
                        "linked_node": link
                    }
                })];
                self.set_validated(&o_id, (false, reasons));
                Ok(LinkCheck::UpstreamInvalid)
            }
        }
    }

    fn check_widget(
        &mut self,
        id: &str,
        x: &str,
        mut val: Value,
        spec: &InputSpec,
        info: &Value,
        custom: &[&str],
    ) -> Result<Option<Value>, Raised> {
        if let Some(inner) = val.get("__value__").filter(|_| val.is_object()).cloned() {
            val = inner;
            self.set_input(id, x, val.clone());
        }
        let converted = match spec.input_type.as_str() {
            Some("INT") => Some(pyval::to_int(&val)),
            Some("FLOAT") => Some(pyval::to_float(&val)),
            Some("STRING") => Some(Ok(Value::String(pyval::py_str(&val)))),
            Some("BOOLEAN") => Some(Ok(Value::Bool(pyval::truthy(&val)))),
            _ => None,
        };
        if let Some(converted) = converted {
            match converted {
                Ok(v) => {
                    val = v;
                    self.set_input(id, x, val.clone());
                }
                Err(e) => {
                    return Ok(Some(json!({
                        "type": "invalid_input_type",
                        "message": format!(
                            "Failed to convert an input value to a {} value",
                            pyval::py_str(&spec.input_type)
                        ),
                        "details": format!("{x}, {}, {}", pyval::py_str(&val), e.message),
                        "extra_info": {
                            "input_name": x,
                            "input_config": info,
                            "received_value": val,
                            "exception_message": e.message
                        }
                    })));
                }
            }
        }
        if custom.contains(&x) {
            return Ok(None);
        }
        let limit_err = |e| Raised::new(e, traceback::limit_comparison());
        if let Some(min) = spec.extra.get("min")
            && pyval::less_than(&val, min).map_err(limit_err)?
        {
            return Ok(Some(json!({
                "type": "value_smaller_than_min",
                "message": format!("Value {} smaller than min of {}", pyval::py_str(&val), pyval::py_str(min)),
                "details": x,
                "extra_info": {"input_name": x, "input_config": info, "received_value": val}
            })));
        }
        if let Some(max) = spec.extra.get("max")
            && pyval::greater_than(&val, max).map_err(limit_err)?
        {
            return Ok(Some(json!({
                "type": "value_bigger_than_max",
                "message": format!("Value {} bigger than max of {}", pyval::py_str(&val), pyval::py_str(max)),
                "details": x,
                "extra_info": {"input_name": x, "input_config": info, "received_value": val}
            })));
        }
        // A V3 combo without `options` is filled by the frontend from a remote list; the
        // simulator cannot know that list, so it accepts any value there.
        if let Some(options) = combo_options_of(spec)
            && !options.iter().any(|o| pyval::py_eq(o, &val))
        {
            let (list_info, input_config) = if options.len() > 20 {
                (format!("(list of length {})", options.len()), Value::Null)
            } else {
                (pyval::repr(&Value::Array(options)), info.clone())
            };
            return Ok(Some(json!({
                "type": "value_not_in_list",
                "message": "Value not in list",
                "details": format!("{x}: '{}' not in {list_info}", pyval::py_str(&val)),
                "extra_info": {"input_name": x, "input_config": input_config, "received_value": val}
            })));
        }
        Ok(None)
    }

    /// The image loaders' `VALIDATE_INPUTS(image)`: the file must exist.
    fn custom_validation(&self, id: &str, class: &str) -> Result<Vec<Value>, Raised> {
        let raise = |e| Raised::new(e, traceback::custom_validation());
        let inputs = self.prompt.get(id).and_then(|n| n.get("inputs"));
        let Some(image) = inputs.and_then(|i| i.get("image")) else {
            return Err(raise(PyErr::new(
                "TypeError",
                format!(
                    "{class}.VALIDATE_INPUTS() missing 1 required positional argument: 'image'"
                ),
            )));
        };
        let Some(name) = image.as_str().filter(|_| !image.is_array()) else {
            let type_name = if image.is_array() {
                "NoneType"
            } else {
                pyval::type_name(image)
            };
            return Err(raise(PyErr::new(
                "AttributeError",
                format!("'{type_name}' object has no attribute 'endswith'"),
            )));
        };
        let default_dir = if class == "LoadImageOutput" {
            Dir::Output
        } else {
            Dir::Input
        };
        if image_exists(self.files, name, default_dir) {
            return Ok(Vec::new());
        }
        Ok(vec![json!({
            "type": "custom_validation_failed",
            "message": "Custom validation failed for node",
            "details": format!("image - Invalid image file: {name}"),
            "extra_info": {"input_name": "image"}
        })])
    }
}

enum LinkCheck {
    Ok,
    Error(Value),
    UpstreamInvalid,
}

/// Whether a (possibly annotated) image name exists, like `folder_paths.exists_annotated_filepath`.
pub(crate) fn image_exists(files: &FileStore, name: &str, default_dir: Dir) -> bool {
    let (name, dir) = split_annotation(name);
    let dir = dir.unwrap_or(default_dir);
    if name.is_empty() {
        return true;
    }
    join("", name).is_some_and(|path| files.exists(dir, &path))
}

/// Inputs handled by a node's own `VALIDATE_INPUTS` (they skip the min/max/combo checks).
fn custom_validation_inputs(class: &str) -> &'static [&'static str] {
    match class {
        "LoadImage" | "LoadImageMask" | "LoadImageOutput" => &["image"],
        _ => &[],
    }
}

/// Python `RETURN_TYPES[index]` on a tuple.
fn tuple_index(returns: &[Value], index: &Value) -> Result<Value, PyErr> {
    let i = match index {
        Value::Bool(_) | Value::Number(_) => match pyval::as_num(index) {
            Some(pyval::PyNum::Int(i)) => i,
            _ => {
                return Err(PyErr::new(
                    "TypeError",
                    "tuple indices must be integers or slices, not float",
                ));
            }
        },
        other => {
            return Err(PyErr::new(
                "TypeError",
                format!(
                    "tuple indices must be integers or slices, not {}",
                    pyval::type_name(other)
                ),
            ));
        }
    };
    let len = returns.len() as i128;
    let pos = if i < 0 { i + len } else { i };
    if pos < 0 || pos >= len {
        return Err(PyErr::new("IndexError", "tuple index out of range"));
    }
    Ok(returns[pos as usize].clone())
}

/// ComfyUI's `validate_node_input`: equal types, a `*` wildcard, or a shared member of
/// comma-separated type lists.
fn types_compatible(received: &Value, input_type: &Value) -> bool {
    if pyval::py_eq(received, input_type) {
        return true;
    }
    let (Some(r), Some(i)) = (received.as_str(), input_type.as_str()) else {
        return false;
    };
    let split = |s: &str| {
        s.split(',')
            .map(|t| t.trim().to_string())
            .collect::<Vec<_>>()
    };
    let (rs, is) = (split(r), split(i));
    if rs.iter().chain(&is).any(|t| t == "*") {
        return true;
    }
    rs.iter().any(|t| is.contains(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(prompt: Value) -> (Validation, Value) {
        let catalog = Catalog::bundled().unwrap();
        let files = FileStore::new(1 << 20);
        let mut p = prompt;
        let v = validate_prompt(&mut p, None, &catalog, &files);
        (v, p)
    }

    fn invert_graph(width: Value) -> Value {
        json!({
            "1": {"class_type": "EmptyImage", "inputs": {"width": width, "height": 64, "batch_size": 1, "color": 0}},
            "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}}
        })
    }

    #[test]
    fn float_for_int_is_converted_in_place() {
        let (v, p) = check(invert_graph(json!(64.7)));
        assert!(matches!(v, Validation::Valid { ref outputs, .. } if outputs == &["3"]));
        assert_eq!(p["1"]["inputs"]["width"], json!(64));
    }

    #[test]
    fn missing_node_is_filed_under_the_upstream_node() {
        let mut g = invert_graph(json!(64));
        g["2"]["inputs"]["image"] = json!(["99", 0]);
        let (v, _) = check(g);
        let Validation::Invalid { error, node_errors } = v else {
            panic!("expected invalid")
        };
        assert_eq!(error["type"], "prompt_outputs_failed_validation");
        let e = &node_errors["2"]["errors"][0];
        assert_eq!(e["type"], "exception_during_inner_validation");
        assert_eq!(e["details"], "'99'");
        assert_eq!(e["extra_info"]["input_name"], "images");
        assert_eq!(e["extra_info"]["linked_node"], json!(["2", 0]));
        assert_eq!(node_errors["2"]["dependent_outputs"], json!(["3"]));
    }

    #[test]
    fn limits_and_types() {
        let (v, _) = check(invert_graph(json!(100000)));
        let Validation::Invalid { node_errors, .. } = v else {
            panic!()
        };
        assert_eq!(
            node_errors["1"]["errors"][0]["message"],
            "Value 100000 bigger than max of 16384"
        );
        let (v, _) = check(invert_graph(json!("abc")));
        let Validation::Invalid { node_errors, .. } = v else {
            panic!()
        };
        let e = &node_errors["1"]["errors"][0];
        assert_eq!(
            e["details"],
            "width, abc, invalid literal for int() with base 10: 'abc'"
        );
        assert_eq!(
            e["message"],
            "Failed to convert an input value to a INT value"
        );
    }

    #[test]
    fn cycles_do_not_hang() {
        let g = json!({
            "1": {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}},
            "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}}
        });
        let (v, _) = check(g);
        assert!(matches!(v, Validation::Invalid { .. }));
    }

    #[test]
    fn prompt_shapes() {
        assert!(matches!(check(json!([1, 2, 3])).0, Validation::Crash(_)));
        assert!(matches!(check(json!("hello")).0, Validation::Crash(_)));
        assert!(matches!(check(json!({})).0, Validation::Invalid { .. }));
        let (v, _) = check(json!({"1": {"class_type": "Nope", "inputs": {}}}));
        let Validation::Invalid { error, .. } = v else {
            panic!()
        };
        assert_eq!(
            error["message"],
            "Cannot execute because node Nope does not exist."
        );
    }
}
