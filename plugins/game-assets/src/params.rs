//! The parameters every game-assets template accepts.
//!
//! Each parameter is declared once (name, type, default, bounds, choices). The same
//! declaration becomes the WIT `param-spec` the host validates against and publishes as
//! JSON Schema, and drives the pack's own defensive decoding in `build`. The host has
//! already checked everything declared here, so decoding errors mean a host bug or a
//! hand-made call; they come back as `invalid-params`, never as a panic.
//!
//! Invariant: `Settings::decode` either returns settings within every declared bound
//! (and a concrete seed >= 0) or an `invalid-params` error listing every problem found.

use crate::comfy::{SAMPLER_ALIASES, SAMPLERS, SCHEDULERS};
use crate::comfyui::workflow::types::{
    Alias, BuildError, FieldError, Param, ParamSpec, Value, ValueKind,
};
use crate::templates::{Input, Post, TemplateDef};
use imaging::palette;

/// Largest seed accepted: 2^53 - 1, the largest integer every JSON client holds exactly.
pub const MAX_SEED: i64 = (1 << 53) - 1;

/// A text parameter.
pub struct TextDecl {
    /// Name callers use.
    pub name: &'static str,
    /// One line for humans and agents.
    pub description: &'static str,
    /// Whether callers must give it (then it has no default and must not be blank).
    pub required: bool,
    /// Value used when omitted; `None` means "absent" (only for optional parameters).
    pub default: Option<&'static str>,
    /// Allowed values; empty means any text.
    pub choices: &'static [&'static str],
    /// Other accepted spellings of choices: `(alias, choice)`.
    pub aliases: &'static [(&'static str, &'static str)],
    /// Typical values shown to callers.
    pub examples: &'static [&'static str],
}

/// An integer parameter with inclusive bounds.
pub struct IntDecl {
    /// Name callers use.
    pub name: &'static str,
    /// One line for humans and agents.
    pub description: &'static str,
    /// Value used when omitted.
    pub default: i64,
    /// Inclusive lower bound.
    pub min: i64,
    /// Inclusive upper bound.
    pub max: i64,
    /// Values must be a multiple of this, if set.
    pub multiple_of: Option<u32>,
    /// Typical values shown to callers.
    pub examples: &'static [i64],
}

/// A boolean parameter.
pub struct BoolDecl {
    /// Name callers use.
    pub name: &'static str,
    /// One line for humans and agents.
    pub description: &'static str,
    /// Value used when omitted.
    pub default: bool,
}

/// A required image or mask parameter (uploaded by the host; no default).
pub struct ImageDecl {
    /// Name callers use.
    pub name: &'static str,
    /// One line for humans and agents.
    pub description: &'static str,
    /// `image` or `mask`.
    pub kind: ImageKind,
}

/// Which of the two upload kinds an [`ImageDecl`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// An RGB(A) picture, loaded with `LoadImage`.
    Image,
    /// A single-channel mask (white = repaint), loaded with `LoadImageMask` (red).
    Mask,
}

/// A real-number parameter with inclusive bounds.
pub struct NumberDecl {
    /// Name callers use.
    pub name: &'static str,
    /// One line for humans and agents.
    pub description: &'static str,
    /// Value used when omitted.
    pub default: f64,
    /// Inclusive lower bound.
    pub min: f64,
    /// Inclusive upper bound.
    pub max: f64,
}

/// `prompt`; each template replaces the description with its own hint.
pub const PROMPT: TextDecl = TextDecl {
    name: "prompt",
    description: "What to generate.",
    required: true,
    default: None,
    choices: &[],
    aliases: &[],
    examples: &[],
};

/// `negative_prompt`, appended to the template's own negative prompt.
pub const NEGATIVE_PROMPT: TextDecl = TextDecl {
    name: "negative_prompt",
    description: "What to avoid; appended to the template's built-in negative prompt.",
    required: false,
    default: Some(""),
    choices: &[],
    aliases: &[],
    examples: &["text, watermark", "dark, gloomy"],
};

/// `width`; the default is the template's.
pub const WIDTH: IntDecl = IntDecl {
    name: "width",
    description: "Output width in pixels (multiple of 8).",
    default: 512,
    min: 64,
    max: 2048,
    multiple_of: Some(8),
    examples: &[],
};

/// `height`; the default is the template's.
pub const HEIGHT: IntDecl = IntDecl {
    name: "height",
    description: "Output height in pixels (multiple of 8).",
    default: 512,
    min: 64,
    max: 2048,
    multiple_of: Some(8),
    examples: &[],
};

/// `steps`.
pub const STEPS: IntDecl = IntDecl {
    name: "steps",
    description: "Number of sampling steps; more is slower and usually finer.",
    default: 20,
    min: 1,
    max: 150,
    multiple_of: None,
    examples: &[],
};

/// `cfg_scale`.
pub const CFG_SCALE: NumberDecl = NumberDecl {
    name: "cfg_scale",
    description: "Classifier-free guidance: how closely the image follows the prompt.",
    default: 7.0,
    min: 1.0,
    max: 30.0,
};

/// `seed`; -1 is accepted from callers and made concrete by the host before `build`.
pub const SEED: IntDecl = IntDecl {
    name: "seed",
    description: "Random seed for reproducible results; -1 = random.",
    default: -1,
    min: -1,
    max: MAX_SEED,
    multiple_of: None,
    examples: &[],
};

/// `sampler`.
pub const SAMPLER: TextDecl = TextDecl {
    name: "sampler",
    description: "Sampling method (ComfyUI KSampler sampler_name).",
    required: false,
    default: Some("euler"),
    choices: SAMPLERS,
    aliases: SAMPLER_ALIASES,
    examples: &["euler", "dpmpp_2m"],
};

/// `scheduler`.
pub const SCHEDULER: TextDecl = TextDecl {
    name: "scheduler",
    description: "Noise schedule (ComfyUI KSampler scheduler).",
    required: false,
    default: Some("normal"),
    choices: SCHEDULERS,
    aliases: &[],
    examples: &[],
};

/// `denoise`.
pub const DENOISE: NumberDecl = NumberDecl {
    name: "denoise",
    description: "Denoising strength; 1.0 generates from pure noise.",
    default: 1.0,
    min: 0.0,
    max: 1.0,
};

/// `batch_size`.
pub const BATCH_SIZE: IntDecl = IntDecl {
    name: "batch_size",
    description: "Number of images to generate in one job.",
    default: 1,
    min: 1,
    max: 4,
    multiple_of: None,
    examples: &[],
};

/// `checkpoint`: optional, no default (absent = the first installed checkpoint).
pub const CHECKPOINT: TextDecl = TextDecl {
    name: "checkpoint",
    description: "Checkpoint file to load (as listed in ComfyUI models/checkpoints); \
                  default: the first installed one.",
    required: false,
    default: None,
    choices: &[],
    aliases: &[],
    examples: &[],
};

/// `denoise` of `image-variation`: how far the result may drift from the input.
pub const VARIATION_DENOISE: NumberDecl = NumberDecl {
    name: "denoise",
    description: "How much of the input image is repainted: 0 keeps it, 1 ignores it.",
    default: 0.6,
    min: 0.0,
    max: 1.0,
};

/// `denoise` of `inpaint`: how much of the masked region is repainted.
pub const INPAINT_DENOISE: NumberDecl = NumberDecl {
    name: "denoise",
    description: "Denoising strength inside the mask: 1.0 repaints it from scratch, lower \
                  values keep more of what is there.",
    default: 1.0,
    min: 0.0,
    max: 1.0,
};

/// `image`: the input picture of `image-variation` and `inpaint`.
pub const IMAGE: ImageDecl = ImageDecl {
    name: "image",
    description: "The input image (PNG, JPEG or WebP). The result has its size, scaled to \
                  fit 64..2048 px per side and rounded down to multiples of 8.",
    kind: ImageKind::Image,
};

/// `mask`: the region `inpaint` repaints.
pub const MASK: ImageDecl = ImageDecl {
    name: "mask",
    description: "Mask of the region to repaint (white = repaint, black = keep); same size \
                  as `image`.",
    kind: ImageKind::Mask,
};

/// `grow_mask_by`: widening of the inpaint mask (ComfyUI `GrowMask`).
pub const GROW_MASK_BY: IntDecl = IntDecl {
    name: "grow_mask_by",
    description: "Widen the mask by this many pixels (tapered corners) so the repainted \
                  region blends into its surroundings; 0 = use the mask as it is.",
    default: 6,
    min: 0,
    max: 64,
    multiple_of: None,
    examples: &[],
};

/// `palette_colors`: pixel-art palette size.
pub const PALETTE_COLORS: IntDecl = IntDecl {
    name: "palette_colors",
    description: "Largest number of distinct colours in the delivered sprite (median-cut \
                  palette, every pixel mapped to its nearest entry).",
    default: 16,
    min: palette::MIN_COLOURS as i64,
    max: palette::MAX_COLOURS as i64,
    multiple_of: None,
    examples: &[4, 16, 32],
};

/// `dither`: ordered dithering for the pixel-art palette.
pub const DITHER: BoolDecl = BoolDecl {
    name: "dither",
    description: "Ordered (4x4 Bayer) dithering when mapping to the palette: smoother \
                  gradients, noisier flat areas.",
    default: false,
};

/// `transparent_background`: item-icon background removal.
pub const TRANSPARENT_BACKGROUND: BoolDecl = BoolDecl {
    name: "transparent_background",
    description: "Make the plain background transparent (RGBA PNG): flood fill from the \
                  border through the background colour, soft 1-px edge.",
    default: true,
};

/// Every parameter of one template, in the order they are listed.
struct Decls {
    prompt: TextDecl,
    negative_prompt: TextDecl,
    image: Option<ImageDecl>,
    mask: Option<ImageDecl>,
    /// Text-to-image templates only (image templates take the input's size).
    size: Option<(IntDecl, IntDecl)>,
    steps: IntDecl,
    cfg_scale: NumberDecl,
    seed: IntDecl,
    sampler: TextDecl,
    scheduler: TextDecl,
    denoise: NumberDecl,
    batch_size: IntDecl,
    checkpoint: TextDecl,
    grow_mask_by: Option<IntDecl>,
    palette: Option<(IntDecl, BoolDecl)>,
    transparent_background: Option<BoolDecl>,
}

impl Decls {
    fn for_template(def: &TemplateDef) -> Self {
        let text = def.input == Input::Text;
        Decls {
            prompt: TextDecl {
                description: def.prompt_hint,
                examples: def.prompt_examples,
                ..PROMPT
            },
            negative_prompt: NEGATIVE_PROMPT,
            image: (!text).then_some(IMAGE),
            mask: (def.input == Input::Inpaint).then_some(MASK),
            size: text.then(|| {
                (
                    IntDecl {
                        default: i64::from(def.default_width),
                        ..WIDTH
                    },
                    IntDecl {
                        default: i64::from(def.default_height),
                        ..HEIGHT
                    },
                )
            }),
            steps: STEPS,
            cfg_scale: CFG_SCALE,
            seed: SEED,
            sampler: SAMPLER,
            scheduler: SCHEDULER,
            denoise: match def.input {
                Input::Text => DENOISE,
                Input::Image => VARIATION_DENOISE,
                Input::Inpaint => INPAINT_DENOISE,
            },
            batch_size: BATCH_SIZE,
            checkpoint: CHECKPOINT,
            grow_mask_by: (def.input == Input::Inpaint).then_some(GROW_MASK_BY),
            palette: (def.post == Post::Palette).then_some((PALETTE_COLORS, DITHER)),
            transparent_background: (def.post == Post::Background)
                .then_some(TRANSPARENT_BACKGROUND),
        }
    }

    /// Every declared parameter, in listing order.
    fn each(&self) -> Vec<&dyn Declared> {
        let mut all: Vec<&dyn Declared> = vec![&self.prompt, &self.negative_prompt];
        all.extend(self.image.iter().map(|d| d as &dyn Declared));
        all.extend(self.mask.iter().map(|d| d as &dyn Declared));
        if let Some((w, h)) = &self.size {
            all.extend([w as &dyn Declared, h]);
        }
        all.extend([
            &self.steps as &dyn Declared,
            &self.cfg_scale,
            &self.seed,
            &self.sampler,
            &self.scheduler,
            &self.denoise,
            &self.batch_size,
            &self.checkpoint,
        ]);
        all.extend(self.grow_mask_by.iter().map(|d| d as &dyn Declared));
        if let Some((colours, dither)) = &self.palette {
            all.extend([colours as &dyn Declared, dither]);
        }
        all.extend(
            self.transparent_background
                .iter()
                .map(|d| d as &dyn Declared),
        );
        all
    }

    fn specs(&self) -> Vec<ParamSpec> {
        self.each().into_iter().map(Declared::spec).collect()
    }

    /// The declared names, in listing order (what a build checks names against,
    /// without building the specs).
    fn names(&self) -> Vec<&'static str> {
        self.each().into_iter().map(Declared::name).collect()
    }
}

/// One parameter declaration: its name and the spec `template-info` lists.
trait Declared {
    fn name(&self) -> &'static str;
    fn spec(&self) -> ParamSpec;
}

macro_rules! declared {
    ($($decl:ty),*) => {$(
        impl Declared for $decl {
            fn name(&self) -> &'static str {
                self.name
            }
            fn spec(&self) -> ParamSpec {
                <$decl>::spec(self)
            }
        }
    )*};
}

declared!(TextDecl, IntDecl, NumberDecl, BoolDecl, ImageDecl);

/// The parameter specs of a template, for its `template-info`.
pub fn specs(def: &TemplateDef) -> Vec<ParamSpec> {
    Decls::for_template(def).specs()
}

/// Decoded parameters of one build, all within their declared bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The caller's prompt, trimmed and non-empty.
    pub prompt: String,
    /// The caller's negative prompt, trimmed (may be empty).
    pub negative_prompt: String,
    /// Output width in pixels (64..=2048, multiple of 8); for image templates the input
    /// image's width (the graph derives the sampling size from it).
    pub width: u32,
    /// Output height, like `width`.
    pub height: u32,
    /// Sampling steps.
    pub steps: u32,
    /// Guidance scale.
    pub cfg_scale: f64,
    /// Concrete seed (0..=2^53-1).
    pub seed: u64,
    /// A KSampler sampler name (aliases resolved).
    pub sampler: String,
    /// A KSampler scheduler name.
    pub scheduler: String,
    /// Denoising strength.
    pub denoise: f64,
    /// Images per job.
    pub batch_size: u32,
    /// The requested checkpoint, if any (blank counts as absent).
    pub checkpoint: Option<String>,
    /// The input image (image templates only).
    pub image: Option<Upload>,
    /// The inpaint mask (`inpaint` only; same size as `image`).
    pub mask: Option<Upload>,
    /// Mask widening in pixels (`inpaint`; 0 elsewhere).
    pub grow_mask_by: u32,
    /// Palette size (`pixel-art`; the declared default elsewhere, unused).
    pub palette_colors: u32,
    /// Ordered dithering (`pixel-art`).
    pub dither: bool,
    /// Background removal (`item-icon`).
    pub transparent_background: bool,
}

/// An uploaded image as the host describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// The name `LoadImage` / `LoadImageMask` takes.
    pub name: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

impl Settings {
    /// Decodes and checks `params` for template `def`. Missing optional parameters take
    /// their defaults; unknown or repeated names, wrong types and out-of-range values are
    /// all reported together as `invalid-params`.
    pub fn decode(def: &TemplateDef, params: &[Param]) -> Result<Settings, BuildError> {
        let decls = Decls::for_template(def);
        let mut errors = Vec::new();
        let names = decls.names();
        for (i, p) in params.iter().enumerate() {
            if !names.contains(&p.name.as_str()) {
                let accepted = &names;
                errors.push(field_error(
                    &p.name,
                    format!("unknown parameter; accepted: {}", accepted.join(", ")),
                ));
            } else if params[..i].iter().any(|q| q.name == p.name) {
                errors.push(field_error(&p.name, "given more than once".to_string()));
            }
        }
        let given = |name: &str| params.iter().find(|p| p.name == name).map(|p| &p.value);
        let e = &mut errors;

        let prompt = decls.prompt.decode(given(decls.prompt.name), e);
        let negative_prompt = decls
            .negative_prompt
            .decode(given(decls.negative_prompt.name), e);
        let image = decls
            .image
            .as_ref()
            .and_then(|d| d.decode(given(d.name), e));
        let mask = decls.mask.as_ref().and_then(|d| d.decode(given(d.name), e));
        let (width, height) = match (&decls.size, &image) {
            (Some((w, h)), _) => (w.decode(given(w.name), e), h.decode(given(h.name), e)),
            (None, Some(img)) => (i64::from(img.width), i64::from(img.height)),
            (None, None) => (0, 0),
        };
        let steps = decls.steps.decode(given(decls.steps.name), e);
        let cfg_scale = decls.cfg_scale.decode(given(decls.cfg_scale.name), e);
        let seed = decls.seed.decode(given(decls.seed.name), e);
        let sampler = decls.sampler.decode(given(decls.sampler.name), e);
        let scheduler = decls.scheduler.decode(given(decls.scheduler.name), e);
        let denoise = decls.denoise.decode(given(decls.denoise.name), e);
        let batch_size = decls.batch_size.decode(given(decls.batch_size.name), e);
        let checkpoint = decls.checkpoint.decode(given(decls.checkpoint.name), e);
        let grow_mask_by = decls
            .grow_mask_by
            .as_ref()
            .map_or(0, |d| d.decode(given(d.name), e));
        let (palette_colors, dither) = decls
            .palette
            .as_ref()
            .map_or((PALETTE_COLORS.default, DITHER.default), |(c, d)| {
                (c.decode(given(c.name), e), d.decode(given(d.name), e))
            });
        let transparent_background = decls
            .transparent_background
            .as_ref()
            .is_some_and(|d| d.decode(given(d.name), e));
        if let (Some(img), Some(m)) = (&image, &mask)
            && (img.width, img.height) != (m.width, m.height)
        {
            e.push(field_error(
                MASK.name,
                format!(
                    "the mask is {}x{} but the image is {}x{}; they must have the same size",
                    m.width, m.height, img.width, img.height
                ),
            ));
        }

        // The host makes "-1 = random" concrete before `build`; a graph needs a real seed.
        let seed = u64::try_from(seed).unwrap_or_else(|_| {
            e.push(field_error(
                SEED.name,
                format!(
                    "seed must be concrete (0..={MAX_SEED}) when the graph is built, got {seed}; \
                     the host replaces -1 (random) before calling the pack"
                ),
            ));
            0
        });

        if !errors.is_empty() {
            return Err(BuildError::InvalidParams(errors));
        }
        Ok(Settings {
            prompt: prompt.unwrap_or_default(),
            negative_prompt: negative_prompt.unwrap_or_default(),
            width: in_u32(width),
            height: in_u32(height),
            steps: in_u32(steps),
            cfg_scale,
            seed,
            sampler: sampler.unwrap_or_default(),
            scheduler: scheduler.unwrap_or_default(),
            denoise,
            batch_size: in_u32(batch_size),
            checkpoint: checkpoint.filter(|c| !c.is_empty()),
            image,
            mask,
            grow_mask_by: in_u32(grow_mask_by),
            palette_colors: in_u32(palette_colors),
            dither,
            transparent_background,
        })
    }
}

/// Narrows a value already checked against positive `u32`-sized bounds.
fn in_u32(v: i64) -> u32 {
    u32::try_from(v).unwrap_or_default()
}

fn field_error(param: &str, message: String) -> FieldError {
    FieldError {
        param: param.to_string(),
        message,
    }
}

fn kind_name(value: &Value) -> &'static str {
    match value {
        Value::Text(_) => "text",
        Value::Integer(_) => "integer",
        Value::Number(_) => "number",
        Value::Boolean(_) => "boolean",
        Value::Image(_) => "image",
    }
}

impl TextDecl {
    fn spec(&self) -> ParamSpec {
        ParamSpec {
            name: self.name.to_string(),
            kind: ValueKind::Text,
            description: self.description.to_string(),
            required: self.required,
            default: self.default.map(|d| Value::Text(d.to_string())),
            minimum: None,
            maximum: None,
            multiple_of: None,
            choices: self.choices.iter().map(|c| c.to_string()).collect(),
            aliases: self
                .aliases
                .iter()
                .map(|(name, target)| Alias {
                    name: name.to_string(),
                    target: target.to_string(),
                })
                .collect(),
            examples: self
                .examples
                .iter()
                .map(|x| Value::Text(x.to_string()))
                .collect(),
        }
    }

    /// The trimmed text (alias resolved), the default, or `None` when absent / invalid.
    fn decode(&self, given: Option<&Value>, errors: &mut Vec<FieldError>) -> Option<String> {
        let text = match given {
            None if self.required => {
                errors.push(field_error(self.name, "is required".to_string()));
                return None;
            }
            None => return self.default.map(str::to_string),
            Some(Value::Text(t)) => t.trim(),
            Some(other) => {
                errors.push(field_error(
                    self.name,
                    format!("expected text, got {}", kind_name(other)),
                ));
                return None;
            }
        };
        let text = self
            .aliases
            .iter()
            .find(|(alias, _)| *alias == text)
            .map_or(text, |(_, target)| *target);
        if self.required && text.is_empty() {
            errors.push(field_error(self.name, "must not be empty".to_string()));
            return None;
        }
        if !self.choices.is_empty() && !self.choices.contains(&text) {
            errors.push(field_error(
                self.name,
                format!(
                    "`{text}` is not allowed; allowed: {}",
                    self.choices.join(", ")
                ),
            ));
            return None;
        }
        Some(text.to_string())
    }
}

impl IntDecl {
    fn spec(&self) -> ParamSpec {
        ParamSpec {
            name: self.name.to_string(),
            kind: ValueKind::Integer,
            description: self.description.to_string(),
            required: false,
            default: Some(Value::Integer(self.default)),
            minimum: Some(self.min as f64),
            maximum: Some(self.max as f64),
            multiple_of: self.multiple_of,
            choices: Vec::new(),
            aliases: Vec::new(),
            examples: self.examples.iter().map(|&x| Value::Integer(x)).collect(),
        }
    }

    /// The value if valid, else the default (after recording why).
    fn decode(&self, given: Option<&Value>, errors: &mut Vec<FieldError>) -> i64 {
        let value = match given {
            None => return self.default,
            Some(Value::Integer(i)) => *i,
            // A whole-valued number is an integer (the host normally converts it already).
            Some(Value::Number(n)) if n.fract() == 0.0 && n.abs() <= MAX_SEED as f64 => *n as i64,
            Some(other) => {
                errors.push(field_error(
                    self.name,
                    format!("expected an integer, got {}", kind_name(other)),
                ));
                return self.default;
            }
        };
        if value < self.min || value > self.max {
            errors.push(field_error(
                self.name,
                format!("must be between {} and {}, got {value}", self.min, self.max),
            ));
            return self.default;
        }
        if let Some(step) = self.multiple_of
            && value % i64::from(step) != 0
        {
            errors.push(field_error(
                self.name,
                format!("must be a multiple of {step}, got {value}"),
            ));
            return self.default;
        }
        value
    }
}

impl NumberDecl {
    fn spec(&self) -> ParamSpec {
        ParamSpec {
            name: self.name.to_string(),
            kind: ValueKind::Number,
            description: self.description.to_string(),
            required: false,
            default: Some(Value::Number(self.default)),
            minimum: Some(self.min),
            maximum: Some(self.max),
            multiple_of: None,
            choices: Vec::new(),
            aliases: Vec::new(),
            examples: Vec::new(),
        }
    }

    /// The value if valid (integers widened), else the default (after recording why).
    fn decode(&self, given: Option<&Value>, errors: &mut Vec<FieldError>) -> f64 {
        let value = match given {
            None => return self.default,
            Some(Value::Number(n)) => *n,
            Some(Value::Integer(i)) => *i as f64,
            Some(other) => {
                errors.push(field_error(
                    self.name,
                    format!("expected a number, got {}", kind_name(other)),
                ));
                return self.default;
            }
        };
        // `contains` is false for NaN, so a NaN is refused here too.
        if !(self.min..=self.max).contains(&value) {
            errors.push(field_error(
                self.name,
                format!("must be between {} and {}, got {value}", self.min, self.max),
            ));
            return self.default;
        }
        value
    }
}

impl BoolDecl {
    fn spec(&self) -> ParamSpec {
        ParamSpec {
            name: self.name.to_string(),
            kind: ValueKind::Boolean,
            description: self.description.to_string(),
            required: false,
            default: Some(Value::Boolean(self.default)),
            minimum: None,
            maximum: None,
            multiple_of: None,
            choices: Vec::new(),
            aliases: Vec::new(),
            examples: Vec::new(),
        }
    }

    /// The flag if given as a boolean, else the default (after recording why).
    fn decode(&self, given: Option<&Value>, errors: &mut Vec<FieldError>) -> bool {
        match given {
            None => self.default,
            Some(Value::Boolean(b)) => *b,
            Some(other) => {
                errors.push(field_error(
                    self.name,
                    format!("expected a boolean, got {}", kind_name(other)),
                ));
                self.default
            }
        }
    }
}

impl ImageDecl {
    fn spec(&self) -> ParamSpec {
        ParamSpec {
            name: self.name.to_string(),
            kind: match self.kind {
                ImageKind::Image => ValueKind::Image,
                ImageKind::Mask => ValueKind::Mask,
            },
            description: self.description.to_string(),
            required: true,
            default: None,
            minimum: None,
            maximum: None,
            multiple_of: None,
            choices: Vec::new(),
            aliases: Vec::new(),
            examples: Vec::new(),
        }
    }

    /// The upload, or `None` (after recording why) when absent or not an image.
    fn decode(&self, given: Option<&Value>, errors: &mut Vec<FieldError>) -> Option<Upload> {
        match given {
            None => {
                errors.push(field_error(self.name, "is required".to_string()));
                None
            }
            Some(Value::Image(img)) if img.name.trim().is_empty() => {
                errors.push(field_error(
                    self.name,
                    "the host gave an upload without a name".to_string(),
                ));
                None
            }
            Some(Value::Image(img)) if img.width == 0 || img.height == 0 => {
                errors.push(field_error(
                    self.name,
                    format!(
                        "the upload is {}x{}; an image has at least 1x1 pixels",
                        img.width, img.height
                    ),
                ));
                None
            }
            Some(Value::Image(img)) => Some(Upload {
                name: img.name.clone(),
                width: img.width,
                height: img.height,
            }),
            Some(other) => {
                errors.push(field_error(
                    self.name,
                    format!("expected an image, got {}", kind_name(other)),
                ));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::templates::find;

    fn text(name: &str, v: &str) -> Param {
        Param {
            name: name.to_string(),
            value: Value::Text(v.to_string()),
        }
    }

    fn int(name: &str, v: i64) -> Param {
        Param {
            name: name.to_string(),
            value: Value::Integer(v),
        }
    }

    fn num(name: &str, v: f64) -> Param {
        Param {
            name: name.to_string(),
            value: Value::Number(v),
        }
    }

    fn errors_of(result: Result<Settings, BuildError>) -> Vec<(String, String)> {
        match result {
            Err(BuildError::InvalidParams(errors)) => {
                errors.into_iter().map(|e| (e.param, e.message)).collect()
            }
            other => panic!("expected invalid-params, got {other:?}"),
        }
    }

    #[test]
    fn defaults_fill_everything_but_the_prompt_and_seed() {
        let def = find("environment-texture").expect("template exists");
        let s = Settings::decode(def, &[text("prompt", "  mossy stones "), int("seed", 7)])
            .expect("valid");
        assert_eq!(s.prompt, "mossy stones");
        assert_eq!(s.negative_prompt, "");
        assert_eq!((s.width, s.height), (1024, 1024));
        assert_eq!((s.steps, s.cfg_scale, s.seed), (20, 7.0, 7));
        assert_eq!(
            (s.sampler.as_str(), s.scheduler.as_str()),
            ("euler", "normal")
        );
        assert_eq!((s.denoise, s.batch_size, s.checkpoint), (1.0, 1, None));
    }

    #[test]
    fn aliases_resolve_and_integers_widen() {
        let def = find("item-icon").expect("template exists");
        let s = Settings::decode(
            def,
            &[
                text("prompt", "sword"),
                int("seed", 1),
                text("sampler", "dpm++"),
                int("cfg_scale", 8),
                num("steps", 30.0),
                text("checkpoint", " "),
            ],
        )
        .expect("valid");
        assert_eq!(s.sampler, "dpmpp_2m");
        assert_eq!(s.cfg_scale, 8.0);
        assert_eq!(s.steps, 30);
        assert_eq!(s.checkpoint, None, "a blank checkpoint counts as absent");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let def = find("pixel-art").expect("template exists");
        let errors = errors_of(Settings::decode(
            def,
            &[
                text("prompt", "   "),
                int("width", 100),
                int("height", 4096),
                num("cfg_scale", f64::NAN),
                text("sampler", "euler_fancy"),
                int("batch_size", 0),
                int("seed", -1),
                text("style", "x"),
                int("steps", 5),
                int("steps", 6),
                Param {
                    name: "denoise".to_string(),
                    value: Value::Boolean(true),
                },
            ],
        ));
        let params: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            params,
            [
                "style",
                "steps",
                "prompt",
                "width",
                "height",
                "cfg_scale",
                "sampler",
                "denoise",
                "batch_size",
                "seed"
            ]
        );
        let message = |p: &str| &errors.iter().find(|(q, _)| q == p).expect("present").1;
        assert!(message("width").contains("multiple of 8"));
        assert!(message("height").contains("between 64 and 2048"));
        assert!(message("sampler").contains("dpmpp_2m"), "lists the choices");
        assert!(message("seed").contains("-1"));
        assert!(message("style").contains("accepted: prompt, negative_prompt"));
        assert!(message("denoise").contains("expected a number, got boolean"));
    }

    #[test]
    fn each_template_declares_its_own_extras() {
        let names = |id: &str| -> Vec<String> {
            specs(find(id).expect("template"))
                .into_iter()
                .map(|s| s.name)
                .collect()
        };
        let icon = names("item-icon");
        assert_eq!(
            icon.last().map(String::as_str),
            Some("transparent_background")
        );
        assert!(!icon.contains(&"palette_colors".to_string()));
        let portrait = names("character-portrait");
        assert_eq!(portrait.len(), 12, "no extras: {portrait:?}");
        assert_eq!(
            names("environment-texture"),
            portrait,
            "seamless has no knobs"
        );
        assert_eq!(
            names("inpaint"),
            [
                "prompt",
                "negative_prompt",
                "image",
                "mask",
                "steps",
                "cfg_scale",
                "seed",
                "sampler",
                "scheduler",
                "denoise",
                "batch_size",
                "checkpoint",
                "grow_mask_by"
            ]
        );
        let variation = specs(find("image-variation").expect("template"));
        let image = variation.iter().find(|s| s.name == "image").expect("image");
        assert!(image.required && image.default.is_none() && image.examples.is_empty());
        assert!(matches!(image.kind, ValueKind::Image));
        let denoise = variation
            .iter()
            .find(|s| s.name == "denoise")
            .expect("denoise");
        assert!(matches!(denoise.default, Some(Value::Number(d)) if d == 0.6));
        let mask_kind = specs(find("inpaint").expect("template"))
            .into_iter()
            .find(|s| s.name == "mask")
            .map(|s| s.kind);
        assert!(matches!(mask_kind, Some(ValueKind::Mask)));
    }

    #[test]
    fn extras_are_decoded_and_checked() {
        let def = find("pixel-art").expect("template exists");
        let s = Settings::decode(
            def,
            &[
                text("prompt", "cat"),
                int("seed", 1),
                int("palette_colors", 2),
            ],
        )
        .expect("valid");
        assert_eq!((s.palette_colors, s.dither), (2, false));
        let errors = errors_of(Settings::decode(
            def,
            &[
                text("prompt", "cat"),
                int("seed", 1),
                int("palette_colors", 257),
                text("dither", "yes"),
            ],
        ));
        assert_eq!(
            errors,
            [
                (
                    "palette_colors".to_string(),
                    "must be between 2 and 256, got 257".to_string()
                ),
                (
                    "dither".to_string(),
                    "expected a boolean, got text".to_string()
                )
            ]
        );
        let icon = find("item-icon").expect("template exists");
        let s = Settings::decode(
            icon,
            &[
                text("prompt", "gem"),
                int("seed", 1),
                Param {
                    name: "transparent_background".to_string(),
                    value: Value::Boolean(false),
                },
            ],
        )
        .expect("valid");
        assert!(!s.transparent_background);
    }

    #[test]
    fn a_missing_prompt_is_refused() {
        let def = find("character-portrait").expect("template exists");
        let errors = errors_of(Settings::decode(def, &[int("seed", 3)]));
        assert_eq!(errors, [("prompt".to_string(), "is required".to_string())]);
    }

    #[test]
    fn specs_follow_the_contract() {
        let def = find("pixel-art").expect("template exists");
        let specs = specs(def);
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "prompt",
                "negative_prompt",
                "width",
                "height",
                "steps",
                "cfg_scale",
                "seed",
                "sampler",
                "scheduler",
                "denoise",
                "batch_size",
                "checkpoint",
                "palette_colors",
                "dither"
            ]
        );
        let by_name = |n: &str| specs.iter().find(|s| s.name == n).expect("declared");
        assert!(by_name("prompt").required && by_name("prompt").default.is_none());
        assert!(matches!(
            by_name("width").default,
            Some(Value::Integer(256))
        ));
        assert_eq!(by_name("width").multiple_of, Some(8));
        assert_eq!(by_name("seed").minimum, Some(-1.0));
        assert_eq!(by_name("seed").maximum, Some(9_007_199_254_740_991.0));
        assert!(by_name("checkpoint").default.is_none() && !by_name("checkpoint").required);
        assert!(matches!(
            by_name("palette_colors").default,
            Some(Value::Integer(16))
        ));
        assert_eq!(
            (
                by_name("palette_colors").minimum,
                by_name("palette_colors").maximum
            ),
            (Some(2.0), Some(256.0))
        );
        assert!(matches!(
            by_name("dither").default,
            Some(Value::Boolean(false))
        ));
        assert!(matches!(by_name("dither").kind, ValueKind::Boolean));
        assert_eq!(by_name("prompt").examples.len(), 2);
        for alias in &by_name("sampler").aliases {
            assert!(
                by_name("sampler").choices.contains(&alias.target),
                "{}",
                alias.target
            );
        }
        for spec in &specs {
            if let Some(Value::Text(d)) = &spec.default
                && !spec.choices.is_empty()
            {
                assert!(
                    spec.choices.contains(d),
                    "default of {} is a choice",
                    spec.name
                );
            }
        }
    }
}
