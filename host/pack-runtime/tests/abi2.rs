//! ABI majors side by side, and what 2.0 adds: image parameters, examples, and the
//! postprocessor with each of its limits hit exactly at the limit.
//!
//! Packs (`plugins/test-packs/`): `mini` (1.x), `mini-abi2` (2.0: an image template with
//! examples and a colour-inverting postprocessor, a mask template without), `post-hog`
//! (2.0: a postprocessor that breaks the limit its `mode` names), `abi3` (claims 3.0.0),
//! `wrong-abi` (claims 2.0.0 with 1.0-shaped exports), `no-postprocessor` and `bad-example`.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{args, host, test_pack};
use pack_runtime::params::{self, ResolveError};
use pack_runtime::{
    CallError, ImageFault, ImageInput, Limits, LoadError, NoPostprocess, Pack, ParamValue,
    RgbaImage, Runtime, RuntimeConfig,
};
use serde_json::{Value, json};

fn runtime_with(limits: Limits) -> Runtime {
    Runtime::new(RuntimeConfig {
        limits,
        ..RuntimeConfig::default()
    })
    .unwrap()
}

fn runtime() -> Runtime {
    runtime_with(Limits::default())
}

fn upload(name: &str) -> ImageInput {
    ImageInput {
        name: name.to_owned(),
        width: 2,
        height: 2,
        has_alpha: false,
        sha256: "ab".repeat(32),
    }
}

fn image(width: u32, height: u32) -> RgbaImage {
    RgbaImage {
        width,
        height,
        pixels: (0..width * height * 4).map(|i| (i % 251) as u8).collect(),
    }
}

fn resolved(pack: &Pack, template: &str, a: Value) -> params::ResolvedParams {
    params::resolve(
        pack.template(template).unwrap(),
        &args(a),
        &pack.limits().metadata,
    )
    .unwrap()
}

#[test]
fn packs_of_both_majors_load_and_build_side_by_side_in_one_runtime() {
    let rt = runtime();
    let v1 = rt.load_file(&test_pack("mini")).unwrap();
    let v2 = rt.load_file(&test_pack("mini-abi2")).unwrap();
    assert_eq!(v1.abi_version(), "1.0.0");
    assert_eq!(v2.abi_version(), "2.0.0");
    assert!(!v1.has_postprocessor());
    assert!(v2.has_postprocessor());
    // 1.x converts into the same plain types: no examples, no post-processing.
    assert!(v1.templates().iter().all(|t| !t.postprocess));
    assert!(
        v1.templates()
            .iter()
            .flat_map(|t| &t.params)
            .all(|p| p.examples.is_empty())
    );
    let built = v1
        .build("solid-color", &args(json!({"prompt": "x"})), host())
        .unwrap();
    assert!(built.graph.is_object());
    let inputs = BTreeMap::from([("image".to_owned(), upload("in/a.png"))]);
    let (built, stats) = v2.build_with_inputs(
        "invert",
        &args(json!({"image": "aGVsbG8="})),
        &inputs,
        host(),
    );
    let built = built.unwrap();
    assert!(stats.is_some());
    assert_eq!(built.graph["1"]["inputs"]["image"], "in/a.png");
    assert_eq!(
        built.graph["2"]["inputs"]["filename_prefix"],
        "mini-abi2/invert"
    );
    // Calls into one major leave the other serving.
    assert!(
        v1.build("solid-color", &args(json!({"prompt": "y"})), host())
            .is_ok()
    );
}

#[test]
fn an_unknown_major_is_refused_naming_it_and_every_supported_major() {
    let err = runtime().load_file(&test_pack("abi3")).unwrap_err();
    let LoadError::Incompatible {
        found, supported, ..
    } = &err
    else {
        panic!("{err}");
    };
    assert_eq!(found, "3.0.0");
    assert_eq!(supported, "1.x, 2.x");
    let text = err.to_string();
    assert!(text.contains("comfyui:workflow@3.0.0"), "{text}");
    assert!(text.contains("supported: 1.x, 2.x"), "{text}");
    assert!(text.contains("abi3.wasm"), "{text}");
}

#[test]
fn a_pack_claiming_2_0_with_other_exports_is_an_export_mismatch_naming_2_0() {
    let err = runtime().load_file(&test_pack("wrong-abi")).unwrap_err();
    assert!(matches!(err, LoadError::ExportMismatch { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("comfyui:workflow@2.0.0 ABI"), "{text}");
}

#[test]
fn a_postprocess_flag_without_the_postprocessor_export_is_refused_at_load() {
    let err = runtime()
        .load_file(&test_pack("no-postprocessor"))
        .unwrap_err();
    let LoadError::MissingPostprocessor {
        templates, major, ..
    } = &err
    else {
        panic!("{err}");
    };
    assert_eq!(templates, "`flagged`");
    assert_eq!(major, "2.x");
    let text = err.to_string();
    assert!(
        text.contains("does not export `comfyui:workflow/postprocessor@2.x`"),
        "{text}"
    );
    assert!(text.contains("postprocessing-pack"), "{text}");
}

#[test]
fn examples_are_checked_at_load_and_each_bad_one_names_its_parameter() {
    let err = runtime().load_file(&test_pack("bad-example")).unwrap_err();
    assert!(matches!(err, LoadError::Metadata { .. }), "{err}");
    let text = err.to_string();
    for expected in [
        "parameter `steps`: example #2 is invalid: 500 is out of range: must be between 1 and 50",
        "parameter `sampler`: example #1 is invalid: `heun` is not a valid choice",
        "parameter `init`: an image parameter cannot declare examples",
    ] {
        assert!(text.contains(expected), "{expected}\n in: {text}");
    }
    // The good example (`steps` #1) is not blamed.
    assert!(!text.contains("example #1 is invalid: 20"), "{text}");
}

#[test]
fn examples_reach_the_specs_and_the_json_schema() {
    let pack = runtime().load_file(&test_pack("mini-abi2")).unwrap();
    let invert = pack.template("invert").unwrap();
    assert!(invert.postprocess);
    assert_eq!(
        invert.param("steps").unwrap().examples,
        vec![ParamValue::Integer(10), ParamValue::Integer(30)]
    );
    let schema = params::input_schema(invert);
    assert_eq!(
        schema["properties"]["prompt"]["examples"],
        json!(["a red fox", "a castle at dusk"])
    );
    assert_eq!(schema["properties"]["steps"]["examples"], json!([10, 30]));
    assert_eq!(schema["properties"]["image"]["type"], "string");
    assert!(schema["properties"]["image"].get("examples").is_none());
    assert_eq!(schema["required"], json!(["image"]));
}

#[test]
fn image_parameters_resolve_to_the_uploads_and_nothing_else() {
    let pack = runtime().load_file(&test_pack("mini-abi2")).unwrap();
    let plain = pack.template("plain").unwrap();
    let limits = &pack.limits().metadata;
    let inputs = BTreeMap::from([
        ("image".to_owned(), upload("in/a.png")),
        ("mask".to_owned(), upload("in/m.png")),
    ]);
    let got = params::resolve_with_inputs(
        plain,
        &args(json!({"image": "data:image/png;base64,AAAA", "mask": "/in/m.png"})),
        &inputs,
        limits,
    )
    .unwrap();
    assert_eq!(
        got.get("image"),
        Some(&ParamValue::Image(upload("in/a.png")))
    );
    assert_eq!(
        got.get("mask"),
        Some(&ParamValue::Image(upload("in/m.png")))
    );
    // Provenance: the upload's name, size, alpha and digest.
    assert_eq!(
        got.to_json()["image"],
        json!({"image": "in/a.png", "width": 2, "height": 2, "has_alpha": false, "sha256": "ab".repeat(32)})
    );
    // An optional mask left out is absent (images have no defaults); the extra input is ignored.
    let got =
        params::resolve_with_inputs(plain, &args(json!({"image": "x"})), &inputs, limits).unwrap();
    assert_eq!(got.get("mask"), None);
    // A required image left out: the usual field error.
    let err = params::resolve_with_inputs(plain, &args(json!({})), &inputs, limits).unwrap_err();
    let ResolveError::Invalid(errors) = err else {
        panic!("{err}")
    };
    assert_eq!(errors[0].param, "image");
    assert_eq!(errors[0].message, "required parameter is missing");
    // Not a string: a field error naming the accepted forms.
    let err = params::resolve_with_inputs(plain, &args(json!({"image": 5})), &inputs, limits)
        .unwrap_err();
    let ResolveError::Invalid(errors) = err else {
        panic!("{err}")
    };
    assert!(
        errors[0]
            .message
            .starts_with("expected a string naming an image (base64 PNG"),
        "{errors:?}"
    );
    // Given, but the host provided no upload: a typed internal error.
    let err = params::resolve_with_inputs(
        plain,
        &args(json!({"image": "x"})),
        &BTreeMap::new(),
        limits,
    )
    .unwrap_err();
    assert_eq!(
        err,
        ResolveError::MissingInput {
            param: "image".into()
        }
    );
    // The same through the pack, and through the entry point without images.
    let (built, stats) = pack.build_with_inputs(
        "plain",
        &args(json!({"image": "x"})),
        &BTreeMap::new(),
        host(),
    );
    assert!(
        matches!(built, Err(CallError::MissingImageInput { ref param }) if param == "image"),
        "{built:?}"
    );
    assert!(stats.is_none(), "refused before the pack ran");
    let err = pack
        .build("plain", &args(json!({"image": "x"})), host())
        .unwrap_err();
    // `Pack::build` takes no uploads: the same typed error, never a pack call.
    assert!(
        matches!(&err, CallError::MissingImageInput { param } if param == "image"),
        "{err}"
    );
}

#[test]
fn postprocess_round_trip_inverts_and_reports_its_step_deterministically() {
    let pack = runtime().load_file(&test_pack("mini-abi2")).unwrap();
    let inputs = BTreeMap::from([("image".to_owned(), upload("in/a.png"))]);
    let params = params::resolve_with_inputs(
        pack.template("invert").unwrap(),
        &args(json!({"image": "x"})),
        &inputs,
        &pack.limits().metadata,
    )
    .unwrap();
    let input = image(3, 2);
    let (done, stats) = pack.postprocess_measured("invert", &params, input.clone(), host());
    let done = done.unwrap();
    assert!(stats.unwrap().peak_memory_bytes > 0);
    assert_eq!((done.image.width, done.image.height), (3, 2));
    for (out, inp) in done.image.pixels.chunks(4).zip(input.pixels.chunks(4)) {
        assert_eq!(out, [255 - inp[0], 255 - inp[1], 255 - inp[2], inp[3]]);
    }
    assert_eq!(done.steps.len(), 1);
    assert_eq!(done.steps[0].name, "invert");
    assert_eq!(done.steps[0].detail, "inverted the colours of 6 pixels");
    let again = pack
        .postprocess_resolved("invert", &params, input, host())
        .unwrap();
    assert_eq!(again, done);
}

#[test]
fn postprocess_is_refused_for_1_x_packs_unflagged_and_unknown_templates() {
    let rt = runtime();
    let v1 = rt.load_file(&test_pack("mini")).unwrap();
    let params = resolved(&v1, "solid-color", json!({"prompt": "x"}));
    let err = v1
        .postprocess_resolved("solid-color", &params, image(1, 1), host())
        .unwrap_err();
    assert!(
        matches!(&err, CallError::NoPostprocess { cause: NoPostprocess::OldAbi { found }, .. } if found == "1.0.0"),
        "{err}"
    );
    assert!(err.to_string().contains("comfyui:workflow@1.0.0"), "{err}");

    let v2 = rt.load_file(&test_pack("mini-abi2")).unwrap();
    let (err, stats) = v2.postprocess_measured("plain", &Default::default(), image(1, 1), host());
    let err = err.unwrap_err();
    assert!(
        matches!(&err, CallError::NoPostprocess { cause: NoPostprocess::NotFlagged, template } if template == "plain"),
        "{err}"
    );
    assert!(stats.is_none());
    let err = v2
        .postprocess_resolved("nope", &Default::default(), image(1, 1), host())
        .unwrap_err();
    assert!(matches!(err, CallError::UnknownTemplate { .. }), "{err}");
}

/// Limits small enough to hit in a test: 64 pixels, 4 steps, 40 bytes of text.
fn hog_limits() -> Limits {
    Limits {
        max_postprocess_pixels: 64,
        max_postprocess_steps: 4,
        max_error_bytes: 40,
        call_timeout: Duration::from_millis(300),
        memory_bytes: 24 << 20,
        ..Limits::default()
    }
}

struct Hog {
    pack: Pack,
}

impl Hog {
    fn new() -> Self {
        Self {
            pack: runtime_with(hog_limits())
                .load_file(&test_pack("post-hog"))
                .unwrap(),
        }
    }

    fn run(
        &self,
        a: Value,
        input: RgbaImage,
    ) -> (Result<pack_runtime::Postprocessed, CallError>, bool) {
        let params = resolved(&self.pack, "hog", a);
        let (result, stats) = self
            .pack
            .postprocess_measured("hog", &params, input, host());
        (result, stats.is_some())
    }

    fn still_serves(&self) {
        let (done, _) = self.run(json!({"mode": "echo"}), image(2, 2));
        assert_eq!(done.unwrap().image, image(2, 2));
    }
}

#[test]
fn the_input_pixel_cap_is_inclusive_and_checked_before_the_pack_runs() {
    let hog = Hog::new();
    let (done, ran) = hog.run(json!({"mode": "echo"}), image(8, 8));
    assert_eq!(done.unwrap().image, image(8, 8), "64 pixels: at the cap");
    assert!(ran);
    let (err, ran) = hog.run(json!({"mode": "echo"}), image(65, 1));
    let err = err.unwrap_err();
    assert!(
        matches!(
            err,
            CallError::InputImage(ImageFault::TooManyPixels {
                pixels: 65,
                limit: 64,
                ..
            })
        ),
        "{err}"
    );
    assert!(!ran, "refused before the pack ran");
    assert!(
        err.to_string()
            .contains("COMFYUI_MCP_POSTPROCESS_MAX_PIXELS"),
        "{err}"
    );
    let mut short = image(2, 2);
    short.pixels.pop();
    let (err, ran) = hog.run(json!({"mode": "echo"}), short);
    assert!(
        matches!(
            err,
            Err(CallError::InputImage(ImageFault::BufferSize {
                expected: 16,
                got: 15,
                ..
            }))
        ),
        "{err:?}"
    );
    assert!(!ran);
    hog.still_serves();
}

#[test]
fn the_output_pixel_cap_is_inclusive_and_a_bad_buffer_is_refused() {
    let hog = Hog::new();
    let (done, _) = hog.run(
        json!({"mode": "resize", "width": 16, "height": 4}),
        image(1, 1),
    );
    let done = done.unwrap();
    assert_eq!(
        (done.image.width, done.image.height),
        (16, 4),
        "64 pixels: at the cap"
    );
    let (err, ran) = hog.run(
        json!({"mode": "resize", "width": 13, "height": 5}),
        image(1, 1),
    );
    assert!(
        matches!(
            err,
            Err(CallError::OutputImage(ImageFault::TooManyPixels {
                pixels: 65,
                limit: 64,
                ..
            }))
        ),
        "{err:?}"
    );
    assert!(ran);
    let (err, _) = hog.run(
        json!({"mode": "short", "width": 4, "height": 4}),
        image(1, 1),
    );
    assert!(
        matches!(
            err,
            Err(CallError::OutputImage(ImageFault::BufferSize {
                expected: 64,
                got: 63,
                ..
            }))
        ),
        "{err:?}"
    );
    let (err, _) = hog.run(json!({"mode": "zero", "height": 4}), image(1, 1));
    assert!(
        matches!(
            err,
            Err(CallError::OutputImage(ImageFault::Empty {
                width: 0,
                height: 4
            }))
        ),
        "{err:?}"
    );
    hog.still_serves();
}

#[test]
fn steps_are_capped_in_count_at_the_limit_and_their_text_escaped_and_capped() {
    let hog = Hog::new();
    let (done, _) = hog.run(json!({"mode": "steps", "count": 4}), image(1, 1));
    let steps = done.unwrap().steps;
    assert_eq!(steps.len(), 4, "4 steps: at the cap, all kept");
    assert_eq!(steps[3].name, "step-3");
    assert_eq!(steps[0].detail, "line\\nbreak", "escaped, within 40 bytes");
    let (done, _) = hog.run(json!({"mode": "steps", "count": 5}), image(1, 1));
    let steps = done.unwrap().steps;
    assert_eq!(steps.len(), 5, "4 kept and one note");
    assert_eq!(steps[4].name, "...");
    assert!(
        steps[4]
            .detail
            .starts_with("and 1 more steps cut (the pack reported 5; at most 4 are kept"),
        "{}",
        steps[4].detail
    );
    // A detail over the text cap: cut at 40 bytes, the rest counted.
    let (done, _) = hog.run(json!({"mode": "steps", "count": 60}), image(1, 1));
    let steps = done.unwrap().steps;
    assert_eq!(steps.len(), 5);
    let detail = &steps[0].detail;
    assert!(detail.starts_with("line\\nbreak"), "{detail}");
    assert!(detail.ends_with("more bytes cut)"), "{detail}");
    let kept = detail.split(" ... (").next().unwrap();
    assert_eq!(kept.len(), 40, "{detail}");
    hog.still_serves();
}

#[test]
fn a_postprocessor_is_under_the_call_time_and_memory_limits() {
    let hog = Hog::new();
    let (err, _) = hog.run(json!({"mode": "loop"}), image(1, 1));
    assert!(
        matches!(err, Err(CallError::Timeout { limit }) if limit == Duration::from_millis(300)),
        "{err:?}"
    );
    let (err, _) = hog.run(json!({"mode": "grow"}), image(1, 1));
    assert!(
        matches!(err, Err(CallError::MemoryLimit { limit_bytes }) if limit_bytes == 24 << 20),
        "{err:?}"
    );
    let (err, _) = hog.run(json!({"mode": "fail"}), image(1, 1));
    assert!(
        matches!(&err, Err(CallError::Failed(m)) if m == "post-hog: asked to fail"),
        "{err:?}"
    );
    hog.still_serves();
}

#[test]
fn the_default_pixel_cap_is_4096_squared() {
    assert_eq!(Limits::default().max_postprocess_pixels, 4096 * 4096);
    assert_eq!(Limits::default().max_postprocess_steps, 32);
}
