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
use crate::templates::TemplateDef;

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
};

/// `negative_prompt`, appended to the template's own negative prompt.
pub const NEGATIVE_PROMPT: TextDecl = TextDecl {
    name: "negative_prompt",
    description: "What to avoid; appended to the template's built-in negative prompt.",
    required: false,
    default: Some(""),
    choices: &[],
    aliases: &[],
};

/// `width`; the default is the template's.
pub const WIDTH: IntDecl = IntDecl {
    name: "width",
    description: "Output width in pixels (multiple of 8).",
    default: 512,
    min: 64,
    max: 2048,
    multiple_of: Some(8),
};

/// `height`; the default is the template's.
pub const HEIGHT: IntDecl = IntDecl {
    name: "height",
    description: "Output height in pixels (multiple of 8).",
    default: 512,
    min: 64,
    max: 2048,
    multiple_of: Some(8),
};

/// `steps`.
pub const STEPS: IntDecl = IntDecl {
    name: "steps",
    description: "Number of sampling steps; more is slower and usually finer.",
    default: 20,
    min: 1,
    max: 150,
    multiple_of: None,
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
};

/// `sampler`.
pub const SAMPLER: TextDecl = TextDecl {
    name: "sampler",
    description: "Sampling method (ComfyUI KSampler sampler_name).",
    required: false,
    default: Some("euler"),
    choices: SAMPLERS,
    aliases: SAMPLER_ALIASES,
};

/// `scheduler`.
pub const SCHEDULER: TextDecl = TextDecl {
    name: "scheduler",
    description: "Noise schedule (ComfyUI KSampler scheduler).",
    required: false,
    default: Some("normal"),
    choices: SCHEDULERS,
    aliases: &[],
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
};

/// Every parameter of one template, in the order they are listed.
struct Decls {
    prompt: TextDecl,
    negative_prompt: TextDecl,
    width: IntDecl,
    height: IntDecl,
    steps: IntDecl,
    cfg_scale: NumberDecl,
    seed: IntDecl,
    sampler: TextDecl,
    scheduler: TextDecl,
    denoise: NumberDecl,
    batch_size: IntDecl,
    checkpoint: TextDecl,
}

impl Decls {
    fn for_template(def: &TemplateDef) -> Self {
        Decls {
            prompt: TextDecl {
                description: def.prompt_hint,
                ..PROMPT
            },
            negative_prompt: NEGATIVE_PROMPT,
            width: IntDecl {
                default: i64::from(def.default_width),
                ..WIDTH
            },
            height: IntDecl {
                default: i64::from(def.default_height),
                ..HEIGHT
            },
            steps: STEPS,
            cfg_scale: CFG_SCALE,
            seed: SEED,
            sampler: SAMPLER,
            scheduler: SCHEDULER,
            denoise: DENOISE,
            batch_size: BATCH_SIZE,
            checkpoint: CHECKPOINT,
        }
    }

    fn specs(&self) -> Vec<ParamSpec> {
        vec![
            self.prompt.spec(),
            self.negative_prompt.spec(),
            self.width.spec(),
            self.height.spec(),
            self.steps.spec(),
            self.cfg_scale.spec(),
            self.seed.spec(),
            self.sampler.spec(),
            self.scheduler.spec(),
            self.denoise.spec(),
            self.batch_size.spec(),
            self.checkpoint.spec(),
        ]
    }
}

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
    /// Output width in pixels (64..=2048, multiple of 8).
    pub width: u32,
    /// Output height in pixels (64..=2048, multiple of 8).
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
}

impl Settings {
    /// Decodes and checks `params` for template `def`. Missing optional parameters take
    /// their defaults; unknown or repeated names, wrong types and out-of-range values are
    /// all reported together as `invalid-params`.
    pub fn decode(def: &TemplateDef, params: &[Param]) -> Result<Settings, BuildError> {
        let decls = Decls::for_template(def);
        let mut errors = Vec::new();
        let specs = decls.specs();
        for (i, p) in params.iter().enumerate() {
            if !specs.iter().any(|s| s.name == p.name) {
                let accepted: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
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
        let width = decls.width.decode(given(decls.width.name), e);
        let height = decls.height.decode(given(decls.height.name), e);
        let steps = decls.steps.decode(given(decls.steps.name), e);
        let cfg_scale = decls.cfg_scale.decode(given(decls.cfg_scale.name), e);
        let seed = decls.seed.decode(given(decls.seed.name), e);
        let sampler = decls.sampler.decode(given(decls.sampler.name), e);
        let scheduler = decls.scheduler.decode(given(decls.scheduler.name), e);
        let denoise = decls.denoise.decode(given(decls.denoise.name), e);
        let batch_size = decls.batch_size.decode(given(decls.batch_size.name), e);
        let checkpoint = decls.checkpoint.decode(given(decls.checkpoint.name), e);

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
                "checkpoint"
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
