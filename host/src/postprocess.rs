//! Post-processing of a job's output images by the pack that built its graph.
//!
//! A template of an ABI 2.x pack may set `postprocess`; its pack then exports
//! `comfyui:workflow/postprocessor`. [`PackPostprocessor`] is what the job
//! pipeline calls on each output image of such a job (the
//! [`contract::OutputProcessor`] it holds in the job request): it runs
//! [`pack_runtime::Pack::postprocess_resolved`] through the same
//! [`Admission`] as `build`, so post-processing counts against the same
//! server-wide and per-pack permits, on the same bounded thread pool, under
//! the same sandbox limits (memory, time, stack, log and text caps, and the
//! output pixel cap `COMFYUI_MCP_POSTPROCESS_MAX_PIXELS`).
//!
//! Lifecycle: one `PackPostprocessor` per job, made by `App::generate` when
//! the template's `postprocess` flag is set, holding the job's resolved
//! parameters (the same list `build` got) and the ComfyUI view the build saw;
//! dropped with the job. Each `process` call is one fresh sandbox; calls wait
//! for a permit (a background job must not fail because clients are busy) and
//! never exceed the admission limits.
//!
//! The job pipeline and the sandbox share one image type (the `rgba` crate's),
//! so the pixel buffer moves into the pack call and back without a conversion.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use pack_runtime::{HostView, Pack, ResolvedParams};

use crate::admission::{Admission, Wait};

/// The job pipeline's side of post-processing (`comfyui::postprocess`).
pub use comfyui::postprocess as contract;

use contract::{OutputProcessor, PostprocessError, Postprocessed, RgbaImage};

/// Runs a template's pack postprocessor on a job's output images, through the admission.
pub struct PackPostprocessor {
    runner: Arc<Pack>,
    template_id: String,
    params: ResolvedParams,
    pack_name: String,
    admission_key: String,
    admission: Arc<Admission>,
    host: Arc<dyn HostView>,
}

impl PackPostprocessor {
    /// A postprocessor for the job built from `template_id` of `runner` with
    /// `params`; `admission_key` is the pack's admission share
    /// (`loader::admission_key` of its file), `host` the ComfyUI view the build saw.
    pub fn new(
        runner: Arc<Pack>,
        template_id: String,
        params: ResolvedParams,
        admission: Arc<Admission>,
        admission_key: String,
        host: Arc<dyn HostView>,
    ) -> Self {
        let pack_name = runner.info().name.clone();
        Self {
            runner,
            template_id,
            params,
            pack_name,
            admission_key,
            admission,
            host,
        }
    }
}

impl OutputProcessor for PackPostprocessor {
    fn process(
        &self,
        image: RgbaImage,
    ) -> Pin<Box<dyn Future<Output = Result<Postprocessed, PostprocessError>> + Send>> {
        let runner = self.runner.clone();
        let template_id = self.template_id.clone();
        let params = self.params.clone();
        let host = self.host.clone();
        let admission = self.admission.clone();
        let key = self.admission_key.clone();
        let pack = pack_runtime::text::escape_control(&self.pack_name).into_owned();
        Box::pin(async move {
            let call = move || runner.postprocess_resolved(&template_id, &params, image, host);
            match admission.run(&key, Wait::Queue, call).await {
                Ok(Ok(done)) => Ok(done),
                Ok(Err(error)) => Err(PostprocessError {
                    message: format!("pack `{pack}` failed to post-process the image: {error}"),
                }),
                Err(error) => Err(PostprocessError {
                    message: format!("post-processing by pack `{pack}` did not run: {error}"),
                }),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use pack_runtime::{ImageInput, Limits, Runtime, RuntimeConfig, StaticHost, params};
    use serde_json::json;

    use super::*;
    use crate::admission::AdmissionConfig;

    fn packs() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/packs")
    }

    fn postprocessor(limits: Limits, template: &str) -> PackPostprocessor {
        let runtime = Runtime::new(RuntimeConfig {
            limits,
            ..RuntimeConfig::default()
        })
        .unwrap();
        let pack = Arc::new(runtime.load_file(&packs().join("mini-abi2.wasm")).unwrap());
        let info = pack.template(template).unwrap().clone();
        let inputs = BTreeMap::from([(
            "image".to_owned(),
            ImageInput {
                name: "in.png".into(),
                width: 2,
                height: 1,
                has_alpha: true,
                sha256: "00".repeat(32),
            },
        )]);
        let args = json!({"image": "in.png"}).as_object().unwrap().clone();
        let resolved =
            params::resolve_with_inputs(&info, &args, &inputs, &pack.limits().metadata).unwrap();
        PackPostprocessor::new(
            pack,
            template.to_owned(),
            resolved,
            Admission::new(AdmissionConfig::default()).unwrap(),
            "mini-abi2".into(),
            Arc::new(StaticHost::default()),
        )
    }

    fn image(pixels: Vec<u8>, width: u32) -> RgbaImage {
        let height = (pixels.len() / 4) as u32 / width;
        RgbaImage {
            width,
            height,
            pixels,
        }
    }

    #[tokio::test]
    async fn the_pack_inverts_through_the_admission() {
        let p = postprocessor(Limits::default(), "invert");
        let done = p
            .process(image(vec![0, 10, 255, 128, 1, 2, 3, 0], 2))
            .await
            .unwrap_or_else(|e| panic!("{}", e.message));
        assert_eq!((done.image.width, done.image.height), (2, 1));
        assert_eq!(done.image.pixels, vec![255, 245, 0, 128, 254, 253, 252, 0]);
        assert_eq!(done.steps.len(), 1);
        assert_eq!(done.steps[0].name, "invert");
        assert_eq!(done.steps[0].detail, "inverted the colours of 2 pixels");
    }

    #[tokio::test]
    async fn failures_name_the_pack_and_the_cause() {
        let limits = Limits {
            max_postprocess_pixels: 1,
            ..Limits::default()
        };
        let p = postprocessor(limits.clone(), "invert");
        let err = p.process(image(vec![0; 8], 2)).await.err().unwrap();
        assert!(err.message.contains("pack `mini-abi2`"), "{}", err.message);
        assert!(
            err.message.contains("over the limit of 1 pixels"),
            "{}",
            err.message
        );
        let p = postprocessor(limits, "plain");
        let err = p.process(image(vec![0; 4], 1)).await.err().unwrap();
        assert!(
            err.message
                .contains("template `plain` is not post-processed"),
            "{}",
            err.message
        );
    }
}
