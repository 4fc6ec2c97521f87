//! ABI 2.x: bindings for `wit/v2/workflow.wit` (world `postprocessing-pack`,
//! which includes `workflow-pack`), their conversions into the crate's plain
//! types, and the host imports, which delegate to `sandbox.rs`.
//!
//! One `bindgen!` serves both worlds: a pack of world `workflow-pack` simply
//! lacks the `postprocessor` export, so [`Pre`] looks it up only when the
//! component exports it (`abi.rs` says so before compiling).

use wasmtime::Store;
use wasmtime::component::{HasSelf, Instance, InstancePre, Linker};

use super::PackFailure;
use crate::params::ResolvedParams;
use crate::postprocess::{PostprocessStep, Postprocessed, RgbaImage};
use crate::sandbox::StoreState;
use crate::spec::{Alias, PackInfo, ParamKind, ParamSpec, ParamValue, TemplateInfo};

wasmtime::component::bindgen!({
    path: "../../wit/v2",
    world: "postprocessing-pack",
});

use comfyui::workflow::types as wit;
use exports::comfyui::workflow::{postprocessor, templates};

/// The WIT package version these bindings were generated from; any 2.x pack is served.
pub(crate) const VERSION: &str = "2.0.0";

/// Adds the 2.x host imports (`host`, `types`) to `linker`. Both worlds import the same.
pub(crate) fn add_to_linker(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    PostprocessingPack::add_to_linker::<_, HasSelf<StoreState>>(linker, |state| state)
}

/// A 2.x pack's pre-instantiated component and export indices.
pub(crate) struct Pre {
    instance_pre: InstancePre<StoreState>,
    templates: templates::GuestIndices,
    postprocessor: Option<postprocessor::GuestIndices>,
}

impl Pre {
    pub(crate) fn new(
        instance_pre: InstancePre<StoreState>,
        postprocessor: bool,
    ) -> wasmtime::Result<Self> {
        let templates = templates::GuestIndices::new(&instance_pre)?;
        let postprocessor = if postprocessor {
            Some(postprocessor::GuestIndices::new(&instance_pre)?)
        } else {
            None
        };
        Ok(Self {
            instance_pre,
            templates,
            postprocessor,
        })
    }

    pub(crate) fn instance_pre(&self) -> &InstancePre<StoreState> {
        &self.instance_pre
    }

    pub(crate) fn has_postprocessor(&self) -> bool {
        self.postprocessor.is_some()
    }

    pub(crate) fn bind(
        &self,
        store: &mut Store<StoreState>,
        instance: &Instance,
    ) -> wasmtime::Result<Bound> {
        let postprocessor = match &self.postprocessor {
            Some(indices) => Some(indices.load(&mut *store, instance)?),
            None => None,
        };
        Ok(Bound {
            templates: self.templates.load(&mut *store, instance)?,
            postprocessor,
        })
    }
}

/// The exports of one 2.x instance.
pub(crate) struct Bound {
    templates: templates::Guest,
    postprocessor: Option<postprocessor::Guest>,
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
        Ok(self
            .templates
            .call_build(store, id, &wit_params(params))?
            .map_err(Into::into))
    }

    pub(crate) fn postprocess(
        &self,
        store: &mut Store<StoreState>,
        id: &str,
        params: &ResolvedParams,
        image: RgbaImage,
    ) -> Option<wasmtime::Result<Result<Postprocessed, PackFailure>>> {
        let postprocessor = self.postprocessor.as_ref()?;
        let image = wit::RgbaImage {
            width: image.width,
            height: image.height,
            pixels: image.pixels,
        };
        Some(
            postprocessor
                .call_postprocess(store, id, &wit_params(params), &image)
                .map(|outcome| outcome.map(Into::into).map_err(Into::into)),
        )
    }
}

fn wit_params(params: &ResolvedParams) -> Vec<wit::Param> {
    params
        .iter()
        .map(|(name, value)| wit::Param {
            name: name.to_owned(),
            value: value.into(),
        })
        .collect()
}

impl From<wit::Postprocessed> for Postprocessed {
    fn from(p: wit::Postprocessed) -> Self {
        Postprocessed {
            image: RgbaImage {
                width: p.image.width,
                height: p.image.height,
                pixels: p.image.pixels,
            },
            steps: p
                .steps
                .into_iter()
                .map(|s| PostprocessStep {
                    name: s.name,
                    detail: s.detail,
                })
                .collect(),
        }
    }
}

impl From<wit::Value> for ParamValue {
    /// A pack-declared image value (a default or an example) has no upload
    /// behind it: it converts with an empty digest and is refused by the
    /// spec checks (images have neither).
    fn from(v: wit::Value) -> Self {
        match v {
            wit::Value::Text(s) => ParamValue::Text(s),
            wit::Value::Integer(i) => ParamValue::Integer(i),
            wit::Value::Number(n) => ParamValue::Number(n),
            wit::Value::Boolean(b) => ParamValue::Boolean(b),
            wit::Value::Image(image) => ParamValue::Image(crate::spec::ImageInput {
                name: image.name,
                width: image.width,
                height: image.height,
                has_alpha: image.has_alpha,
                sha256: String::new(),
            }),
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
            // The digest stays on the host side.
            ParamValue::Image(image) => wit::Value::Image(wit::ImageInput {
                name: image.name.clone(),
                width: image.width,
                height: image.height,
                has_alpha: image.has_alpha,
            }),
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
            wit::ValueKind::Image => ParamKind::Image,
            wit::ValueKind::Mask => ParamKind::Mask,
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
            examples: p.examples.into_iter().map(Into::into).collect(),
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
            postprocess: t.postprocess,
        }
    }
}

same_in_every_major!();
