//! The host's [`ProcessorSource`]: makes the post-processor of a job adopted after a
//! restart again, from the current catalog (see [`comfyui::reattach`]).
//!
//! The job store kept the job's origin (template id, pack name and sha256) and its concrete
//! parameters (seed resolved). The processor is rebuilt only when the template is served
//! now by the very pack file that built the graph (same name, same sha256) and still flags
//! `postprocess`; the parameters are checked again against its specs, giving the same
//! resolved list `build` got. Anything else is refused with the reason, and the job fails
//! without delivering unprocessed images.
//!
//! The pack sees ComfyUI as self-tests do ([`PackLoader::check_catalog`]): as last fetched,
//! or the stock catalog before ComfyUI was reached.

use std::collections::BTreeMap;
use std::sync::Arc;

use comfyui::postprocess::{OutputProcessor, PostprocessError};
use comfyui::reattach::ProcessorSource;
use comfyui::{JobOrigin, JobSnapshot};
use pack_runtime::params::{self, FieldError, ResolveError};
use pack_runtime::{ImageInput, TemplateInfo};
use serde_json::{Map, Value};

use crate::catalog::CatalogStore;
use crate::loader::{PackLoader, admission_key};
use crate::postprocess::PackPostprocessor;

/// Rebuilds post-processors of adopted jobs from the catalog.
pub struct TemplateProcessors {
    catalog: Arc<CatalogStore>,
    loader: Arc<PackLoader>,
}

impl TemplateProcessors {
    /// A source over `catalog`, running through `loader`'s admission and showing packs
    /// ComfyUI as its self-tests see it.
    pub fn new(catalog: Arc<CatalogStore>, loader: Arc<PackLoader>) -> Self {
        Self { catalog, loader }
    }
}

impl ProcessorSource for TemplateProcessors {
    fn processor_for(
        &self,
        job: &JobSnapshot,
    ) -> Result<Arc<dyn OutputProcessor>, PostprocessError> {
        let JobOrigin::Template {
            template_id,
            pack_name,
            pack_sha256,
            ..
        } = &job.origin
        else {
            return Err(refusal("it was not built by a template"));
        };
        let catalog = self.catalog.load();
        let entry = catalog.template(template_id).ok_or_else(|| {
            refusal(&format!(
                "template `{template_id}` is not served now (available: {})",
                catalog.template_ids()
            ))
        })?;
        if &entry.pack.name != pack_name || &entry.pack.sha256 != pack_sha256 {
            return Err(refusal(&format!(
                "template `{template_id}` was built by pack `{pack_name}` (sha256 {pack_sha256}) \
                 and is served now by pack `{}` (sha256 {}); images are post-processed only by \
                 the pack that built the graph",
                entry.pack.name, entry.pack.sha256
            )));
        }
        if !entry.info.postprocess {
            return Err(refusal(&format!(
                "template `{template_id}` no longer post-processes"
            )));
        }
        let mut args = job.parameters.as_object().cloned().unwrap_or_default();
        let inputs = recorded_images(&entry.info, &mut args)?;
        let resolved = params::resolve_with_inputs(
            &entry.info,
            &args,
            &inputs,
            &entry.runner.limits().metadata,
        )
        .map_err(|error| match error {
            ResolveError::Invalid(errors) => refusal(&format!(
                "its recorded parameters no longer check: {}",
                FieldError::join(&errors)
            )),
            missing => refusal(&missing.to_string()),
        })?;
        Ok(Arc::new(PackPostprocessor::new(
            entry.runner.clone(),
            template_id.clone(),
            resolved,
            self.loader.admission().clone(),
            admission_key(&entry.pack.path),
            self.loader.check_catalog().host(),
        )))
    }
}

/// The uploaded images recorded for the template's image parameters (each replaced in
/// `args` by its upload name, which is what the parameter check takes for them).
fn recorded_images(
    template: &TemplateInfo,
    args: &mut Map<String, Value>,
) -> Result<BTreeMap<String, ImageInput>, PostprocessError> {
    let mut inputs = BTreeMap::new();
    for spec in template.params.iter().filter(|s| s.kind.is_image()) {
        let Some(recorded) = args.get(&spec.name) else {
            continue;
        };
        let input = ImageInput::from_json(recorded).ok_or_else(|| {
            refusal(&format!(
                "its recorded image parameter `{}` is not an uploaded image's record",
                spec.name
            ))
        })?;
        args.insert(spec.name.clone(), Value::String(input.name.clone()));
        inputs.insert(spec.name.clone(), input);
    }
    Ok(inputs)
}

fn refusal(reason: &str) -> PostprocessError {
    PostprocessError::new(pack_runtime::text::escape_control(reason).into_owned())
}
