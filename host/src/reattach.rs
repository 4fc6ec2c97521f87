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

use std::sync::Arc;

use comfyui::postprocess::{OutputProcessor, PostprocessError};
use comfyui::reattach::ProcessorSource;
use comfyui::{JobOrigin, JobSnapshot};
use pack_runtime::params::{self, FieldError};

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
        let args = job.parameters.as_object().cloned().unwrap_or_default();
        let resolved = params::resolve(&entry.info, &args, &entry.runner.limits().metadata)
            .map_err(|errors| {
                refusal(&format!(
                    "its recorded parameters no longer check: {}",
                    FieldError::join(&errors)
                ))
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

fn refusal(reason: &str) -> PostprocessError {
    PostprocessError::new(pack_runtime::text::escape_control(reason).into_owned())
}
