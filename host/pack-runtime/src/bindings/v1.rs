//! ABI 1.x: bindings for `wit/v1/workflow.wit` (world `workflow-pack`), their
//! conversions into the crate's plain types, and the host imports, which
//! delegate to `sandbox.rs`.
//!
//! 1.x has no image kinds, no examples and no postprocessor: its specs
//! convert with `examples` empty and its templates with `postprocess` false.

use wasmtime::Store;
use wasmtime::component::{HasSelf, Instance, InstancePre, Linker};

use super::PackFailure;
use crate::params::ResolvedParams;
use crate::sandbox::StoreState;
use crate::spec::{Alias, PackInfo, ParamKind, ParamSpec, ParamValue, TemplateInfo};

wasmtime::component::bindgen!({
    path: "../../wit/v1",
    world: "workflow-pack",
});

use comfyui::workflow::types as wit;
use exports::comfyui::workflow::templates;

/// The WIT package version these bindings were generated from; any 1.x pack is served.
pub(crate) const VERSION: &str = "1.0.0";

/// Adds the 1.x host imports (`host`, `types`) to `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    WorkflowPack::add_to_linker::<_, HasSelf<StoreState>>(linker, |state| state)
}

/// A 1.x pack's pre-instantiated component and export indices.
pub(crate) struct Pre {
    instance_pre: InstancePre<StoreState>,
    templates: templates::GuestIndices,
}

impl Pre {
    pub(crate) fn new(instance_pre: InstancePre<StoreState>) -> wasmtime::Result<Self> {
        let templates = templates::GuestIndices::new(&instance_pre)?;
        Ok(Self {
            instance_pre,
            templates,
        })
    }

    pub(crate) fn instance_pre(&self) -> &InstancePre<StoreState> {
        &self.instance_pre
    }

    pub(crate) fn bind(
        &self,
        store: &mut Store<StoreState>,
        instance: &Instance,
    ) -> wasmtime::Result<Bound> {
        Ok(Bound {
            templates: self.templates.load(&mut *store, instance)?,
        })
    }
}

/// The exports of one 1.x instance.
pub(crate) struct Bound {
    templates: templates::Guest,
}

impl Bound {
    pub(crate) fn info(&self, store: &mut Store<StoreState>) -> wasmtime::Result<PackInfo> {
        Ok(self.templates.call_info(store)?.into())
    }

    pub(crate) fn list(
        &self,
        store: &mut Store<StoreState>,
    ) -> wasmtime::Result<Vec<TemplateInfo>> {
        Ok(self
            .templates
            .call_list(store)?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    pub(crate) fn build(
        &self,
        store: &mut Store<StoreState>,
        id: &str,
        params: &ResolvedParams,
    ) -> wasmtime::Result<Result<String, PackFailure>> {
        let params: Vec<wit::Param> = params
            .iter()
            .map(|(name, value)| wit::Param {
                name: name.to_owned(),
                value: value.into(),
            })
            .collect();
        Ok(self
            .templates
            .call_build(store, id, &params)?
            .map_err(Into::into))
    }
}

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
    /// Image values never reach a 1.x pack: its specs have no image kinds,
    /// and resolution only yields values of a spec's kind. The arm maps one
    /// to its upload name so the conversion stays total.
    fn from(v: &ParamValue) -> Self {
        match v {
            ParamValue::Text(s) => wit::Value::Text(s.clone()),
            ParamValue::Integer(i) => wit::Value::Integer(*i),
            ParamValue::Number(n) => wit::Value::Number(*n),
            ParamValue::Boolean(b) => wit::Value::Boolean(*b),
            ParamValue::Image(image) => wit::Value::Text(image.name.clone()),
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
            examples: Vec::new(),
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
            postprocess: false,
        }
    }
}

same_in_every_major!();
