//! Parameter resolution (`pack_runtime::params::resolve`) with an arbitrary
//! template spec and arbitrary JSON arguments.
//!
//! Invariants checked: no panic; the JSON Schemas build for any spec; on
//! success only declared parameters come back; when the spec itself is
//! coherent (`validate_specs`), every value that came from the arguments
//! has the declared kind and honours the declared range, multiple and choices.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use pack_runtime::params::{input_schema, param_schema, resolve, validate_specs};
use pack_runtime::{Alias, ParamKind, ParamSpec, ParamValue, TemplateInfo};
use serde_json::{Map, Number, Value};

#[derive(Debug, Arbitrary)]
enum Kind {
    Text,
    Integer,
    Number,
    Boolean,
}

#[derive(Debug, Arbitrary)]
enum Val {
    Text(String),
    Integer(i64),
    Number(f64),
    Boolean(bool),
}

#[derive(Debug, Arbitrary)]
struct Spec {
    /// `seed` is special-cased by `resolve`; make it easy to hit.
    seed_name: bool,
    name: String,
    kind: Kind,
    required: bool,
    default: Option<Val>,
    minimum: Option<f64>,
    maximum: Option<f64>,
    multiple_of: Option<u32>,
    choices: Vec<String>,
    aliases: Vec<(String, String)>,
}

#[derive(Debug, Arbitrary)]
enum Json {
    Null,
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    /// Parsed as a JSON number literal when it is one (`1e999`, `-0`, `2.0`).
    NumberText(String),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    fn to_value(&self, depth: u32) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::I64(i) => Value::from(*i),
            Json::U64(u) => Value::from(*u),
            Json::F64(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Json::NumberText(t) => match serde_json::from_str::<Value>(t) {
                Ok(v @ Value::Number(_)) => v,
                _ => Value::String(t.clone()),
            },
            Json::Str(s) => Value::String(s.clone()),
            Json::Array(_) | Json::Object(_) if depth > 8 => Value::Null,
            Json::Array(items) => items.iter().map(|j| j.to_value(depth + 1)).collect(),
            Json::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, j)| (k.clone(), j.to_value(depth + 1)))
                    .collect(),
            ),
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Key {
    /// The name of the n-th declared parameter (or of an alias of it).
    Declared(u8),
    Other(String),
}

#[derive(Debug, Arbitrary)]
struct Input {
    specs: Vec<Spec>,
    args: Vec<(Key, Json)>,
}

fn value(v: &Val) -> ParamValue {
    match v {
        Val::Text(s) => ParamValue::Text(s.clone()),
        Val::Integer(i) => ParamValue::Integer(*i),
        Val::Number(n) => ParamValue::Number(*n),
        Val::Boolean(b) => ParamValue::Boolean(*b),
    }
}

fn spec(s: &Spec) -> ParamSpec {
    ParamSpec {
        name: if s.seed_name {
            "seed".into()
        } else {
            s.name.clone()
        },
        kind: match s.kind {
            Kind::Text => ParamKind::Text,
            Kind::Integer => ParamKind::Integer,
            Kind::Number => ParamKind::Number,
            Kind::Boolean => ParamKind::Boolean,
        },
        description: String::new(),
        required: s.required,
        default: s.default.as_ref().map(value),
        minimum: s.minimum,
        maximum: s.maximum,
        multiple_of: s.multiple_of,
        choices: s.choices.clone(),
        aliases: s
            .aliases
            .iter()
            .map(|(name, target)| Alias {
                name: name.clone(),
                target: target.clone(),
            })
            .collect(),
        examples: Vec::new(),
    }
}

fuzz_target!(|input: Input| {
    let params: Vec<ParamSpec> = input.specs.iter().take(16).map(spec).collect();
    let template = TemplateInfo {
        id: "fuzz".into(),
        name: "fuzz".into(),
        description: String::new(),
        category: String::new(),
        tags: Vec::new(),
        default_width: 512,
        default_height: 512,
        params,
        postprocess: false,
    };
    let mut args = Map::new();
    for (key, json) in input.args.iter().take(32) {
        let name = match key {
            Key::Declared(i) if !template.params.is_empty() => template.params
                [*i as usize % template.params.len()]
            .name
            .clone(),
            Key::Declared(_) => "seed".into(),
            Key::Other(s) => s.clone(),
        };
        args.insert(name, json.to_value(0));
    }
    for p in &template.params {
        let _ = param_schema(p);
    }
    let _ = input_schema(&template);
    let coherent = validate_specs(&template.params).is_empty();
    let Ok(resolved) = resolve(&template, &args, &pack_runtime::MetadataLimits::DEFAULT) else {
        return;
    };
    for (name, got) in resolved.iter() {
        let spec = template
            .param(name)
            .unwrap_or_else(|| panic!("resolved an undeclared parameter `{name}`"));
        let from_args = args.get(name).is_some_and(|v| !v.is_null());
        if !(coherent && from_args) {
            continue;
        }
        // `-1` (or `-1.0`) asks for a random seed, which ignores the range.
        let is_random_seed = name == "seed"
            && spec.kind == ParamKind::Integer
            && args.get(name).and_then(Value::as_f64) == Some(-1.0);
        let x = match (spec.kind, got) {
            (ParamKind::Integer, ParamValue::Integer(i)) => Some(*i as f64),
            (ParamKind::Number, ParamValue::Number(n)) => Some(*n),
            (ParamKind::Text, ParamValue::Text(t)) => {
                assert!(
                    spec.choices.is_empty() || spec.choices.contains(t),
                    "`{t}` is not a choice of `{name}`"
                );
                None
            }
            (ParamKind::Boolean, ParamValue::Boolean(_)) => None,
            (kind, got) => panic!("`{name}` declared {kind:?} resolved to {got:?}"),
        };
        if let Some(x) = x.filter(|_| !is_random_seed) {
            assert!(spec.minimum.is_none_or(|lo| x >= lo), "{x} below minimum");
            assert!(spec.maximum.is_none_or(|hi| x <= hi), "{x} above maximum");
        }
        if let (ParamValue::Integer(i), Some(m)) = (got, spec.multiple_of)
            && m > 0
            && !is_random_seed
        {
            assert_eq!(i % i64::from(m), 0, "{i} not a multiple of {m}");
        }
    }
});
