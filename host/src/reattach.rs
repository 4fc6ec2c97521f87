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
//! The pack sees ComfyUI as last fetched ([`LiveComfy`]), as self-tests do.

use std::sync::Arc;

use comfyui::postprocess::{OutputProcessor, PostprocessError};
use comfyui::reattach::ProcessorSource;
use comfyui::{JobOrigin, JobSnapshot, ModelSnapshot};
use pack_runtime::HostView;
use pack_runtime::params::{self, FieldError};

use crate::admission::Admission;
use crate::catalog::CatalogStore;
use crate::loader::{LiveComfy, admission_key};
use crate::postprocess::PackPostprocessor;
use crate::selftest::CatalogHost;

/// Rebuilds post-processors of adopted jobs from the catalog.
pub struct TemplateProcessors {
    catalog: Arc<CatalogStore>,
    admission: Arc<Admission>,
    live: Arc<LiveComfy>,
}

impl TemplateProcessors {
    /// A source over `catalog`, running through `admission`, showing packs `live`.
    pub fn new(
        catalog: Arc<CatalogStore>,
        admission: Arc<Admission>,
        live: Arc<LiveComfy>,
    ) -> Self {
        Self {
            catalog,
            admission,
            live,
        }
    }

    fn host_view(&self) -> Arc<dyn HostView> {
        let nodes = self
            .live
            .nodes
            .load_full()
            .unwrap_or_else(comfyui::nodes::NodeCatalog::bundled);
        let models = self
            .live
            .models
            .load_full()
            .unwrap_or_else(|| Arc::new(ModelSnapshot::default()));
        Arc::new(CatalogHost { nodes, models })
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
            self.admission.clone(),
            admission_key(&entry.pack.path),
            self.host_view(),
        )))
    }
}

fn refusal(reason: &str) -> PostprocessError {
    PostprocessError::new(pack_runtime::text::escape_control(reason).into_owned())
}
