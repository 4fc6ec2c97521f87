//! JSON Schemas of the tools: inputs (derived from the templates' parameter specs where
//! they concern templates) and outputs.
//!
//! Invariants: every schema is a JSON object with `"type": "object"` and no combinator
//! (`oneOf`/`anyOf`/`allOf`) at its top level, which several MCP clients refuse in tool
//! inputs: rules across arguments (give exactly one of `template`, `workflow`,
//! `workflow_path`) are stated in descriptions and enforced by the server; `generate_image`
//! lists exactly the template ids of the catalog it was built from; a property merged from
//! several templates only keeps a constraint (`default`, `multipleOf`) that all of them
//! share and widens ranges and choices to cover all of them, so the schema never rejects a
//! value some template accepts; its `examples` are every template's, each once. Image and
//! mask parameters are strings whose description names the accepted sources
//! (`params::IMAGE_SOURCES`). Output schemas admit both a result and `{"error": …}`.

use std::sync::Arc;

use std::time::Duration;

use pack_runtime::params::{
    PARAMETERS_ARG, RETRIES_ARG, TEMPLATE_ARG, TIMEOUT_ARG, WAIT_ARG, WORKFLOW_PATH_ARG,
};
use pack_runtime::{ParamSpec, params};
use rmcp::model::JsonObject;
use serde_json::{Map, Value, json};

use crate::catalog::Catalog;

/// The inline workflow argument of `generate_image`.
pub const WORKFLOW_ARG: &str = "workflow";
/// Largest `timeout` accepted, in seconds.
pub const MAX_TIMEOUT_SECS: f64 = 3600.0;

/// The parameters of the generic `generate_image` tool, in the order they are shown.
/// Parameters of templates beyond these follow, in catalog order.
pub const SHARED_PARAMS: &[&str] = &[
    "prompt",
    "negative_prompt",
    "width",
    "height",
    "steps",
    "cfg_scale",
    "seed",
    "sampler",
    "scheduler",
    "denoise",
    "batch_size",
    "checkpoint",
];

fn object(value: Value) -> Arc<JsonObject> {
    match value {
        Value::Object(map) => Arc::new(map),
        _ => unreachable!("schemas are built as JSON objects"),
    }
}

/// The `wait`, `timeout` and `retries` properties shared by every generating tool; `timeout`
/// defaults to `default_wait` (the execution timeout, `COMFYUI_TIMEOUT`).
fn wait_properties(properties: &mut Map<String, Value>, default_wait: Duration) {
    properties.insert(
        RETRIES_ARG.into(),
        json!({
            "type": "integer",
            "default": 0,
            "minimum": 0,
            "maximum": crate::farm::FarmOptions::DEFAULT_MAX_RETRIES,
            "description": "With several ComfyUI backends: how many times the job may be resubmitted to another backend if its backend stops answering while running it (a queued job always moves). 0: such a job fails with the reason.",
        }),
    );
    properties.insert(
        WAIT_ARG.into(),
        json!({
            "type": "boolean",
            "default": false,
            "description": "Wait for the job to finish before returning: progress is reported with notifications/progress (when the request carries a progressToken) and the images come back inline. When false the call returns at once with the prompt_id.",
        }),
    );
    properties.insert(
        TIMEOUT_ARG.into(),
        json!({
            "type": "number",
            "default": default_wait.as_secs_f64(),
            "exclusiveMinimum": 0,
            "maximum": MAX_TIMEOUT_SECS,
            "description": "With wait: how many seconds to wait at most. When it runs out the call returns the job's current state (not an error); the job keeps running.",
        }),
    );
}

/// The `parameters` property of the custom-workflow tools.
fn overrides_property() -> Value {
    json!({
        "type": "object",
        "default": {},
        "description": "Overrides: seed, steps, cfg_scale, sampler, scheduler, denoise, width, height, batch_size, checkpoint, prompt, negative_prompt, or \"<node_id>.<input>\" for any input. Overrides that match nothing are listed in parameters_unmatched.",
        "additionalProperties": true,
    })
}

/// Input schema of `generate_image`: `template` (one of the catalog's ids) or a custom
/// workflow (`workflow`, `workflow_path`), the union of the templates' parameters (overrides
/// of a custom workflow), `parameters`, `wait` and `timeout`. Nothing is required by the
/// schema: which arguments a call needs depends on the template or workflow chosen, and the
/// server names what is missing.
pub fn generate_image_input(catalog: &Catalog, default_wait: Duration) -> Arc<JsonObject> {
    let templates = catalog.templates();
    let ids: Vec<&str> = templates.iter().map(|t| t.info.id.as_str()).collect();
    let mut description = if ids.is_empty() {
        "Template id. No template is loaded right now: add a workflow pack (.wasm) to the templates folder.".to_owned()
    } else {
        format!(
            "Template id, one of: {}. list_workflows describes each.",
            ids.join(", ")
        )
    };
    description.push_str(" Give exactly one of template, workflow or workflow_path.");
    let mut template = json!({"type": "string", "description": description});
    if !ids.is_empty() {
        template["enum"] = json!(ids);
    }
    let mut properties = Map::new();
    properties.insert(TEMPLATE_ARG.into(), template);
    properties.insert(
        WORKFLOW_ARG.into(),
        json!({
            "type": "object",
            "description": "Instead of template: a ComfyUI workflow in API format (ComfyUI: Export (API)) as a JSON object of nodes, or a /prompt body {\"prompt\": {...}}. The generation parameters given (prompt, negative_prompt, width, height, steps, cfg_scale, seed, sampler, scheduler, denoise, batch_size, checkpoint) and `parameters` override its inputs; the graph is checked against ComfyUI's nodes before it is queued. Same size and node limits as a workflow file.",
            "additionalProperties": true,
        }),
    );
    properties.insert(
        WORKFLOW_PATH_ARG.into(),
        json!({"type": "string", "description": "Instead of template: path of an API-format workflow file relative to or inside one of the configured workflow folders (as load_workflow). Overridden like workflow."}),
    );
    properties.insert(PARAMETERS_ARG.into(), overrides_property());

    let mut names: Vec<&str> = SHARED_PARAMS
        .iter()
        .copied()
        .filter(|n| templates.iter().any(|t| t.info.param(n).is_some()))
        .collect();
    for t in templates {
        for p in &t.info.params {
            if !names.contains(&p.name.as_str()) {
                names.push(&p.name);
            }
        }
    }
    for name in names {
        let specs: Vec<&ParamSpec> = templates
            .iter()
            .filter_map(|t| t.info.param(name))
            .collect();
        properties.insert(name.to_owned(), merged_param_schema(&specs));
    }
    for name in SHARED_PARAMS {
        properties.entry(*name).or_insert_with(
            || json!({"description": "Override of a custom workflow's input (see workflow)."}),
        );
    }
    wait_properties(&mut properties, default_wait);
    object(json!({
        "type": "object",
        "description": "Give exactly one of template, workflow or workflow_path.",
        "properties": properties,
        "additionalProperties": false,
    }))
}

/// One property covering several templates' specs of the same parameter (see the module
/// invariants). `specs` is never empty.
pub fn merged_param_schema(specs: &[&ParamSpec]) -> Value {
    let mut schema = params::param_schema(specs[0]);
    let Value::Object(s) = &mut schema else {
        return schema;
    };
    if specs.iter().any(|p| p.kind != specs[0].kind) {
        s.remove("type");
    }
    if specs.iter().any(|p| p.default != specs[0].default) {
        s.remove("default");
    }
    if specs.iter().any(|p| p.multiple_of != specs[0].multiple_of) {
        s.remove("multipleOf");
    }
    widen(s, "minimum", specs, |p| p.minimum, f64::min);
    widen(s, "maximum", specs, |p| p.maximum, f64::max);
    // -1 (a random seed) stays accepted, as in `params::param_schema`.
    let seed = specs
        .iter()
        .any(|p| p.name == params::SEED_PARAM && p.kind == pack_runtime::ParamKind::Integer);
    if seed
        && s.get("minimum")
            .and_then(Value::as_f64)
            .is_some_and(|m| m > -1.0)
    {
        s.insert("minimum".into(), json!(-1));
    }
    if specs.iter().any(|p| p.choices.is_empty()) {
        s.remove("enum");
    } else {
        let mut all: Vec<String> = Vec::new();
        for p in specs {
            for name in p.choices.iter().chain(p.aliases.iter().map(|a| &a.name)) {
                if !all.contains(name) {
                    all.push(name.clone());
                }
            }
        }
        s.insert("enum".into(), json!(all));
    }
    // Examples: every template's, each once, in catalog order.
    let mut examples: Vec<Value> = Vec::new();
    for example in specs.iter().flat_map(|p| &p.examples) {
        let example = example.to_json();
        if !examples.contains(&example) {
            examples.push(example);
        }
    }
    if examples.is_empty() {
        s.remove("examples");
    } else {
        s.insert("examples".into(), Value::Array(examples));
    }
    schema
}

fn widen(
    s: &mut Map<String, Value>,
    key: &str,
    specs: &[&ParamSpec],
    get: impl Fn(&ParamSpec) -> Option<f64>,
    pick: impl Fn(f64, f64) -> f64,
) {
    // A non-finite bound (refused at load anyway) counts as no bound.
    let values: Option<Vec<f64>> = specs
        .iter()
        .map(|p| get(p).filter(|x| x.is_finite()))
        .collect();
    match values {
        Some(v) if specs.len() > 1 => {
            let widest = v.into_iter().reduce(&pick).expect("non-empty");
            let integral = specs
                .iter()
                .all(|p| p.kind == pack_runtime::ParamKind::Integer)
                && widest.fract() == 0.0;
            s.insert(
                key.into(),
                if integral {
                    json!(widest as i64)
                } else {
                    json!(widest)
                },
            );
        }
        Some(_) => {}
        None => {
            s.remove(key);
        }
    }
}

/// Input schema of a per-template tool: the template's own schema plus `wait` and `timeout`.
pub fn template_input(input_schema: &Value, default_wait: Duration) -> Arc<JsonObject> {
    let mut schema = match input_schema {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    schema.insert("type".into(), json!("object"));
    let properties = schema.entry("properties").or_insert_with(|| json!({}));
    if let Value::Object(props) = properties {
        wait_properties(props, default_wait);
    }
    Arc::new(schema)
}

/// Input schema of `list_workflows`.
pub fn list_workflows_input() -> Arc<JsonObject> {
    object(json!({
        "type": "object",
        "properties": {
            "category": {
                "type": ["string", "null"],
                "description": "Only templates of this category (e.g. characters, items, environments), case-insensitive.",
            },
            "tags": {
                "type": ["array", "null"],
                "items": {"type": "string"},
                "description": "Only templates carrying all of these tags, case-insensitive.",
            },
        },
        "additionalProperties": false,
    }))
}

/// Input schema of `get_workflow_status`.
pub fn status_input() -> Arc<JsonObject> {
    object(json!({
        "type": "object",
        "properties": {
            "prompt_id": {"type": "string", "description": "The prompt_id returned by generate_image, a template tool or load_workflow."},
        },
        "required": ["prompt_id"],
        "additionalProperties": false,
    }))
}

/// Input schema of `list_jobs`.
pub fn list_jobs_input() -> Arc<JsonObject> {
    let states = json!(["queued", "running", "completed", "failed", "cancelled"]);
    object(json!({
        "type": "object",
        "properties": {
            "state": {"type": "string", "enum": states, "description": "Only jobs in this state."},
            "template": {"type": "string", "description": "Only jobs built by this template id."},
            "since": {"type": "number", "minimum": 0, "description": "Only jobs submitted at or after this unix time (seconds, like submitted_at)."},
            "limit": {"type": "integer", "minimum": 1, "maximum": comfyui::store::MAX_PAGE, "default": comfyui::store::DEFAULT_PAGE, "description": "Jobs per page."},
            "cursor": {"type": "string", "description": "The next_cursor of the previous page."},
        },
        "additionalProperties": false,
    }))
}

/// Output schema of `list_jobs`.
pub fn list_jobs_output() -> Arc<JsonObject> {
    let mut props = Map::new();
    props.insert("count".into(), json!({"type": "integer", "minimum": 0}));
    props.insert(
        "jobs".into(),
        json!({"type": "array", "items": {"type": "object", "properties": job_properties()}}),
    );
    props.insert(
        "next_cursor".into(),
        json!({"type": ["string", "null"], "description": "Pass as cursor for the next page; null on the last page."}),
    );
    result_or_error(props, &["count", "jobs"])
}

/// Input schema of `cancel_workflow`.
pub fn cancel_input() -> Arc<JsonObject> {
    object(json!({
        "type": "object",
        "properties": {
            "prompt_id": {"type": "string", "description": "The job to cancel: removed from the queue if waiting, interrupted if running."},
            "interrupt": {"type": "boolean", "default": false, "description": "Without prompt_id: interrupt the job that is running now, if it was submitted through this server."},
        },
        "additionalProperties": false,
    }))
}

/// Input schema of `load_workflow`.
pub fn load_workflow_input(default_wait: Duration) -> Arc<JsonObject> {
    let mut properties = Map::new();
    properties.insert(
        WORKFLOW_PATH_ARG.into(),
        json!({"type": "string", "description": "Path of a ComfyUI workflow in API format (Export (API) in ComfyUI), relative to or inside one of the configured workflow folders."}),
    );
    properties.insert(PARAMETERS_ARG.into(), overrides_property());
    wait_properties(&mut properties, default_wait);
    object(json!({
        "type": "object",
        "properties": properties,
        "required": [WORKFLOW_PATH_ARG],
        "additionalProperties": false,
    }))
}

fn error_schema() -> Value {
    json!({
        "type": "object",
        "description": "Present when the call failed: kind, message and details.",
        "properties": {
            "kind": {"type": "string"},
            "message": {"type": "string"},
            "details": {},
        },
    })
}

fn image_item_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "filename": {"type": "string"},
            "subfolder": {"type": "string"},
            "type": {"type": "string"},
            "path": {"type": "string", "description": "Absolute path of the saved file."},
            "uri": {"type": "string", "description": "comfyui://images/<prompt_id>/<file>: resources/read returns the full PNG."},
            "width": {"type": "integer"},
            "height": {"type": "integer"},
            "bytes": {"type": "integer"},
            "thumbnail": {"type": "string"},
        },
        "required": ["filename"],
    })
}

fn job_properties() -> Map<String, Value> {
    let states = json!(["queued", "running", "completed", "failed", "cancelled"]);
    let Value::Object(props) = json!({
        "prompt_id": {"type": "string"},
        "state": {"type": "string", "enum": states},
        "progress": {"type": "number", "minimum": 0, "maximum": 1},
        "queue_position": {"type": ["integer", "null"], "description": "Jobs ahead in ComfyUI's queue."},
        "execution_time": {"type": ["number", "null"], "description": "Seconds of execution."},
        "backend": {"type": "string", "description": "The ComfyUI backend (its name) the job is or was on."},
        "images": {"type": "array", "items": image_item_schema()},
        "metadata": {"type": "object"},
        "parameters": {},
        "error": {
            "type": "object",
            "description": "Why the job failed (a failed job), or why the call failed.",
        },
        "node_errors": {"type": "object"},
        "submitted_at": {"type": ["number", "null"]},
        "started_at": {"type": ["number", "null"]},
        "finished_at": {"type": ["number", "null"]},
    }) else {
        unreachable!()
    };
    props
}

fn result_or_error(properties: Map<String, Value>, required: &[&str]) -> Arc<JsonObject> {
    object(json!({
        "type": "object",
        "properties": properties,
        "anyOf": [
            {"required": required},
            {"required": ["error"]},
        ],
    }))
}

/// The fields a custom workflow's result adds.
fn custom_workflow_properties(props: &mut Map<String, Value>) {
    props.insert("workflow_name".into(), json!({"type": "string"}));
    props.insert("parameters_applied".into(), json!({"type": "object"}));
    props.insert(
        "parameters_unmatched".into(),
        json!({"type": "array", "items": {"type": "string"}}),
    );
}

/// Output schema of `generate_image` and the template tools (a custom workflow adds
/// `workflow_name`, `parameters_applied` and `parameters_unmatched`).
pub fn generation_output() -> Arc<JsonObject> {
    let mut props = job_properties();
    props.insert(
        "status".into(),
        json!({"type": "string", "enum": ["queued", "running", "completed", "failed", "cancelled"]}),
    );
    custom_workflow_properties(&mut props);
    result_or_error(props, &["prompt_id", "status"])
}

/// Output schema of `get_workflow_status`.
pub fn status_output() -> Arc<JsonObject> {
    result_or_error(job_properties(), &["prompt_id", "state"])
}

/// Output schema of `load_workflow`.
pub fn load_workflow_output() -> Arc<JsonObject> {
    let mut props = job_properties();
    props.insert("status".into(), json!({"type": "string"}));
    custom_workflow_properties(&mut props);
    result_or_error(props, &["prompt_id", "status", "workflow_name"])
}

/// Output schema of `cancel_workflow`.
pub fn cancel_output() -> Arc<JsonObject> {
    let Value::Object(props) = json!({
        "cancelled": {"type": "boolean"},
        "prompt_id": {"type": ["string", "null"]},
        "message": {"type": "string"},
        "error": error_schema(),
    }) else {
        unreachable!()
    };
    result_or_error(props, &["cancelled", "message"])
}

/// Output schema of `list_workflows`.
pub fn list_workflows_output() -> Arc<JsonObject> {
    let Value::Object(props) = json!({
        "workflows": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "name": {"type": "string"},
                    "description": {"type": "string"},
                    "category": {"type": "string"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "default_width": {"type": "integer"},
                    "default_height": {"type": "integer"},
                    "pack": {"type": "object"},
                    "parameters": {"type": "array", "items": {"type": "object"}},
                    "runnable": {"type": "boolean", "description": "Whether a ComfyUI backend can run the template now (its graph passes the checks there); absent when no backend answers."},
                    "backends": {"type": "array", "items": {"type": "string"}, "description": "The backends that can run it now."},
                },
                "required": ["id", "name", "parameters"],
            },
        },
        "total_count": {"type": "integer"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"path": {"type": "string"}, "error": {"type": "string"}},
            },
            "description": "Packs that failed to load or self-test, and template id clashes.",
        },
        "error": error_schema(),
    }) else {
        unreachable!()
    };
    result_or_error(props, &["workflows", "total_count"])
}

#[cfg(test)]
mod tests {
    use super::*;
    use pack_runtime::{Alias, ParamKind, ParamValue};

    const WAIT: Duration = Duration::from_secs(120);

    fn spec(name: &str, kind: ParamKind) -> ParamSpec {
        ParamSpec {
            name: name.into(),
            kind,
            description: format!("the {name}"),
            required: false,
            default: None,
            minimum: None,
            maximum: None,
            multiple_of: None,
            choices: vec![],
            aliases: vec![],
            examples: vec![],
        }
    }

    #[test]
    fn merging_keeps_shared_constraints_and_widens_the_rest() {
        let a = ParamSpec {
            default: Some(ParamValue::Integer(512)),
            minimum: Some(64.0),
            maximum: Some(1024.0),
            multiple_of: Some(8),
            ..spec("width", ParamKind::Integer)
        };
        let b = ParamSpec {
            default: Some(ParamValue::Integer(256)),
            minimum: Some(32.0),
            maximum: Some(2048.0),
            multiple_of: Some(8),
            ..spec("width", ParamKind::Integer)
        };
        let s = merged_param_schema(&[&a, &b]);
        assert_eq!(s["type"], "integer");
        assert_eq!(s["minimum"], 32);
        assert_eq!(s["maximum"], 2048);
        assert_eq!(s["multipleOf"], 8);
        assert!(s.get("default").is_none(), "{s}");
        assert_eq!(s["description"], "the width");
    }

    #[test]
    fn merging_unions_choices_and_drops_an_unbounded_side() {
        let a = ParamSpec {
            choices: vec!["euler".into(), "dpmpp_2m".into()],
            aliases: vec![Alias {
                name: "dpm++".into(),
                target: "dpmpp_2m".into(),
            }],
            default: Some(ParamValue::Text("euler".into())),
            ..spec("sampler", ParamKind::Text)
        };
        let b = ParamSpec {
            choices: vec!["euler".into(), "ddim".into()],
            default: Some(ParamValue::Text("euler".into())),
            ..spec("sampler", ParamKind::Text)
        };
        let s = merged_param_schema(&[&a, &b]);
        assert_eq!(s["enum"], json!(["euler", "dpmpp_2m", "dpm++", "ddim"]));
        assert_eq!(s["default"], "euler");
        let c = ParamSpec {
            minimum: Some(1.0),
            ..spec("steps", ParamKind::Integer)
        };
        let d = spec("steps", ParamKind::Integer);
        let s = merged_param_schema(&[&c, &d]);
        assert!(s.get("minimum").is_none(), "{s}");
    }

    #[test]
    fn examples_are_carried_and_merged_once_each() {
        let a = ParamSpec {
            examples: vec![ParamValue::Integer(10), ParamValue::Integer(30)],
            ..spec("steps", ParamKind::Integer)
        };
        let b = ParamSpec {
            examples: vec![ParamValue::Integer(30), ParamValue::Integer(40)],
            ..spec("steps", ParamKind::Integer)
        };
        assert_eq!(params::param_schema(&a)["examples"], json!([10, 30]));
        let s = merged_param_schema(&[&a, &b]);
        assert_eq!(s["examples"], json!([10, 30, 40]));
        let none = spec("steps", ParamKind::Integer);
        assert!(merged_param_schema(&[&none]).get("examples").is_none());
    }

    #[test]
    fn image_and_mask_params_are_strings_naming_the_accepted_sources() {
        for kind in [ParamKind::Image, ParamKind::Mask] {
            let s = params::param_schema(&spec("init", kind));
            assert_eq!(s["type"], "string");
            let description = s["description"].as_str().unwrap();
            assert!(description.starts_with("the init ("), "{description}");
            for form in [
                "base64 PNG, JPEG or WebP",
                "data: URI",
                "comfyui://images/",
                "allowed input folders",
            ] {
                assert!(description.contains(form), "{form}: {description}");
            }
            assert!(s.get("contentEncoding").is_none(), "{s}");
        }
        let mask = params::param_schema(&spec("mask", ParamKind::Mask));
        assert!(
            mask["description"]
                .as_str()
                .unwrap()
                .contains("white marks the region")
        );
    }

    #[test]
    fn template_input_adds_wait_and_timeout() {
        let base = json!({"type": "object", "properties": {"prompt": {"type": "string"}}, "required": ["prompt"], "additionalProperties": false});
        let s = template_input(&base, WAIT);
        assert_eq!(s["properties"]["wait"]["type"], "boolean");
        assert_eq!(s["properties"]["timeout"]["maximum"], 3600.0);
        assert_eq!(s["required"], json!(["prompt"]));
    }

    #[test]
    fn empty_catalog_still_gives_an_object_schema() {
        let s = generate_image_input(&Catalog::default(), WAIT);
        assert_eq!(s["type"], "object");
        assert!(
            s.get("required").is_none(),
            "template or a workflow: none is required"
        );
        assert!(s["properties"]["template"].get("enum").is_none());
        assert_eq!(s["properties"]["workflow"]["type"], "object");
        assert_eq!(s["properties"]["workflow_path"]["type"], "string");
        assert_eq!(s["properties"]["timeout"]["default"], 120.0);
        for combinator in ["oneOf", "anyOf", "allOf"] {
            assert!(s.get(combinator).is_none(), "{combinator} at the top level");
        }
        for name in SHARED_PARAMS {
            assert!(
                s["properties"].get(*name).is_some(),
                "{name} overrides a workflow"
            );
        }
    }

    /// Structural JSON Schema (2020-12) checks for what this module emits: numbers
    /// where numbers belong, `multipleOf` > 0, unique `enum` and `required` entries,
    /// `required` naming declared properties, known `type` names. The Python suite
    /// checks every published schema against the real meta-schema.
    fn assert_valid_schema(v: &Value, at: &str) {
        let Value::Object(s) = v else {
            assert!(
                v.is_boolean(),
                "{at}: a schema is an object or a boolean: {v}"
            );
            return;
        };
        for key in ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"] {
            if let Some(x) = s.get(key) {
                assert!(x.is_number(), "{at}.{key} must be a number: {x}");
            }
        }
        if let Some(m) = s.get("multipleOf") {
            assert!(
                m.as_f64().is_some_and(|m| m > 0.0),
                "{at}.multipleOf must be > 0: {m}"
            );
        }
        if let (Some(lo), Some(hi)) = (
            s.get("minimum").and_then(Value::as_f64),
            s.get("maximum").and_then(Value::as_f64),
        ) {
            assert!(lo <= hi, "{at}: minimum {lo} above maximum {hi}");
        }
        for key in ["enum", "required"] {
            if let Some(list) = s.get(key) {
                let list = list
                    .as_array()
                    .unwrap_or_else(|| panic!("{at}.{key} must be an array"));
                for (i, a) in list.iter().enumerate() {
                    assert!(!list[..i].contains(a), "{at}.{key} repeats {a}");
                }
            }
        }
        if let Some(t) = s.get("type") {
            let names: Vec<&Value> = match t {
                Value::Array(a) => a.iter().collect(),
                other => vec![other],
            };
            for n in names {
                assert!(
                    [
                        "string", "integer", "number", "boolean", "object", "array", "null"
                    ]
                    .contains(&n.as_str().unwrap_or("")),
                    "{at}.type {n}"
                );
            }
        }
        if let Some(props) = s.get("properties") {
            let props = props.as_object().expect("properties is an object");
            for (k, p) in props {
                assert_valid_schema(p, &format!("{at}.{k}"));
            }
            if let Some(Value::Array(req)) = s.get("required") {
                for r in req {
                    assert!(
                        props.contains_key(r.as_str().unwrap()),
                        "{at}: required {r} is not a property"
                    );
                }
            }
        }
        for key in ["items"] {
            if let Some(sub) = s.get(key) {
                assert_valid_schema(sub, &format!("{at}.{key}"));
            }
        }
        for key in ["anyOf", "allOf", "oneOf"] {
            if let Some(Value::Array(subs)) = s.get(key) {
                for (i, sub) in subs.iter().enumerate() {
                    assert_valid_schema(sub, &format!("{at}.{key}[{i}]"));
                }
            }
        }
    }

    fn hostile_specs() -> Vec<ParamSpec> {
        vec![
            ParamSpec {
                minimum: Some(f64::NAN),
                maximum: Some(f64::INFINITY),
                multiple_of: Some(0),
                default: Some(ParamValue::Number(f64::NAN)),
                ..spec("steps", ParamKind::Number)
            },
            ParamSpec {
                choices: vec!["a".into(), "a".into(), "b".into()],
                aliases: vec![Alias {
                    name: "b".into(),
                    target: "a".into(),
                }],
                ..spec("sampler", ParamKind::Text)
            },
            ParamSpec {
                minimum: Some(0.0),
                maximum: Some(1e300),
                multiple_of: Some(8),
                ..spec("seed", ParamKind::Integer)
            },
            ParamSpec {
                minimum: Some(f64::NEG_INFINITY),
                ..spec("seed", ParamKind::Integer)
            },
        ]
    }

    #[test]
    fn schemas_of_hostile_specs_stay_valid_json_schema() {
        let specs = hostile_specs();
        for p in &specs {
            let s = params::param_schema(p);
            assert_valid_schema(&s, &p.name);
        }
        let seeds: Vec<&ParamSpec> = specs.iter().filter(|p| p.name == "seed").collect();
        let merged = merged_param_schema(&seeds);
        assert_valid_schema(&merged, "merged seed");
        // -1 asks for a random seed: the schema must accept it.
        assert!(
            merged
                .get("minimum")
                .is_none_or(|m| m.as_f64() <= Some(-1.0)),
            "{merged}"
        );
        assert!(merged.get("multipleOf").is_none(), "{merged}");
        let single = params::param_schema(seeds[0]);
        assert_eq!(single["minimum"], -1, "{single}");
        assert!(single.get("multipleOf").is_none(), "{single}");
        let steps = params::param_schema(&specs[0]);
        assert!(
            steps.get("minimum").is_none() && steps.get("multipleOf").is_none(),
            "{steps}"
        );
        let sampler = params::param_schema(&specs[1]);
        assert_eq!(sampler["enum"], json!(["a", "b"]));
    }

    #[test]
    fn every_published_schema_is_structurally_valid() {
        let all = [
            (
                "generate_image",
                generate_image_input(&Catalog::default(), WAIT),
            ),
            (
                "template",
                template_input(&json!({"type": "object", "properties": {}}), WAIT),
            ),
            ("list_workflows", list_workflows_input()),
            ("status", status_input()),
            ("cancel", cancel_input()),
            ("load_workflow", load_workflow_input(WAIT)),
            ("generation_output", generation_output()),
            ("status_output", status_output()),
            ("load_workflow_output", load_workflow_output()),
            ("cancel_output", cancel_output()),
            ("list_workflows_output", list_workflows_output()),
        ];
        for (name, s) in all {
            assert_valid_schema(&Value::Object((*s).clone()), name);
        }
    }

    /// Every argument the server adds next to template parameters is a reserved
    /// parameter name, so no pack parameter can collide with one (packs declaring
    /// one are refused at load). The generation parameters of the guide are not server
    /// arguments: templates declare them, and a custom workflow takes them as overrides.
    #[test]
    fn server_arguments_are_reserved_parameter_names() {
        let generic = generate_image_input(&Catalog::default(), WAIT);
        let per_template = template_input(&json!({"type": "object", "properties": {}}), WAIT);
        let load = load_workflow_input(WAIT);
        for s in [generic, per_template, load] {
            let properties = s["properties"].as_object().unwrap();
            for name in properties
                .keys()
                .filter(|n| !SHARED_PARAMS.contains(&n.as_str()))
            {
                assert!(
                    params::RESERVED_PARAM_NAMES.contains(&name.as_str()),
                    "`{name}` is a server argument but not in RESERVED_PARAM_NAMES"
                );
            }
        }
    }
}
