//! Images from clients (`comfyui_mcp::inputs`) through the whole service, on the simulator
//! with the shipped pack: every source (base64, data URI, input folder, earlier result)
//! reaches the pack as one content-addressed upload; hostile inputs (bombs, truncated files,
//! huge pixel counts, non-images, paths outside the folders) get precise errors and nothing
//! is uploaded; the byte and pixel caps hold at their limits; masks are uploaded as grey
//! PNGs; and a call the pack or the parameter check refuses uploads nothing.

mod common;

use std::io::Cursor;
use std::time::Duration;

use base64::Engine as _;
use comfyui::JobState;
use comfyui_mcp::App;
use comfyui_mcp::error::AppError;
use image::{DynamicImage, ImageFormat};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

struct Rig {
    sim: simulator::SimHandle,
    app: std::sync::Arc<App>,
    inputs: tempfile::TempDir,
    _out: tempfile::TempDir,
    _cache: tempfile::TempDir,
}

async fn rig(extra: &[&str]) -> Rig {
    let sim = common::simulator(Duration::ZERO).await;
    let out = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let inputs = tempfile::tempdir().unwrap();
    let dir = inputs.path().display().to_string();
    let mut flags = vec!["--input-dir", dir.as_str()];
    flags.extend_from_slice(extra);
    let app = common::shipped_app(&sim, out.path(), cache.path(), &flags).await;
    Rig {
        sim,
        app,
        inputs,
        _out: out,
        _cache: cache,
    }
}

impl Rig {
    fn uploads(&self) -> usize {
        self.sim
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/upload/image"))
            .count()
    }

    fn prompts(&self) -> usize {
        self.sim
            .requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/prompt"))
            .count()
    }

    async fn generate(
        &self,
        template: &str,
        args: Value,
    ) -> Result<comfyui::JobSnapshot, AppError> {
        let mut args: Map<String, Value> = args.as_object().unwrap().clone();
        args.entry("prompt").or_insert(json!("a test picture"));
        args.entry("steps").or_insert(json!(1));
        self.app.generate(template, args).await
    }

    async fn completed(&self, job: &comfyui::JobSnapshot) -> comfyui::JobSnapshot {
        let done = self
            .app
            .wait(&job.prompt_id, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(done.state, JobState::Completed, "{done:?}");
        done
    }
}

fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), format).unwrap();
    out
}

fn picture(width: u32, height: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 5) as u8, (y * 3) as u8, ((x + y) * 2) as u8])
    }))
}

fn png(width: u32, height: u32) -> Vec<u8> {
    encode(&picture(width, height), ImageFormat::Png)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A PNG whose header claims `width` × `height` pixels, with a token image stream: what a
/// decompression bomb looks like to the header check.
fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc_input = kind.to_vec();
        crc_input.extend_from_slice(data);
        out.extend_from_slice(&crc_input);
        out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn upload_name(job: &comfyui::JobSnapshot, param: &str) -> String {
    job.parameters[param]["image"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn every_source_reaches_the_pack_as_one_content_addressed_upload() {
    let rig = rig(&[]).await;
    let bytes = png(96, 64);
    let digest = sha(&bytes);
    let expected_name = format!("comfyui-mcp/comfyui-mcp-{}.png", &digest[..32]);

    let job = rig
        .generate("image-variation", json!({"image": b64(&bytes)}))
        .await
        .expect("base64 accepted");
    assert_eq!(rig.uploads(), 1);
    let recorded = &job.parameters["image"];
    assert_eq!(
        recorded,
        &json!({"image": expected_name, "width": 96, "height": 64, "has_alpha": false, "sha256": digest})
    );
    let done = rig.completed(&job).await;
    assert_eq!(done.files.len(), 1);
    let out = image::open(&done.files[0].path).unwrap();
    assert_eq!(
        (out.width(), out.height()),
        (96, 64),
        "sampled at the input's size"
    );

    let data_uri = format!("data:image/png;base64,{}", b64(&bytes));
    let again = rig
        .generate("image-variation", json!({"image": data_uri}))
        .await
        .expect("data URI accepted");
    assert_eq!(
        upload_name(&again, "image"),
        expected_name,
        "same bytes, same name"
    );

    std::fs::create_dir(rig.inputs.path().join("sprites")).unwrap();
    let jpeg = encode(&picture(80, 48), ImageFormat::Jpeg);
    std::fs::write(rig.inputs.path().join("sprites/hero.jpg"), &jpeg).unwrap();
    let from_dir = rig
        .generate("image-variation", json!({"image": "sprites/hero.jpg"}))
        .await
        .expect("a path in the input folder accepted");
    assert_eq!(from_dir.parameters["image"]["sha256"], json!(sha(&jpeg)));
    assert!(upload_name(&from_dir, "image").ends_with(".jpg"));
    rig.completed(&from_dir).await;

    let webp = encode(&picture(40, 24), ImageFormat::WebP);
    let from_webp = rig
        .generate(
            "image-variation",
            json!({"image": format!("data:image/webp;base64,{}", b64(&webp))}),
        )
        .await
        .expect("WebP accepted");
    assert_eq!(from_webp.parameters["image"]["width"], json!(40));
    rig.completed(&from_webp).await;

    let earlier = format!(
        "comfyui://images/{}/{}",
        done.prompt_id, done.files[0].filename
    );
    let from_result = rig
        .generate("image-variation", json!({"image": earlier}))
        .await
        .expect("an earlier result accepted");
    let result_bytes = std::fs::read(&done.files[0].path).unwrap();
    assert_eq!(
        from_result.parameters["image"]["sha256"],
        json!(sha(&result_bytes))
    );
    rig.completed(&from_result).await;
    assert_eq!(rig.uploads(), 5, "one upload per accepted call");
}

#[tokio::test]
async fn hostile_inputs_get_precise_errors_and_nothing_is_uploaded() {
    let rig = rig(&[]).await;
    std::fs::write(rig.inputs.path().join("notes.txt"), b"just some notes").unwrap();
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.png");
    std::fs::write(&secret, png(8, 8)).unwrap();
    let full = png(64, 64);
    let mut jpeg = encode(&picture(64, 64), ImageFormat::Jpeg);
    jpeg.truncate(jpeg.len() / 2);
    // 4112 x 4112 = 16,908,544 pixels of black: a few KiB compressed, 16 MiB decoded.
    let bomb = encode(
        &DynamicImage::ImageLuma8(image::GrayImage::new(4112, 4112)),
        ImageFormat::Png,
    );
    assert!(bomb.len() < 100_000, "the bomb is small: {}", bomb.len());
    let mut gif = b"GIF89a\x01\x00\x01\x00".to_vec();
    gif.resize(300, 0);
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "png bomb",
            b64(&bomb),
            "input_too_many_pixels",
            "4112x4112 = 16908544 pixels, over the limit of 16777216 pixels",
        ),
        (
            "header bomb",
            b64(&png_header_only(100_000, 100_000)),
            "input_too_many_pixels",
            "100000x100000",
        ),
        (
            "truncated png",
            b64(&full[..full.len() - 40]),
            "input_corrupt",
            "the PNG image does not decode",
        ),
        (
            "truncated jpeg",
            b64(&jpeg),
            "input_corrupt",
            "no end-of-image marker",
        ),
        (
            "gif",
            b64(&gif),
            "input_not_an_image",
            "the data is a GIF image",
        ),
        (
            "text file",
            "notes.txt".into(),
            "input_not_an_image",
            "the data is text, not an image",
        ),
        (
            "zero size",
            b64(&png_header_only(0, 10)),
            "input_corrupt",
            "does not decode",
        ),
        (
            "mislabelled",
            format!("data:image/jpeg;base64,{}", b64(&full)),
            "input_type_mismatch",
            "declares `image/jpeg` but the data is PNG (image/png)",
        ),
        (
            "bad base64",
            format!("data:image/png;base64,{}", "%%%%"),
            "input_malformed",
            "the base64 data does not decode",
        ),
        (
            "outside",
            secret.display().to_string(),
            "input_path_refused",
            "outside the allowed input folders",
        ),
        (
            "escape",
            "../secret.png".into(),
            "input_path_refused",
            "outside the allowed input folders",
        ),
        (
            "missing",
            "nope.png".into(),
            "input_not_found",
            "nor a file in the input folders",
        ),
        (
            "url",
            "https://example.com/cat.png".into(),
            "input_malformed",
            "are not fetched",
        ),
        (
            "unknown result",
            "comfyui://images/no-such-job/a.png".into(),
            "input_unknown_result",
            "no job with prompt id `no-such-job`",
        ),
    ];
    for (what, image, kind, message) in cases {
        let err = rig
            .generate("image-variation", json!({"image": image}))
            .await
            .expect_err(what);
        assert_eq!(err.kind(), kind, "{what}: {err}");
        let text = err.to_string();
        assert!(text.contains(message), "{what}: {text}");
        assert!(text.contains("image parameter `image`"), "{what}: {text}");
        assert_eq!(err.to_json()["details"]["param"], json!("image"), "{what}");
    }
    assert_eq!(
        (rig.uploads(), rig.prompts()),
        (0, 0),
        "nothing uploaded, nothing queued"
    );
}

#[tokio::test]
async fn the_byte_and_pixel_caps_hold_at_their_limits() {
    let at_pixels = png(64, 48);
    let over_pixels = png(64, 49);
    let rig = rig(&["--input-max-pixels", "3072"]).await;
    rig.generate("image-variation", json!({"image": b64(&at_pixels)}))
        .await
        .expect("64x48 = 3072 pixels is at the cap");
    let err = rig
        .generate("image-variation", json!({"image": b64(&over_pixels)}))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("64x49 = 3136 pixels, over the limit of 3072 pixels; a server operator can raise it with --input-max-pixels or COMFYUI_MCP_INPUT_MAX_PIXELS"), "{err}");
    assert_eq!(rig.uploads(), 1);

    let bytes = png(32, 32);
    let limit = bytes.len().to_string();
    let rig = rig_with_bytes(&limit).await;
    std::fs::write(rig.inputs.path().join("at.png"), &bytes).unwrap();
    let mut longer = bytes.clone();
    longer.extend_from_slice(b"\0");
    std::fs::write(rig.inputs.path().join("over.png"), &longer).unwrap();
    rig.generate("image-variation", json!({"image": "at.png"}))
        .await
        .expect("a file of exactly the cap");
    rig.generate("image-variation", json!({"image": b64(&bytes)}))
        .await
        .expect("base64 of exactly the cap");
    for over in [json!("over.png"), json!(b64(&longer))] {
        let err = rig
            .generate("image-variation", json!({"image": over}))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "input_too_large");
        let expected = format!("is {} bytes", longer.len());
        assert!(err.to_string().contains(&expected), "{err}");
        assert!(
            err.to_string()
                .contains(&format!("over the limit of {limit} bytes")),
            "{err}"
        );
    }
    assert_eq!(rig.uploads(), 2);
}

async fn rig_with_bytes(limit: &str) -> Rig {
    rig(&["--input-max-bytes", limit]).await
}

#[tokio::test]
async fn a_mask_is_uploaded_grey_and_a_call_the_pack_refuses_uploads_nothing() {
    let rig = rig(&[]).await;
    let image = png(64, 64);
    // Repaint the left half: opaque there, transparent elsewhere.
    let layer = image::RgbaImage::from_fn(64, 64, |x, _| {
        image::Rgba([255, 0, 0, if x < 32 { 255 } else { 0 }])
    });
    let mask = encode(&DynamicImage::ImageRgba8(layer.clone()), ImageFormat::Png);
    let job = rig
        .generate("inpaint", json!({"image": b64(&image), "mask": b64(&mask)}))
        .await
        .expect("inpaint accepted");
    assert_eq!(rig.uploads(), 2, "the image and the mask");
    assert_eq!(
        job.parameters["mask"]["sha256"],
        json!(sha(&mask)),
        "the client's bytes"
    );
    assert_eq!(
        job.parameters["mask"]["has_alpha"],
        json!(false),
        "the upload is grey"
    );
    let name = upload_name(&job, "mask");
    let (subfolder, file) = name.split_once('/').unwrap();
    let url = format!(
        "{}/view?filename={file}&subfolder={subfolder}&type=input",
        rig.sim.base_url()
    );
    let uploaded = reqwest::get(url).await.unwrap().bytes().await.unwrap();
    let grey = image::load_from_memory(&uploaded).unwrap();
    assert_eq!(grey.color(), image::ColorType::L8);
    let levels = grey.to_luma8();
    assert_eq!(
        (levels.get_pixel(0, 0).0[0], levels.get_pixel(63, 0).0[0]),
        (255, 0)
    );
    rig.completed(&job).await;

    let wrong_size = encode(
        &DynamicImage::ImageRgba8(image::imageops::crop_imm(&layer, 0, 0, 64, 63).to_image()),
        ImageFormat::Png,
    );
    let err = rig
        .generate(
            "inpaint",
            json!({"image": b64(&image), "mask": b64(&wrong_size)}),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "invalid_parameters", "{err}");
    assert!(
        err.to_string()
            .contains("the mask is 64x63 but the image is 64x64"),
        "{err}"
    );
    assert_eq!(rig.uploads(), 2, "a graph the pack refused uploads nothing");
}

#[tokio::test]
async fn other_argument_errors_come_before_any_image_is_read() {
    let rig = rig(&[]).await;
    let err = rig
        .generate(
            "image-variation",
            json!({"image": b64(&png_header_only(100_000, 100_000)), "steps": 0, "colour": 1}),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "invalid_parameters", "{err}");
    let text = err.to_string();
    assert!(text.contains("steps") && text.contains("colour"), "{text}");
    assert!(!text.contains("pixels"), "the image was not read: {text}");
    let err = rig
        .generate("image-variation", json!({"image": 42}))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("expected a string naming an image"),
        "{err}"
    );
    assert_eq!(rig.uploads(), 0);
}

#[test]
fn the_test_images_are_what_they_claim() {
    let header = png_header_only(100_000, 100_000);
    let decoder = png_header_decoder(&header);
    assert_eq!(decoder, (100_000, 100_000));
}

fn png_header_decoder(bytes: &[u8]) -> (u32, u32) {
    let reader = image::ImageReader::with_format(Cursor::new(bytes), ImageFormat::Png);
    let decoder = reader.into_decoder().unwrap();
    image::ImageDecoder::dimensions(&decoder)
}

/// Holds `n` of the intake pool's permits (jobs blocked until the senders are dropped).
async fn hold_input_threads(app: &App, n: usize) -> Vec<std::sync::mpsc::Sender<()>> {
    let pool = app.image_intake().pool().clone();
    let mut held = Vec::new();
    for _ in 0..n {
        let (release, blocked) = std::sync::mpsc::channel::<()>();
        let (started, running) = tokio::sync::oneshot::channel();
        let pool = pool.clone();
        tokio::spawn(async move {
            pool.run(move || {
                let _ = started.send(());
                let _ = blocked.recv();
            })
            .await
        });
        running.await.unwrap();
        held.push(release);
    }
    held
}

/// `COMFYUI_MCP_INPUT_THREADS` bounds the images read and decoded at once: with all of its
/// jobs busy a call's image waits (no thread is taken), with one free it goes through.
#[tokio::test]
async fn input_threads_bound_the_images_decoded_at_once() {
    let r = rig(&["--input-threads", "2"]).await;
    assert_eq!(r.app.image_intake().pool().threads(), 2);
    let image = b64(&png(64, 64));
    let mut held = hold_input_threads(&r.app, 2).await;
    assert_eq!(r.app.image_intake().pool().available(), 0);
    let app = r.app.clone();
    let args = json!({"image": image.clone(), "prompt": "p", "steps": 1});
    let mut call = tokio::spawn(async move {
        app.generate("image-variation", args.as_object().unwrap().clone())
            .await
    });
    // The call cannot get at its image while both input threads are taken.
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        tokio::time::timeout(Duration::ZERO, &mut call)
            .await
            .is_err(),
        "the call waits for an input thread"
    );
    assert_eq!(r.uploads(), 0);
    // One thread freed (the other stays taken): the waiting call's image goes through, then
    // one more call's.
    drop(held.remove(0));
    assert_eq!(held.len(), 1);
    let job = call.await.unwrap().unwrap();
    r.completed(&job).await;
    let again = r
        .generate("image-variation", json!({"image": image}))
        .await
        .unwrap();
    r.completed(&again).await;
    assert_eq!(r.uploads(), 2);
    assert_eq!(r.app.image_intake().pool().available(), 1, "one still held");
    drop(held);
}
