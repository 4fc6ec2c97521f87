//! The post-processing stage against the in-process simulator: a job whose request carries an
//! `OutputProcessor` has every output image decoded, transformed, checked, re-encoded and
//! delivered in place of ComfyUI's, with its steps and times recorded; a processor failure, an
//! invalid result or an image over the pixel cap fails the job with the typed
//! `FailureKind::Postprocess` and withholds its images; a slow processor holds only its own
//! job. Wall time only bounds the waits; nothing asserts a duration.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use comfyui::jobs::BackendOptions;
use comfyui::postprocess::codec::decode_rgba;
use comfyui::postprocess::stage::ADOPTED_MESSAGE;
use comfyui::postprocess::{PostprocessProgress, PostprocessStep};
use comfyui::reattach::ProcessorSource;
use comfyui::store::{Heartbeat, JobPage, JobQuery, JobStore, StoreError, StoredJob, Update};
use comfyui::{
    ComfyUi, FailureKind, JobSnapshot, JobState, OutputProcessor, PostprocessError,
    PostprocessOptions, Postprocessed, RgbaImage,
};
use common::{BOUND, Backend, config, connected, empty_image_graph, fast_options, request, sim};
use serde_json::{Value, json};
use simulator::{SimConfig, SimHandle};
use tokio::sync::{Notify, Semaphore};

type Outcome = Pin<Box<dyn Future<Output = Result<Postprocessed, PostprocessError>> + Send>>;

/// A processor made of a synchronous function; counts its calls.
struct FnProcessor<F> {
    f: F,
    calls: AtomicUsize,
}

impl<F> OutputProcessor for FnProcessor<F>
where
    F: Fn(RgbaImage) -> Result<Postprocessed, PostprocessError> + Send + Sync + 'static,
{
    fn process(&self, image: RgbaImage) -> Outcome {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(std::future::ready((self.f)(image)))
    }
}

fn processor<F>(f: F) -> Arc<FnProcessor<F>>
where
    F: Fn(RgbaImage) -> Result<Postprocessed, PostprocessError> + Send + Sync + 'static,
{
    Arc::new(FnProcessor {
        f,
        calls: AtomicUsize::new(0),
    })
}

fn step(name: &str, detail: &str) -> PostprocessStep {
    PostprocessStep {
        name: name.into(),
        detail: detail.into(),
    }
}

/// Inverts red, green and blue; keeps alpha.
fn invert(mut image: RgbaImage) -> Result<Postprocessed, PostprocessError> {
    for p in image.pixels.chunks_exact_mut(4) {
        for c in &mut p[..3] {
            *c = 255 - *c;
        }
    }
    Ok(Postprocessed {
        image,
        steps: vec![step("invert", "inverted red, green and blue")],
    })
}

/// An opaque image of `width` x `height` in one colour.
fn solid(width: u32, height: u32, rgb: [u8; 3]) -> RgbaImage {
    RgbaImage {
        width,
        height,
        pixels: [rgb[0], rgb[1], rgb[2], 255].repeat((width * height) as usize),
    }
}

/// A processor that waits for a permit of `gate` before inverting; `started` is notified
/// at each call.
struct Gated {
    gate: Arc<Semaphore>,
    started: Arc<Notify>,
}

impl OutputProcessor for Gated {
    fn process(&self, image: RgbaImage) -> Outcome {
        let (gate, started) = (self.gate.clone(), self.started.clone());
        Box::pin(async move {
            started.notify_one();
            gate.acquire().await.expect("gate open").forget();
            invert(image)
        })
    }
}

fn gated() -> (Arc<Gated>, Arc<Semaphore>, Arc<Notify>) {
    let gate = Arc::new(Semaphore::new(0));
    let started = Arc::new(Notify::new());
    let p = Arc::new(Gated {
        gate: gate.clone(),
        started: started.clone(),
    });
    (p, gate, started)
}

async fn backend_opts(sim: &SimHandle, post: PostprocessOptions) -> Backend {
    backend_full(
        sim,
        BackendOptions {
            postprocess: post,
            ..fast_options()
        },
    )
    .await
}

async fn backend_full(sim: &SimHandle, options: BackendOptions) -> Backend {
    let out = tempfile::tempdir().unwrap();
    let comfy = ComfyUi::connect_with(config(&sim.base_url(), &out), options).unwrap();
    connected(&comfy).await;
    Backend { comfy, out }
}

/// 64x64 images of colour 0x102030, `batch` of them.
fn graph(batch: u32) -> Value {
    let mut g = empty_image_graph(batch, "post");
    g["1"]["inputs"]["color"] = json!(0x10_20_30);
    g
}

async fn run(b: &Backend, batch: u32, p: Option<Arc<dyn OutputProcessor>>) -> JobSnapshot {
    let mut req = request(graph(batch));
    req.postprocess = p;
    let job = b.comfy.submit(req).await.expect("submitted");
    finished(&b.comfy, &job.prompt_id).await
}

async fn finished(comfy: &ComfyUi, prompt_id: &str) -> JobSnapshot {
    let snap = comfy
        .wait(prompt_id, BOUND)
        .await
        .unwrap()
        .expect("known job");
    assert!(
        snap.state.is_terminal(),
        "{prompt_id} did not finish: {snap:?}"
    );
    snap
}

fn delivered(snap: &JobSnapshot, i: usize) -> RgbaImage {
    let bytes = std::fs::read(&snap.files[i].path).unwrap();
    decode_rgba(&bytes, u64::MAX).unwrap()
}

fn color_type(snap: &JobSnapshot, i: usize) -> png::ColorType {
    let file = std::fs::File::open(&snap.files[i].path).unwrap();
    let reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .unwrap();
    reader.info().color_type
}

/// The PNG files in the job's directory (hidden temp files included, so leftovers show).
fn pngs_in(b: &Backend, prompt_id: &str) -> Vec<String> {
    let dir = comfyui::outputs::job_dir(b.out.path(), prompt_id);
    let mut names: Vec<String> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != comfyui::outputs::PROVENANCE_FILE)
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

fn failure(snap: &JobSnapshot) -> &comfyui::JobFailure {
    assert_eq!(snap.state, JobState::Failed, "{snap:?}");
    let e = snap.error.as_ref().expect("a failure");
    assert_eq!(e.kind, FailureKind::Postprocess, "{e:?}");
    e
}

#[tokio::test]
async fn an_inverting_processor_delivers_inverted_pngs_with_steps_and_times() {
    let sim = sim(SimConfig::default()).await;
    let b = backend_opts(&sim, PostprocessOptions::default()).await;
    let p = processor(invert);
    let snap = run(&b, 1, Some(p.clone())).await;
    assert_eq!(snap.state, JobState::Completed, "{snap:?}");
    assert_eq!(p.calls.load(Ordering::SeqCst), 1);
    assert_eq!(delivered(&snap, 0), solid(64, 64, [0xEF, 0xDF, 0xCF]));
    assert_eq!(color_type(&snap, 0), png::ColorType::Rgb, "opaque: RGB");
    let file = &snap.files[0];
    assert_eq!(file.bytes, std::fs::metadata(&file.path).unwrap().len());
    let post = file.postprocess.as_ref().expect("the image's record");
    assert_eq!(post.steps, [step("invert", "inverted red, green and blue")]);
    assert!(post.ms > 0.0 && post.processor_ms >= 0.0 && post.ms >= post.processor_ms);
    assert_eq!((post.source_width, post.source_height), (64, 64));
    assert_eq!(post.raw_filename, None);
    let total = snap.postprocess_ms.expect("postprocess_ms recorded");
    assert!(total > 0.0 && total >= post.ms, "{total} vs {}", post.ms);
    assert_eq!(
        snap.postprocessing,
        Some(PostprocessProgress { done: 1, total: 1 })
    );
    assert_eq!(snap.progress, 1.0);
    // The provenance records the stage.
    let dir = comfyui::outputs::job_dir(b.out.path(), &snap.prompt_id);
    let prov: Value =
        serde_json::from_slice(&std::fs::read(dir.join("provenance.json")).unwrap()).unwrap();
    // (serde_json parses floats to within an ulp or so; the value is the snapshot's.)
    let recorded = prov["postprocess_ms"]
        .as_f64()
        .expect("postprocess_ms in provenance");
    assert!(
        (recorded - total).abs() < 1e-9 * total,
        "{recorded} vs {total}"
    );
    assert_eq!(
        prov["images"][0]["postprocess"]["steps"],
        json!([{"name": "invert", "detail": "inverted red, green and blue"}])
    );
    assert_eq!(prov["images"][0]["bytes"], json!(file.bytes));
    assert_eq!(
        pngs_in(&b, &snap.prompt_id),
        std::slice::from_ref(&file.filename)
    );
}

#[tokio::test]
async fn a_job_without_processor_is_delivered_as_comfyui_made_it() {
    let sim = sim(SimConfig::default()).await;
    let b = backend_opts(&sim, PostprocessOptions::default()).await;
    let snap = run(&b, 1, None).await;
    assert_eq!(snap.state, JobState::Completed);
    assert_eq!(delivered(&snap, 0), solid(64, 64, [0x10, 0x20, 0x30]));
    assert_eq!((snap.postprocess_ms, snap.postprocessing), (None, None));
    assert!(snap.files[0].postprocess.is_none());
}

#[tokio::test]
async fn a_failing_processor_fails_the_job_typed_and_withholds_its_images() {
    let sim = sim(SimConfig::default()).await;
    let b = backend_opts(&sim, PostprocessOptions::default()).await;
    let p = processor(|_| Err(PostprocessError::new("palette `neon` is unknown")));
    let snap = run(&b, 2, Some(p.clone())).await;
    let e = failure(&snap);
    assert_eq!(e.exception_type.as_deref(), Some("PostprocessorError"));
    assert!(
        e.message.starts_with("post-processing image `post_00001_.png` (1 of 2) failed: the post-processor failed: palette `neon` is unknown"),
        "{}",
        e.message
    );
    assert_eq!(
        p.calls.load(Ordering::SeqCst),
        1,
        "stops at the first failure"
    );
    assert!(snap.files.is_empty(), "nothing delivered: {:?}", snap.files);
    assert!(
        pngs_in(&b, &snap.prompt_id).is_empty(),
        "{:?}",
        pngs_in(&b, &snap.prompt_id)
    );
    assert_eq!(
        serde_json::to_value(e.kind).unwrap(),
        json!("postprocess_failed")
    );
    // The server keeps serving: the next job completes.
    let next = run(&b, 1, Some(processor(invert))).await;
    assert_eq!(next.state, JobState::Completed);
}

#[tokio::test]
async fn a_wrong_size_buffer_is_refused_precisely() {
    let sim = sim(SimConfig::default()).await;
    let b = backend_opts(&sim, PostprocessOptions::default()).await;
    let p = processor(|mut image: RgbaImage| {
        image.pixels.pop();
        Ok(Postprocessed {
            image,
            steps: vec![],
        })
    });
    let snap = run(&b, 1, Some(p)).await;
    let e = failure(&snap);
    assert_eq!(
        e.exception_type.as_deref(),
        Some("PostprocessInvalidResult")
    );
    assert!(
        e.message.ends_with("the post-processor returned an invalid image: 64x64 comes with 16383 bytes of pixels, expected exactly 16384 (width * height * 4, RGBA8)"),
        "{}",
        e.message
    );
    let zero = run(
        &b,
        1,
        Some(processor(|_| {
            Ok(Postprocessed {
                image: RgbaImage {
                    width: 0,
                    height: 5,
                    pixels: vec![],
                },
                steps: vec![],
            })
        })),
    )
    .await;
    assert!(
        failure(&zero)
            .message
            .ends_with("0x5 has no pixels (width and height must be at least 1)"),
        "{}",
        failure(&zero).message
    );
}

#[tokio::test]
async fn results_at_the_pixel_cap_pass_and_one_more_pixel_is_refused() {
    const CAP: u64 = 64 * 64;
    let sim = sim(SimConfig::default()).await;
    let b = backend_opts(
        &sim,
        PostprocessOptions {
            max_pixels: CAP,
            ..PostprocessOptions::default()
        },
    )
    .await;
    // At the cap: a 4096 x 1 result (same pixel count as the 64 x 64 input).
    let at = run(
        &b,
        1,
        Some(processor(|_| {
            Ok(Postprocessed {
                image: solid(CAP as u32, 1, [1, 2, 3]),
                steps: vec![step("strip", "one row")],
            })
        })),
    )
    .await;
    assert_eq!(at.state, JobState::Completed, "{at:?}");
    assert_eq!((at.files[0].width, at.files[0].height), (CAP as u32, 1));
    assert_eq!(delivered(&at, 0), solid(CAP as u32, 1, [1, 2, 3]));
    // One pixel more is refused, naming the size and the setting.
    let over = run(
        &b,
        1,
        Some(processor(|_| {
            Ok(Postprocessed {
                image: solid(CAP as u32 + 1, 1, [1, 2, 3]),
                steps: vec![],
            })
        })),
    )
    .await;
    let e = failure(&over);
    assert!(
        e.message.ends_with("the post-processor returned an invalid image: 4097x1 is 4097 pixels, over the limit of 4096 pixels; raise it with COMFYUI_MCP_POSTPROCESS_MAX_PIXELS"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn an_input_over_the_pixel_cap_is_not_decoded_for_the_processor() {
    let sim = sim(SimConfig::default()).await;
    let b = backend_opts(
        &sim,
        PostprocessOptions {
            max_pixels: 64 * 64 - 1,
            ..PostprocessOptions::default()
        },
    )
    .await;
    let p = processor(invert);
    let snap = run(&b, 1, Some(p.clone())).await;
    let e = failure(&snap);
    assert_eq!(
        e.exception_type.as_deref(),
        Some("PostprocessInputTooLarge")
    );
    assert!(
        e.message.ends_with("it is 64x64 = 4096 pixels, more than the post-processing limit of 4095 pixels (COMFYUI_MCP_POSTPROCESS_MAX_PIXELS)"),
        "{}",
        e.message
    );
    assert_eq!(p.calls.load(Ordering::SeqCst), 0, "never called");
}

#[tokio::test]
async fn translucent_results_are_encoded_rgba_and_opaque_ones_rgb() {
    let sim = sim(SimConfig::default()).await;
    let b = backend_opts(&sim, PostprocessOptions::default()).await;
    let snap = run(
        &b,
        1,
        Some(processor(|mut image: RgbaImage| {
            image.pixels[3] = 128; // one half-transparent pixel
            Ok(Postprocessed {
                image,
                steps: vec![step("cutout", "first pixel half transparent")],
            })
        })),
    )
    .await;
    assert_eq!(snap.state, JobState::Completed);
    assert_eq!(color_type(&snap, 0), png::ColorType::Rgba);
    let img = delivered(&snap, 0);
    assert_eq!(
        &img.pixels[..8],
        &[0x10, 0x20, 0x30, 128, 0x10, 0x20, 0x30, 255]
    );
}

#[tokio::test]
async fn each_image_of_a_batch_is_processed() {
    let sim = sim(SimConfig::default()).await;
    let b = backend_opts(&sim, PostprocessOptions::default()).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let p = processor(move |image: RgbaImage| {
        log.lock().unwrap().push((image.width, image.height));
        invert(image)
    });
    let snap = run(&b, 2, Some(p.clone())).await;
    assert_eq!(snap.state, JobState::Completed, "{snap:?}");
    assert_eq!(*seen.lock().unwrap(), [(64, 64), (64, 64)]);
    assert_eq!(snap.files.len(), 2);
    for i in 0..2 {
        assert_eq!(
            delivered(&snap, i),
            solid(64, 64, [0xEF, 0xDF, 0xCF]),
            "image {i}"
        );
        assert_eq!(snap.files[i].postprocess.as_ref().unwrap().steps.len(), 1);
    }
    assert_eq!(
        snap.postprocessing,
        Some(PostprocessProgress { done: 2, total: 2 })
    );
}

#[tokio::test]
async fn a_slow_processor_holds_only_its_own_job_and_shows_its_phase() {
    let sim = sim(SimConfig::default()).await;
    let b = backend_opts(&sim, PostprocessOptions::default()).await;
    let (p, gate, started) = gated();
    let mut req = request(graph(2));
    req.postprocess = Some(p);
    let slow = b.comfy.submit(req).await.unwrap();
    tokio::time::timeout(BOUND, started.notified())
        .await
        .expect("processor called");
    // While it is held: its status answers at once, in the post-processing phase.
    let now = b.comfy.status(&slow.prompt_id).await.unwrap().unwrap();
    assert_eq!(now.state, JobState::Running);
    assert_eq!(
        now.postprocessing,
        Some(PostprocessProgress { done: 0, total: 2 })
    );
    assert!(
        now.progress >= 0.9 && now.progress < 1.0,
        "{}",
        now.progress
    );
    assert!(now.files.is_empty(), "nothing served before the stage ends");
    // Another job, with and without a processor, completes meanwhile.
    let other = run(&b, 1, None).await;
    assert_eq!(other.state, JobState::Completed);
    let other = run(&b, 1, Some(processor(invert))).await;
    assert_eq!(other.state, JobState::Completed);
    let mut rx = b.comfy.watch(&slow.prompt_id).unwrap();
    gate.add_permits(1);
    let after_one = tokio::time::timeout(
        BOUND,
        rx.wait_for(|s| s.postprocessing.is_some_and(|p| p.done == 1)),
    )
    .await
    .expect("first image done")
    .unwrap()
    .clone();
    assert_eq!(after_one.state, JobState::Running);
    assert!(
        after_one.progress > now.progress,
        "{} then {}",
        now.progress,
        after_one.progress
    );
    gate.add_permits(1);
    let done = finished(&b.comfy, &slow.prompt_id).await;
    assert_eq!(done.state, JobState::Completed, "{done:?}");
    assert_eq!(done.files.len(), 2);
}

#[tokio::test]
async fn a_cancel_during_post_processing_ends_the_job_cancelled_between_images() {
    let sim = sim(SimConfig::default()).await;
    let b = backend_opts(&sim, PostprocessOptions::default()).await;
    let (p, gate, started) = gated();
    let mut req = request(graph(2));
    req.postprocess = Some(p);
    let job = b.comfy.submit(req).await.unwrap();
    tokio::time::timeout(BOUND, started.notified())
        .await
        .expect("processor called");
    sim.clear_requests();
    let comfy = b.comfy.clone();
    let id = job.prompt_id.clone();
    let cancel = tokio::spawn(async move { comfy.cancel(&id).await });
    // The cancel is recorded before it asks ComfyUI's queue (nothing else asks it now: the
    // only open job is being finalised); then the first image is let through and the second
    // never starts.
    tokio::time::timeout(BOUND, async {
        while !sim
            .requests()
            .iter()
            .any(|r| r.method == "GET" && r.path == "/queue")
        {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the cancel asks the queue");
    gate.add_permits(1);
    let outcome = tokio::time::timeout(BOUND, cancel).await.unwrap().unwrap();
    let snap = outcome.expect("cancelled").snapshot().clone();
    assert_eq!(snap.state, JobState::Cancelled, "{snap:?}");
    assert!(snap.files.is_empty());
    assert!(
        pngs_in(&b, &job.prompt_id).is_empty(),
        "{:?}",
        pngs_in(&b, &job.prompt_id)
    );
}

#[tokio::test]
async fn keep_raw_keeps_comfyuis_original_beside_the_processed_image() {
    let sim = sim(SimConfig::default()).await;
    let keep = PostprocessOptions {
        keep_raw: true,
        ..PostprocessOptions::default()
    };
    let b = backend_opts(&sim, keep).await;
    let snap = run(&b, 1, Some(processor(invert))).await;
    assert_eq!(snap.state, JobState::Completed);
    let post = snap.files[0].postprocess.as_ref().unwrap();
    assert_eq!(post.raw_filename.as_deref(), Some("post_00001_.orig.png"));
    let dir = comfyui::outputs::job_dir(b.out.path(), &snap.prompt_id);
    let raw = std::fs::read(dir.join("post_00001_.orig.png")).unwrap();
    assert_eq!(
        decode_rgba(&raw, u64::MAX).unwrap(),
        solid(64, 64, [0x10, 0x20, 0x30])
    );
    assert_eq!(delivered(&snap, 0), solid(64, 64, [0xEF, 0xDF, 0xCF]));
    // On failure the originals of every image stay, and nothing is delivered.
    let failing = processor(|_| Err(PostprocessError::new("no")));
    let failed = run(&b, 2, Some(failing)).await;
    let e = failure(&failed);
    assert!(
        e.message
            .ends_with("ComfyUI's originals are kept as *.orig.png in the job folder"),
        "{}",
        e.message
    );
    let originals: Vec<String> = failed
        .images
        .iter()
        .map(|r| r.filename.replace(".png", ".orig.png"))
        .collect();
    assert_eq!(originals.len(), 2);
    assert_eq!(pngs_in(&b, &failed.prompt_id), originals);
}

/// A store that hands one job over for adoption at the first heartbeat and records writes.
#[derive(Debug)]
struct AdoptOnce {
    job: Mutex<Option<StoredJob>>,
    last: Mutex<Option<JobSnapshot>>,
}

impl JobStore for AdoptOnce {
    fn insert(&self, _job: &StoredJob) -> Result<(), StoreError> {
        Ok(())
    }
    fn update(&self, snapshot: &JobSnapshot) -> Result<Update, StoreError> {
        *self.last.lock().unwrap() = Some(snapshot.clone());
        Ok(Update::Applied)
    }
    fn get(&self, _prompt_id: &str) -> Result<Option<StoredJob>, StoreError> {
        Ok(None)
    }
    fn list(&self, _query: &JobQuery) -> Result<JobPage, StoreError> {
        Ok(JobPage {
            jobs: vec![],
            next: None,
        })
    }
    fn cancel(&self, _snapshot: &JobSnapshot) -> Result<Update, StoreError> {
        Ok(Update::Missing)
    }
    fn heartbeat(
        &self,
        _open: &[String],
        _limit: usize,
        _backend: &str,
    ) -> Result<Heartbeat, StoreError> {
        Ok(Heartbeat {
            adopted: self.job.lock().unwrap().take().into_iter().collect(),
            ended: vec![],
        })
    }
    fn prune(&self) -> Result<Vec<String>, StoreError> {
        Ok(vec![])
    }
}

/// Makes the processor of an adopted job again: `invert` for the first job it is asked about,
/// a refusal naming `refuse` when set; records the prompt ids it was asked for.
#[derive(Debug, Default)]
struct Source {
    refuse: Option<&'static str>,
    asked: Mutex<Vec<String>>,
}

impl ProcessorSource for Source {
    fn processor_for(
        &self,
        job: &JobSnapshot,
    ) -> Result<Arc<dyn OutputProcessor>, PostprocessError> {
        self.asked.lock().unwrap().push(job.prompt_id.clone());
        match self.refuse {
            Some(reason) => Err(PostprocessError::new(reason)),
            None => Ok(processor(invert)),
        }
    }
}

/// A first server submits a post-processing job and stops while it is queued; a second one,
/// with `processors`, adopts it from the store and finishes it. Returns the second backend
/// and the job's final snapshot.
async fn adopted_job(processors: Option<Arc<dyn ProcessorSource>>) -> (Backend, JobSnapshot) {
    let sim = sim(SimConfig::default()).await;
    sim.hold_queue(true);
    let first = backend_opts(&sim, PostprocessOptions::default()).await;
    let mut req = request(graph(1));
    req.postprocess = Some(processor(invert));
    let job = first.comfy.submit(req.clone()).await.unwrap();
    assert_eq!(job.postprocessing, Some(PostprocessProgress::default()));
    first.comfy.shutdown();
    drop(first);
    // The next one adopts it from the store; the processor did not survive.
    let store = Arc::new(AdoptOnce {
        job: Mutex::new(Some(StoredJob {
            snapshot: job.clone(),
            backend: sim.base_url(),
            graph_sha256: comfyui::outputs::graph_sha256(&req.graph),
            graph_nodes: vec!["1".into(), "2".into()],
            cancel_requested: false,
        })),
        last: Mutex::new(None),
    });
    let second = backend_full(
        &sim,
        BackendOptions {
            job_store: Some(store.clone()),
            processors,
            ..fast_options()
        },
    )
    .await;
    let mut adopted = None;
    tokio::time::timeout(BOUND, async {
        while adopted.is_none() {
            adopted = second.comfy.watch(&job.prompt_id);
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("adopted at the first heartbeat");
    sim.hold_queue(false);
    let snap = finished(&second.comfy, &job.prompt_id).await;
    (second, snap)
}

#[tokio::test]
async fn an_adopted_job_is_post_processed_by_the_processor_its_source_makes_again() {
    let source = Arc::new(Source::default());
    let (second, snap) = adopted_job(Some(source.clone())).await;
    assert_eq!(snap.state, JobState::Completed, "{snap:?}");
    assert_eq!(*source.asked.lock().unwrap(), vec![snap.prompt_id.clone()]);
    assert_eq!(delivered(&snap, 0), solid(64, 64, [0xEF, 0xDF, 0xCF]));
    assert_eq!(snap.files[0].postprocess.as_ref().unwrap().steps.len(), 1);
    assert!(snap.postprocess_ms.is_some());
    assert_eq!(pngs_in(&second, &snap.prompt_id).len(), 1);
}

#[tokio::test]
async fn an_adopted_job_whose_processor_cannot_be_made_again_fails_naming_why() {
    let source = Arc::new(Source {
        refuse: Some("template `icon` is served now by another pack"),
        ..Source::default()
    });
    let (second, snap) = adopted_job(Some(source)).await;
    let e = failure(&snap);
    assert_eq!(
        e.message,
        format!("{ADOPTED_MESSAGE}: template `icon` is served now by another pack")
    );
    assert_eq!(e.exception_type.as_deref(), Some("PostprocessUnavailable"));
    assert!(snap.files.is_empty());
    assert!(pngs_in(&second, &snap.prompt_id).is_empty());
}

#[tokio::test]
async fn an_adopted_job_without_a_processor_source_fails_clearly_instead_of_delivering_unprocessed_images()
 {
    let (second, snap) = adopted_job(None).await;
    let e = failure(&snap);
    assert_eq!(
        e.message,
        format!("{ADOPTED_MESSAGE}: this server has no source of post-processors")
    );
    assert!(snap.files.is_empty());
    assert!(pngs_in(&second, &snap.prompt_id).is_empty());
}

/// A processor that counts the calls in flight (and the most seen at once) and waits for a
/// permit of `gate` before inverting.
struct Counting(Arc<Counts>);

struct Counts {
    gate: Semaphore,
    in_flight: AtomicUsize,
    most: AtomicUsize,
    calls: AtomicUsize,
}

impl OutputProcessor for Counting {
    fn process(&self, image: RgbaImage) -> Outcome {
        let this = self.0.clone();
        Box::pin(async move {
            this.calls.fetch_add(1, Ordering::SeqCst);
            let now = this.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            this.most.fetch_max(now, Ordering::SeqCst);
            this.gate.acquire().await.expect("gate open").forget();
            this.in_flight.fetch_sub(1, Ordering::SeqCst);
            invert(image)
        })
    }
}

#[tokio::test]
async fn at_most_concurrency_images_are_processed_at_once_across_jobs() {
    let sim = sim(SimConfig::default()).await;
    let options = PostprocessOptions {
        concurrency: 2,
        ..PostprocessOptions::default()
    };
    let b = backend_opts(&sim, options).await;
    let counting = Arc::new(Counts {
        gate: Semaphore::new(0),
        in_flight: AtomicUsize::new(0),
        most: AtomicUsize::new(0),
        calls: AtomicUsize::new(0),
    });
    let mut jobs = Vec::new();
    for _ in 0..3 {
        let mut req = request(graph(1));
        req.postprocess = Some(Arc::new(Counting(counting.clone())));
        jobs.push(b.comfy.submit(req).await.unwrap().prompt_id);
    }
    // All three wait in the post-processing phase; two hold the slots.
    for id in &jobs {
        let mut rx = b.comfy.watch(id).unwrap();
        tokio::time::timeout(
            BOUND,
            rx.wait_for(|s| s.postprocessing.is_some_and(|p| p.total == 1)),
        )
        .await
        .expect("in the post-processing phase")
        .unwrap();
    }
    tokio::time::timeout(BOUND, async {
        while counting.calls.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("two calls started");
    // Give a third call every chance to start if the limit did not hold.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(counting.calls.load(Ordering::SeqCst), 2, "the third waits");
    counting.gate.add_permits(3);
    for id in &jobs {
        assert_eq!(finished(&b.comfy, id).await.state, JobState::Completed);
    }
    assert_eq!(counting.calls.load(Ordering::SeqCst), 3);
    assert_eq!(
        counting.most.load(Ordering::SeqCst),
        2,
        "never more than the limit"
    );
}
