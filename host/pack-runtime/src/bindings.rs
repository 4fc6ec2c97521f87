//! Generated bindings for `wit/workflow.wit` and their conversion into the
//! crate's plain types (see `spec.rs`). Nothing generated leaks out of the crate.

use crate::spec::{Alias, PackInfo, ParamKind, ParamSpec, ParamValue, TemplateInfo};

wasmtime::component::bindgen!({
    path: "../../wit/v1",
    world: "workflow-pack",
});

pub(crate) use comfyui::workflow::host::Level;
pub(crate) use comfyui::workflow::types as wit;

impl From<wit::Value> for ParamValue {
    fn from(v: wit::Value) -> Self {
        match v {
            wit::Value::Text(s) => ParamValue::Text(s),
            wit::Value::Integer(i) => ParamValue::Integer(i),
            wit::Value::Number(n) => ParamValue::Number(n),
            wit::Value::Boolean(b) => ParamValue::Boolean(b),
        }
    }
}

impl From<&ParamValue> for wit::Value {
    fn from(v: &ParamValue) -> Self {
        match v {
            ParamValue::Text(s) => wit::Value::Text(s.clone()),
            ParamValue::Integer(i) => wit::Value::Integer(*i),
            ParamValue::Number(n) => wit::Value::Number(*n),
            ParamValue::Boolean(b) => wit::Value::Boolean(*b),
        }
    }
}

impl From<wit::ValueKind> for ParamKind {
    fn from(k: wit::ValueKind) -> Self {
        match k {
            wit::ValueKind::Text => ParamKind::Text,
            wit::ValueKind::Integer => ParamKind::Integer,
            wit::ValueKind::Number => ParamKind::Number,
            wit::ValueKind::Boolean => ParamKind::Boolean,
        }
    }
}

impl From<wit::ParamSpec> for ParamSpec {
    fn from(p: wit::ParamSpec) -> Self {
        ParamSpec {
            name: p.name,
            kind: p.kind.into(),
            description: p.description,
            required: p.required,
            default: p.default.map(Into::into),
            minimum: p.minimum,
            maximum: p.maximum,
            multiple_of: p.multiple_of,
            choices: p.choices,
            aliases: p
                .aliases
                .into_iter()
                .map(|a| Alias {
                    name: a.name,
                    target: a.target,
                })
                .collect(),
        }
    }
}

impl From<wit::TemplateInfo> for TemplateInfo {
    fn from(t: wit::TemplateInfo) -> Self {
        TemplateInfo {
            id: t.id,
            name: t.name,
            description: t.description,
            category: t.category,
            tags: t.tags,
            default_width: t.default_width,
            default_height: t.default_height,
            params: t.params.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<wit::PackInfo> for PackInfo {
    fn from(p: wit::PackInfo) -> Self {
        PackInfo {
            name: p.name,
            version: p.version,
            description: p.description,
        }
    }
}
