//! What each node class "computes" in the simulator.
//!
//! Nodes do not compute anything real: image-like values ([`SimValue`]) carry a recipe that
//! propagates sizes and batch counts through the graph (empty images and latents, samplers,
//! decoders, scalers, crops, batches, loaders), and output nodes ask for placeholder PNGs to
//! be written. Unknown classes pass their first image-like input through, typed after their
//! declared outputs. Errors that real nodes raise for a given input (`ImageToMask` on a
//! missing alpha channel, a missing file) are raised with ComfyUI's exception text.
//!
//! Invariant: `run` is pure apart from reading input files; naming and writing files is the
//! executor's job (it needs the shared state).

use bytes::Bytes;
use serde_json::Value;
use std::sync::Arc;

use crate::catalog::Catalog;
use crate::files::{Dir, join, normalize, split_annotation};
use crate::images::{self, Img, Op, Source};
use crate::pyval::{self, PyErr};
use crate::traceback;

/// A value on a node output slot.
#[derive(Debug, Clone)]
pub(crate) enum SimValue {
    /// An IMAGE tensor `[batch, height, width, 3]`.
    Image(Img),
    /// A LATENT dict; the recipe holds the decoded pixel size.
    Latent(Img),
    /// A MASK tensor `[batch, height, width]`.
    Mask(Img),
    /// Anything else (MODEL, CLIP, CONDITIONING, ...), known by its type name.
    Other(String),
}

impl SimValue {
    /// The image recipe of an image-like value.
    pub fn img(&self) -> Option<&Img> {
        match self {
            SimValue::Image(i) | SimValue::Latent(i) | SimValue::Mask(i) => Some(i),
            SimValue::Other(_) => None,
        }
    }

    /// Python's `str()` of the value, as ComfyUI's `format_value` puts it into `current_inputs`.
    pub fn python_str(&self) -> String {
        match self {
            SimValue::Image(i) => i.image_tensor_repr(),
            SimValue::Mask(i) => i.mask_tensor_repr(),
            SimValue::Latent(i) => i.latent_repr(),
            SimValue::Other(kind) => {
                let class = match kind.as_str() {
                    "MODEL" => "comfy.model_patcher.ModelPatcher",
                    "CLIP" => "comfy.sd.CLIP",
                    "VAE" => "comfy.sd.VAE",
                    other => return format!("<simulated {other} object>"),
                };
                format!("<{class} object at 0x7f5e3c2a1b90>")
            }
        }
    }
}

/// One resolved input of a node call.
#[derive(Debug, Clone)]
pub(crate) enum Input {
    /// The value of a linked output slot.
    Link(SimValue),
    /// A literal widget value (already converted by validation).
    Widget(Value),
}

/// Where an output node wants its images written.
#[derive(Debug, Clone)]
pub(crate) struct SaveRequest {
    /// `output` for SaveImage, `temp` for PreviewImage.
    pub dir: Dir,
    /// The filename prefix after ComfyUI's `prefix_append`.
    pub prefix: String,
    /// The images to write, one file per batch item.
    pub images: Img,
}

/// What a node produced.
#[derive(Debug, Clone)]
pub(crate) struct NodeResult {
    /// One value per declared output slot.
    pub outputs: Vec<SimValue>,
    /// Files to write (output nodes only).
    pub save: Option<SaveRequest>,
}

/// An exception raised by a node function, with its traceback frames.
#[derive(Debug, Clone)]
pub(crate) struct NodeError {
    /// The exception.
    pub exc: PyErr,
    /// `traceback.format_tb` of it.
    pub frames: Vec<String>,
}

impl NodeError {
    fn in_node(exc: PyErr, node_frame: String) -> Self {
        let mut frames = traceback::execution_frames();
        frames.push(node_frame);
        Self { exc, frames }
    }

    /// The error for a class the test asked to fail (`Faults::fail_node_class`).
    pub fn injected(class: &str, message: &str) -> Self {
        Self::in_node(
            PyErr::new("Exception", message),
            traceback::frame(
                "comfyui-mcp-simulator/faults.py",
                1,
                class,
                "raise Exception(message)  # injected by the simulator's fail_node_class fault",
                None,
            ),
        )
    }
}

/// A node call: its class and resolved inputs (in the order of the node's `inputs`).
pub(crate) struct NodeCall<'a> {
    /// The class name.
    pub class: &'a str,
    /// Inputs by name.
    pub inputs: &'a [(String, Input)],
    /// The catalog, for declared output types.
    pub catalog: &'a Catalog,
}

impl NodeCall<'_> {
    fn input(&self, name: &str) -> Option<&Input> {
        self.inputs.iter().find(|(n, _)| n == name).map(|(_, i)| i)
    }

    fn widget(&self, name: &str) -> Option<&Value> {
        match self.input(name)? {
            Input::Widget(v) => Some(v),
            Input::Link(_) => None,
        }
    }

    fn int(&self, name: &str, default: i64) -> i64 {
        self.widget(name)
            .and_then(pyval::as_num)
            .map(|n| match n {
                pyval::PyNum::Int(i) => i.clamp(i64::MIN as i128, i64::MAX as i128) as i64,
                pyval::PyNum::Float(f) => f as i64,
            })
            .unwrap_or(default)
    }

    fn float(&self, name: &str, default: f64) -> f64 {
        self.widget(name)
            .and_then(pyval::as_num)
            .map(|n| match n {
                pyval::PyNum::Int(i) => i as f64,
                pyval::PyNum::Float(f) => f,
            })
            .unwrap_or(default)
    }

    fn text(&self, name: &str) -> Option<String> {
        self.widget(name).map(pyval::py_str)
    }

    fn linked_img(&self, name: &str) -> Option<Img> {
        match self.input(name)? {
            Input::Link(v) => v.img().cloned(),
            Input::Widget(_) => None,
        }
    }

    /// The first image-like linked input, in input order.
    fn first_img(&self) -> Option<Img> {
        self.inputs.iter().find_map(|(_, i)| match i {
            Input::Link(v) => v.img().cloned(),
            Input::Widget(_) => None,
        })
    }

    fn size(&self) -> (u32, u32, u32) {
        (
            clamp_dim(self.int("width", 512)),
            clamp_dim(self.int("height", 512)),
            clamp_dim(self.int("batch_size", 1)),
        )
    }
}

fn clamp_dim(v: i64) -> u32 {
    v.clamp(1, 1 << 16) as u32
}

/// Python's `round()` (half to even) for sizes.
fn py_round(v: f64) -> i64 {
    let r = v.round();
    if (v - v.trunc()).abs() == 0.5 && (r as i64) % 2 != 0 {
        (r - v.signum()) as i64
    } else {
        r as i64
    }
}

/// How many progress steps a sampler node reports, if the class is a sampler.
pub(crate) fn sampler_steps(class: &str, inputs: &[(String, Input)]) -> Option<u32> {
    let get = |name: &str| {
        inputs
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, i)| match i {
                Input::Widget(v) => v.as_i64(),
                Input::Link(_) => None,
            })
    };
    match class {
        "KSampler" => Some(get("steps").unwrap_or(20).clamp(0, 100_000) as u32),
        "KSamplerAdvanced" => {
            let steps = get("steps").unwrap_or(20);
            let start = get("start_at_step").unwrap_or(0);
            let end = get("end_at_step").unwrap_or(steps).min(steps);
            Some((end - start).clamp(0, 100_000) as u32)
        }
        _ => None,
    }
}

/// Simulates one node call. `read_input` returns the bytes of a file in `input/` (or another
/// root for annotated names).
pub(crate) fn run(
    call: &NodeCall,
    read_input: &dyn Fn(Dir, &str) -> Option<Bytes>,
) -> Result<NodeResult, NodeError> {
    let image = |img: Img| Ok(single(SimValue::Image(img)));
    let latent = |img: Img| Ok(single(SimValue::Latent(img)));
    match call.class {
        "EmptyImage" => {
            let (w, h, b) = call.size();
            let c = call.int("color", 0).clamp(0, 0xff_ffff) as u32;
            image(Img::solid(
                w,
                h,
                b,
                [(c >> 16) as u8, (c >> 8) as u8, c as u8],
            ))
        }
        "EmptyLatentImage" | "EmptySD3LatentImage" => {
            let (w, h, b) = call.size();
            latent(Img::solid(latent_dim(w), latent_dim(h), b, [128, 128, 128]))
        }
        "KSampler" | "KSamplerAdvanced" => {
            let seed_name = if call.class == "KSampler" {
                "seed"
            } else {
                "noise_seed"
            };
            let seed = call.widget(seed_name).and_then(Value::as_u64).unwrap_or(0);
            let src = call
                .linked_img("latent_image")
                .unwrap_or_else(|| Img::pattern(512, 512, 1, 0));
            latent(Img::pattern(src.width, src.height, src.batch, seed))
        }
        "VAEDecode" | "VAEDecodeTiled" => match call.linked_img("samples") {
            Some(img) => image(img),
            None => Ok(generic(call)),
        },
        "VAEEncode" | "VAEEncodeTiled" => match call.linked_img("pixels") {
            Some(img) => {
                let (w, h) = (latent_dim(img.width), latent_dim(img.height));
                latent(img.resized(w, h))
            }
            None => Ok(generic(call)),
        },
        "ImageInvert" => match call.linked_img("image") {
            Some(img) => image(img.with_op(Op::Invert)),
            None => Ok(generic(call)),
        },
        "ImageScale" | "LatentUpscale" => scale_to(call),
        "ImageScaleBy" | "LatentUpscaleBy" => {
            let name = if call.class == "ImageScaleBy" {
                "image"
            } else {
                "samples"
            };
            let Some(img) = call.linked_img(name) else {
                return Ok(generic(call));
            };
            let s = call.float("scale_by", 1.0);
            let (w, h) = scaled(call.class, img.width, img.height, s);
            Ok(single(wrap_like(call.class, img.resized(w, h))))
        }
        "ImageScaleToTotalPixels" => {
            let Some(img) = call.linked_img("image") else {
                return Ok(generic(call));
            };
            let total = (call.float("megapixels", 1.0) * 1024.0 * 1024.0).trunc();
            let s = (total / (f64::from(img.width) * f64::from(img.height))).sqrt();
            let w = clamp_dim(py_round(f64::from(img.width) * s));
            let h = clamp_dim(py_round(f64::from(img.height) * s));
            image(img.resized(w, h))
        }
        "ImageCrop" => {
            let Some(img) = call.linked_img("image") else {
                return Ok(generic(call));
            };
            let x = call.int("x", 0).clamp(0, i64::from(img.width) - 1);
            let y = call.int("y", 0).clamp(0, i64::from(img.height) - 1);
            let w = (call.int("width", 512) + x).min(i64::from(img.width)) - x;
            let h = (call.int("height", 512) + y).min(i64::from(img.height)) - y;
            image(img.resized(clamp_dim(w), clamp_dim(h)))
        }
        "RepeatImageBatch" => {
            let Some(mut img) = call.linked_img("image") else {
                return Ok(generic(call));
            };
            img.batch = clamp_dim(i64::from(img.batch) * call.int("amount", 1));
            image(img)
        }
        "ImageBatch" => {
            let (Some(mut a), Some(b)) = (call.linked_img("image1"), call.linked_img("image2"))
            else {
                return Ok(generic(call));
            };
            a.batch = a.batch.saturating_add(b.batch);
            image(a)
        }
        "ImageToMask" => image_to_mask(call),
        "MaskToImage" => match call.linked_img("mask") {
            Some(img) => image(img),
            None => Ok(generic(call)),
        },
        "LoadImage" | "LoadImageMask" | "LoadImageOutput" => load_image(call, read_input),
        "SaveImage" => {
            let prefix = call
                .text("filename_prefix")
                .unwrap_or_else(|| "ComfyUI".into());
            save(call, Dir::Output, prefix)
        }
        "PreviewImage" => save(call, Dir::Temp, format!("ComfyUI_temp_{}", random_suffix())),
        _ => Ok(generic(call)),
    }
}

fn single(v: SimValue) -> NodeResult {
    NodeResult {
        outputs: vec![v],
        save: None,
    }
}

/// Pixel size after a round trip through a latent (multiples of 8).
fn latent_dim(v: u32) -> u32 {
    ((v / 8) * 8).max(8)
}

fn wrap_like(class: &str, img: Img) -> SimValue {
    if class.starts_with("Latent") {
        SimValue::Latent(img)
    } else {
        SimValue::Image(img)
    }
}

fn scaled(class: &str, w: u32, h: u32, s: f64) -> (u32, u32) {
    if class.starts_with("Latent") {
        let lw = py_round(f64::from(w / 8) * s).max(1) * 8;
        let lh = py_round(f64::from(h / 8) * s).max(1) * 8;
        (clamp_dim(lw), clamp_dim(lh))
    } else {
        (
            clamp_dim(py_round(f64::from(w) * s)),
            clamp_dim(py_round(f64::from(h) * s)),
        )
    }
}

/// `ImageScale` / `LatentUpscale`: a target size where 0 keeps the aspect ratio.
fn scale_to(call: &NodeCall) -> Result<NodeResult, NodeError> {
    let is_latent = call.class == "LatentUpscale";
    let name = if is_latent { "samples" } else { "image" };
    let Some(img) = call.linked_img(name) else {
        return Ok(generic(call));
    };
    let (mut w, mut h) = (call.int("width", 0), call.int("height", 0));
    if w == 0 && h == 0 {
        return Ok(single(wrap_like(call.class, img)));
    }
    let (iw, ih) = (f64::from(img.width), f64::from(img.height));
    if is_latent {
        if w == 0 {
            h = h.max(64);
            w = py_round(iw * h as f64 / ih).max(64);
        } else if h == 0 {
            w = w.max(64);
            h = py_round(ih * w as f64 / iw).max(64);
        } else {
            w = w.max(64);
            h = h.max(64);
        }
        w = (w / 8) * 8;
        h = (h / 8) * 8;
    } else if w == 0 {
        w = py_round(iw * h as f64 / ih).max(1);
    } else if h == 0 {
        h = py_round(ih * w as f64 / iw).max(1);
    }
    Ok(single(wrap_like(
        call.class,
        img.resized(clamp_dim(w), clamp_dim(h)),
    )))
}

fn image_to_mask(call: &NodeCall) -> Result<NodeResult, NodeError> {
    let Some(img) = call.linked_img("image") else {
        return Ok(generic(call));
    };
    let channel = call.text("channel").unwrap_or_default();
    let index = ["red", "green", "blue", "alpha"]
        .iter()
        .position(|c| *c == channel)
        .unwrap_or(0);
    if index >= 3 {
        return Err(NodeError::in_node(
            PyErr::new(
                "IndexError",
                format!("index {index} is out of bounds for dimension 3 with size 3"),
            ),
            traceback::image_to_mask(),
        ));
    }
    Ok(single(SimValue::Mask(
        img.with_op(Op::Channel(index as u8)),
    )))
}

fn load_image(
    call: &NodeCall,
    read_input: &dyn Fn(Dir, &str) -> Option<Bytes>,
) -> Result<NodeResult, NodeError> {
    let name = call.text("image").unwrap_or_default();
    let (bare, annotated) = split_annotation(&name);
    let default_dir = if call.class == "LoadImageOutput" {
        Dir::Output
    } else {
        Dir::Input
    };
    let dir = annotated.unwrap_or(default_dir);
    let shown = format!("{}/{bare}", dir.as_type());
    let node_frame = traceback::frame(
        "ComfyUI/nodes.py",
        1668,
        "load_image",
        "img = node_helpers.pillow(Image.open, image_path)",
        Some("node_helpers.pillow"),
    );
    let bytes = join("", bare)
        .and_then(|p| read_input(dir, &p))
        .ok_or_else(|| {
            NodeError::in_node(
                PyErr::new(
                    "FileNotFoundError",
                    format!(
                        "[Errno 2] No such file or directory: {}",
                        pyval::repr_str(&shown)
                    ),
                ),
                node_frame.clone(),
            )
        })?;
    let pixels = images::decode(&bytes).map_err(|_| {
        NodeError::in_node(
            PyErr::new(
                "PIL.UnidentifiedImageError",
                format!("cannot identify image file {}", pyval::repr_str(&shown)),
            ),
            node_frame,
        )
    })?;
    let (w, h) = (pixels.width.max(1), pixels.height.max(1));
    let img = Img {
        width: w,
        height: h,
        batch: 1,
        source: Source::Pixels(Arc::new(pixels)),
        ops: Vec::new(),
    };
    let mask = Img::solid(w, h, 1, [0, 0, 0]);
    let outputs = if call.class == "LoadImageMask" {
        vec![SimValue::Mask(mask)]
    } else {
        vec![SimValue::Image(img), SimValue::Mask(mask)]
    };
    Ok(NodeResult {
        outputs,
        save: None,
    })
}

fn save(call: &NodeCall, dir: Dir, prefix: String) -> Result<NodeResult, NodeError> {
    let images = call
        .linked_img("images")
        .unwrap_or_else(|| Img::solid(64, 64, 1, [128, 128, 128]));
    Ok(NodeResult {
        outputs: Vec::new(),
        save: Some(SaveRequest {
            dir,
            prefix,
            images,
        }),
    })
}

/// PreviewImage's random prefix: five letters from ComfyUI's (odd) alphabet.
fn random_suffix() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstupvxyz";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// Unknown classes: each declared output gets the first image-like input (re-typed), or a
/// grey placeholder sized by `width`/`height`/`batch_size` widgets; other types are opaque.
fn generic(call: &NodeCall) -> NodeResult {
    let fallback = || {
        let (w, h, b) = call.size();
        Img::solid(w, h, b, [128, 128, 128])
    };
    let outputs = call
        .catalog
        .outputs(call.class)
        .iter()
        .map(|t| {
            let kind = t.as_str().unwrap_or("COMBO");
            match kind {
                "IMAGE" => SimValue::Image(call.first_img().unwrap_or_else(fallback)),
                "LATENT" => SimValue::Latent(call.first_img().unwrap_or_else(fallback)),
                "MASK" => SimValue::Mask(call.first_img().unwrap_or_else(fallback)),
                other => SimValue::Other(other.to_string()),
            }
        })
        .collect();
    NodeResult {
        outputs,
        save: None,
    }
}

/// The folder and base name `SaveImage` writes to for `prefix` (ComfyUI's
/// `get_save_image_path`), or the exception it raises for a prefix outside the root.
pub(crate) fn save_location(
    prefix: &str,
    width: u32,
    height: u32,
) -> Result<(String, String), NodeError> {
    let prefix = if prefix.contains('%') {
        expand_prefix(prefix, width, height)
    } else {
        prefix.to_string()
    };
    let Some(mut segments) = normalize(&prefix) else {
        let message = format!(
            "**** ERROR: Saving image outside the output folder is not allowed.\n full_output_folder: {prefix}\n         output_dir: output\n         commonpath: /"
        );
        return Err(NodeError::in_node(
            PyErr::new("Exception", message),
            traceback::frame(
                "ComfyUI/folder_paths.py",
                474,
                "get_save_image_path",
                "raise Exception(err)",
                None,
            ),
        ));
    };
    let basename = segments.pop().unwrap_or_else(|| ".".to_string());
    Ok((segments.join("/"), basename))
}

/// `%width%`, `%height%` and `%year%`...`%second%` (UTC) in a filename prefix.
fn expand_prefix(prefix: &str, width: u32, height: u32) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    prefix
        .replace("%width%", &width.to_string())
        .replace("%height%", &height.to_string())
        .replace("%year%", &y.to_string())
        .replace("%month%", &format!("{mo:02}"))
        .replace("%day%", &format!("{d:02}"))
        .replace("%hour%", &format!("{:02}", rem / 3600))
        .replace("%minute%", &format!("{:02}", rem / 60 % 60))
        .replace("%second%", &format!("{:02}", rem % 60))
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call_with<'a>(
        class: &'a str,
        inputs: &'a [(String, Input)],
        catalog: &'a Catalog,
    ) -> NodeCall<'a> {
        NodeCall {
            class,
            inputs,
            catalog,
        }
    }

    fn no_files(_: Dir, _: &str) -> Option<Bytes> {
        None
    }

    #[test]
    fn sizes_propagate() {
        let catalog = Catalog::bundled().unwrap();
        let w = |v: Value| Input::Widget(v);
        let empty = [
            ("width".to_string(), w(json!(100))),
            ("height".to_string(), w(json!(64))),
            ("batch_size".to_string(), w(json!(2))),
        ];
        let out = run(&call_with("EmptyLatentImage", &empty, &catalog), &no_files).unwrap();
        let lat = out.outputs[0].img().unwrap().clone();
        assert_eq!((lat.width, lat.height, lat.batch), (96, 64, 2));
        let scale = [
            ("image".to_string(), Input::Link(SimValue::Image(lat))),
            ("upscale_method".to_string(), w(json!("bilinear"))),
            ("width".to_string(), w(json!(48))),
            ("height".to_string(), w(json!(0))),
            ("crop".to_string(), w(json!("disabled"))),
        ];
        let out = run(&call_with("ImageScale", &scale, &catalog), &no_files).unwrap();
        let img = out.outputs[0].img().unwrap();
        assert_eq!((img.width, img.height), (48, 32));
    }

    #[test]
    fn image_to_mask_alpha_raises_like_comfyui() {
        let catalog = Catalog::bundled().unwrap();
        let inputs = [
            (
                "image".to_string(),
                Input::Link(SimValue::Image(Img::solid(4, 4, 1, [0, 0, 0]))),
            ),
            ("channel".to_string(), Input::Widget(json!("alpha"))),
        ];
        let err = run(&call_with("ImageToMask", &inputs, &catalog), &no_files).unwrap_err();
        assert_eq!(err.exc.type_name, "IndexError");
        assert_eq!(
            err.exc.message,
            "index 3 is out of bounds for dimension 3 with size 3"
        );
        assert_eq!(err.frames.len(), 5);
    }

    #[test]
    fn save_locations() {
        assert_eq!(
            save_location("mcp_test/invert", 1, 1).unwrap(),
            ("mcp_test".into(), "invert".into())
        );
        assert_eq!(
            save_location("ComfyUI", 1, 1).unwrap(),
            (String::new(), "ComfyUI".into())
        );
        assert_eq!(
            save_location("a_%width%x%height%", 8, 9).unwrap().1,
            "a_8x9"
        );
        assert!(save_location("../escape", 1, 1).is_err());
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(py_round(2.5), 2);
        assert_eq!(py_round(3.5), 4);
    }
}
