//! Host-side parameter handling, driven by the packs' parameter specs:
//! checking a caller's arguments, completing them with defaults, making the
//! seed concrete, and deriving the JSON Schema MCP clients see. Every pack
//! gets these checks for free, and the schema and the checks can never
//! disagree because both come from the same [`ParamSpec`].
//!
//! Invariants: a spec that passed [`validate_specs`] has a snake_case name
//! outside [`RESERVED_PARAM_NAMES`], finite bounds with `minimum <= maximum`,
//! a `multiple_of` of at least 1, unique choices, aliases that map onto
//! choices without shadowing them, and a default that passes its own spec;
//! its [`param_schema`] is therefore a valid JSON Schema. Its examples pass
//! it too; image and mask specs have neither a default nor examples.
//! [`resolve`] only returns values within their spec, and refuses a text over
//! [`MetadataLimits::max_text_param_bytes`] before any pack is called.
//!
//! Images: for an image or mask parameter the caller's JSON value is a string
//! naming the image's source. The host turns each such source into an
//! [`ImageInput`] (decoded, checked, uploaded) before resolving, and
//! [`resolve_with_inputs`] takes the resolved value from that map, by
//! parameter name; [`resolve`] is the same with no images.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::metadata::{MetadataLimits, quote, setting_hint};
use crate::spec::{ImageInput, ParamKind, ParamSpec, ParamValue, TemplateInfo};

/// Name of the parameter that gets a concrete random value when omitted or -1.
pub const SEED_PARAM: &str = "seed";
/// Largest random seed chosen by the host: 2^53 - 1, exact in every JSON client.
pub const MAX_RANDOM_SEED: i64 = (1 << 53) - 1;
/// Unknown argument names reported one by one; the rest are counted, so the
/// error stays small whatever a caller sends.
pub const MAX_UNKNOWN_REPORTED: usize = 8;
/// Longest parameter name, in bytes.
pub const MAX_PARAM_NAME_BYTES: usize = 64;

/// `generate_image`'s argument naming the template.
pub const TEMPLATE_ARG: &str = "template";
/// The argument of every generating tool that makes it wait for the job.
pub const WAIT_ARG: &str = "wait";
/// The argument bounding how long `wait` waits.
pub const TIMEOUT_ARG: &str = "timeout";
/// The argument allowing a job to be resubmitted when its backend dies while running it.
pub const RETRIES_ARG: &str = "retries";
/// `load_workflow`'s argument naming the workflow file.
pub const WORKFLOW_PATH_ARG: &str = "workflow_path";
/// `load_workflow`'s argument holding the overrides.
pub const PARAMETERS_ARG: &str = "parameters";

/// Argument names the server itself owns in the tools that take template
/// parameters (and names kept free for it). A pack parameter with one of
/// these names would collide with the server's argument in the merged
/// `generate_image` schema or a per-template tool, so it is refused at load.
/// The MCP layer builds its own arguments from the same constants.
pub const RESERVED_PARAM_NAMES: &[&str] = &[
    TEMPLATE_ARG,
    WAIT_ARG,
    TIMEOUT_ARG,
    RETRIES_ARG,
    WORKFLOW_PATH_ARG,
    PARAMETERS_ARG,
    "workflow",
    "progress",
];

/// One rejected parameter.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// The parameter's name.
    pub param: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl FieldError {
    /// A new error for `param`.
    pub fn new(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            param: param.into(),
            message: message.into(),
        }
    }

    /// Renders several errors as one line: `a: ...; b: ...`.
    pub fn join(errors: &[FieldError]) -> String {
        errors
            .iter()
            .map(|e| format!("{}: {}", e.param, e.message))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Parameters after checking: every declared parameter that has a value, in
/// spec order, with defaults filled in and the seed made concrete.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResolvedParams(Vec<(String, ParamValue)>);

impl ResolvedParams {
    /// Iterates `(name, value)` in spec order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ParamValue)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v))
    }

    /// A value by name.
    pub fn get(&self, name: &str) -> Option<&ParamValue> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The concrete seed, if the template has one.
    pub fn seed(&self) -> Option<i64> {
        match self.get(SEED_PARAM) {
            Some(ParamValue::Integer(s)) => Some(*s),
            _ => None,
        }
    }

    /// All values as a JSON object.
    pub fn to_json(&self) -> Map<String, Value> {
        self.0
            .iter()
            .map(|(n, v)| (n.clone(), v.to_json()))
            .collect()
    }
}

fn is_seed(spec: &ParamSpec) -> bool {
    spec.name == SEED_PARAM && spec.kind == ParamKind::Integer
}

/// The seeds the host may draw for `spec`: `(lowest, highest, step)`, the
/// spec's range and `multiple_of` intersected with `0..=MAX_RANDOM_SEED`.
fn random_seed_range(spec: &ParamSpec) -> Option<(i64, i64, i64)> {
    let step = spec.multiple_of.map_or(1, i64::from).max(1);
    let lo = spec.minimum.map_or(0.0, |m| m.max(0.0).ceil());
    let hi = spec.maximum.map_or(MAX_RANDOM_SEED as f64, |m| {
        m.min(MAX_RANDOM_SEED as f64).floor()
    });
    if !(lo.is_finite() && hi.is_finite()) || hi < 0.0 || lo > hi {
        return None;
    }
    let (lo, hi) = (lo as i64, hi as i64);
    let lo = (lo + step - 1) / step * step;
    let hi = hi / step * step;
    (lo <= hi).then_some((lo, hi, step))
}

fn random_seed(spec: &ParamSpec) -> Option<i64> {
    let (lo, hi, step) = random_seed_range(spec)?;
    Some(rand::random_range(lo / step..=hi / step) * step)
}

/// Checks `args` against `template`'s specs.
///
/// Rejects unknown names (listing the valid ones), missing required
/// parameters, wrong types, text longer than `limits.max_text_param_bytes`,
/// values out of range, integers that are not a multiple of the spec's
/// `multiple_of`, and text outside `choices`. A JSON `null` counts as omitted.
/// Aliases are mapped to their target. A seed of -1 or no seed becomes a
/// random seed within the spec's range and `0..=MAX_RANDOM_SEED`. All errors
/// are reported together.
pub fn resolve(
    template: &TemplateInfo,
    args: &Map<String, Value>,
    limits: &MetadataLimits,
) -> Result<ResolvedParams, Vec<FieldError>> {
    resolve_with_inputs(template, args, &BTreeMap::new(), limits).map_err(|e| match e {
        ResolveError::Invalid(errors) => errors,
        // No image intake on this path: the caller's fault, named precisely.
        ResolveError::MissingInput { param } => vec![FieldError::new(
            param,
            "an image parameter, which this entry point cannot take (no uploaded image was provided)",
        )],
    })
}

/// Why [`resolve_with_inputs`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The caller's arguments are unacceptable (every problem listed).
    #[error("invalid parameters: {}", FieldError::join(.0))]
    Invalid(Vec<FieldError>),
    /// An image or mask argument was given, but the host supplied no
    /// uploaded image for it: a defect of the host's image intake, not of
    /// the client's request.
    #[error(
        "internal error: image parameter `{param}` was given but no uploaded image was provided for it"
    )]
    MissingInput {
        /// The parameter.
        param: String,
    },
}

/// [`resolve`], with the uploaded images of the image and mask arguments.
///
/// For an image or mask parameter the JSON argument must be a string (the
/// caller's source, which the host has already turned into `inputs[name]`);
/// the resolved value is `inputs[name]`. A required image parameter missing
/// from `args` is the usual "required" field error; one present in `args`
/// but absent from `inputs` is [`ResolveError::MissingInput`]. Entries of
/// `inputs` for parameters not in `args` are ignored. Images never have defaults.
pub fn resolve_with_inputs(
    template: &TemplateInfo,
    args: &Map<String, Value>,
    inputs: &BTreeMap<String, ImageInput>,
    limits: &MetadataLimits,
) -> Result<ResolvedParams, ResolveError> {
    let mut errors = Vec::new();
    let mut unknown = args.keys().filter(|name| template.param(name).is_none());
    for name in unknown.by_ref().take(MAX_UNKNOWN_REPORTED) {
        {
            errors.push(FieldError::new(
                quote(name),
                format!(
                    "unknown parameter for template `{}`; valid parameters: {}",
                    template.id,
                    template
                        .params
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    let more = unknown.count();
    if more > 0 {
        errors.push(FieldError::new(
            "(more)",
            format!("and {more} more unknown parameters, not listed"),
        ));
    }
    let mut resolved = Vec::with_capacity(template.params.len());
    for spec in &template.params {
        let given = args.get(&spec.name).filter(|v| !v.is_null());
        // -1 asks for a random seed whatever the spec's range (required or not).
        let random = is_seed(spec) && given.is_some_and(|v| v.as_f64() == Some(-1.0));
        let value = match given {
            _ if random => None,
            Some(raw) if spec.kind.is_image() => match (raw, inputs.get(&spec.name)) {
                (Value::String(_), Some(input)) => Some(ParamValue::Image(input.clone())),
                (Value::String(_), None) => {
                    return Err(ResolveError::MissingInput {
                        param: spec.name.clone(),
                    });
                }
                (other, _) => {
                    errors.push(FieldError::new(
                        &spec.name,
                        format!(
                            "expected a string naming an image ({IMAGE_SOURCES}), got {}",
                            describe(other)
                        ),
                    ));
                    continue;
                }
            },
            Some(raw) => match check_value(spec, raw, limits) {
                Ok(v) => Some(v),
                Err(message) => {
                    errors.push(FieldError::new(&spec.name, message));
                    continue;
                }
            },
            None if spec.required => {
                errors.push(FieldError::new(&spec.name, "required parameter is missing"));
                continue;
            }
            None => spec.default.clone(),
        };
        let value = match value {
            None | Some(ParamValue::Integer(-1)) if is_seed(spec) => match random_seed(spec) {
                Some(seed) => Some(ParamValue::Integer(seed)),
                None => {
                    errors.push(FieldError::new(
                        &spec.name,
                        "no random seed fits this template's seed range",
                    ));
                    continue;
                }
            },
            other => other,
        };
        if let Some(value) = value {
            resolved.push((spec.name.clone(), value));
        }
    }
    if errors.is_empty() {
        Ok(ResolvedParams(resolved))
    } else {
        Err(ResolveError::Invalid(errors))
    }
}

/// The forms an image or mask argument may take, as schemas and errors name them.
pub const IMAGE_SOURCES: &str = "base64 PNG, JPEG or WebP; a data: URI; a comfyui://images/... URI of an earlier result; or a path inside the server's allowed input folders";

/// Placeholder uploads for a self-test: one per required image or mask
/// parameter, named `self-test.png` and sized like the template's default
/// output. Pair with [`self_test_args`], which gives each of them that name.
pub fn self_test_inputs(template: &TemplateInfo) -> BTreeMap<String, ImageInput> {
    template
        .params
        .iter()
        .filter(|p| p.required && p.kind.is_image())
        .map(|p| {
            let input = ImageInput {
                name: SELF_TEST_IMAGE.to_owned(),
                width: template.default_width.max(1),
                height: template.default_height.max(1),
                has_alpha: p.kind == ParamKind::Mask,
                sha256: String::new(),
            };
            (p.name.clone(), input)
        })
        .collect()
}

/// The upload name of [`self_test_inputs`]' placeholders.
pub const SELF_TEST_IMAGE: &str = "self-test.png";

/// Parameters for a self-test: every default, and a placeholder for each
/// required parameter (text "self-test", the minimum for numbers, `false`,
/// [`SELF_TEST_IMAGE`] for images, uploaded by [`self_test_inputs`]).
pub fn self_test_args(template: &TemplateInfo) -> Map<String, Value> {
    self_test_args_with(template, || json!("self-test"))
}

/// Like [`self_test_args`], with `text` giving the value of each required text
/// parameter that has no choices.
pub fn self_test_args_with(
    template: &TemplateInfo,
    mut text: impl FnMut() -> Value,
) -> Map<String, Value> {
    template
        .params
        .iter()
        .filter(|p| p.required)
        .map(|p| {
            let v = match p.kind {
                ParamKind::Text => p.choices.first().map_or_else(&mut text, |c| json!(c)),
                ParamKind::Integer => json!(p.minimum.unwrap_or(0.0) as i64),
                ParamKind::Number => json!(p.minimum.unwrap_or(0.0)),
                ParamKind::Boolean => json!(false),
                ParamKind::Image | ParamKind::Mask => json!(SELF_TEST_IMAGE),
            };
            (p.name.clone(), v)
        })
        .collect()
}

/// The range an integer spec accepts, as text, intersected with i64.
fn integer_range(spec: &ParamSpec) -> String {
    let lo = spec.minimum.map_or(i64::MIN as i128, |m| {
        (m.ceil() as i128).max(i64::MIN as i128)
    });
    let hi = spec.maximum.map_or(i64::MAX as i128, |m| {
        (m.floor() as i128).min(i64::MAX as i128)
    });
    format!("must be between {lo} and {hi}")
}

fn check_value(
    spec: &ParamSpec,
    raw: &Value,
    limits: &MetadataLimits,
) -> Result<ParamValue, String> {
    let value = match (spec.kind, raw) {
        (ParamKind::Text, Value::String(s)) => {
            if s.len() > limits.max_text_param_bytes {
                return Err(format!(
                    "{} is {} bytes, over the limit of {} bytes for one text parameter; raise it with {}",
                    spec.name,
                    s.len(),
                    limits.max_text_param_bytes,
                    setting_hint("max_text_param_bytes")
                ));
            }
            ParamValue::Text(s.clone())
        }
        (ParamKind::Boolean, Value::Bool(b)) => ParamValue::Boolean(*b),
        (ParamKind::Number, Value::Number(n)) => match n.as_f64() {
            Some(f) if f.is_finite() => ParamValue::Number(f),
            _ => return Err(format!("{n} is not a finite number")),
        },
        (ParamKind::Integer, Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                ParamValue::Integer(i)
            } else if n.is_u64() {
                return Err(format!("{n} is out of range: {}", integer_range(spec)));
            } else {
                match n.as_f64() {
                    Some(f) if !f.is_finite() => {
                        return Err(format!("{n} is not a finite number"));
                    }
                    Some(f) if f.fract() != 0.0 => {
                        return Err(format!("expected a whole number, got {n}"));
                    }
                    // -2^63 ..= 2^63 - 1 (2^63 itself is not an i64).
                    Some(f)
                        if (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f) =>
                    {
                        ParamValue::Integer(f as i64)
                    }
                    _ => return Err(format!("{n} is out of range: {}", integer_range(spec))),
                }
            }
        }
        (kind, other) => {
            return Err(format!(
                "expected {}, got {}",
                match kind {
                    ParamKind::Text => "a string",
                    ParamKind::Integer => "an integer",
                    ParamKind::Number => "a number",
                    ParamKind::Boolean => "a boolean (true or false)",
                    ParamKind::Image | ParamKind::Mask => "a string naming an image",
                },
                describe(other)
            ));
        }
    };
    check_constraints(spec, value)
}

fn check_constraints(spec: &ParamSpec, value: ParamValue) -> Result<ParamValue, String> {
    let range = || match (spec.minimum, spec.maximum) {
        (Some(lo), Some(hi)) => format!("between {} and {}", fmt_num(lo), fmt_num(hi)),
        (Some(lo), None) => format!("at least {}", fmt_num(lo)),
        (None, Some(hi)) => format!("at most {}", fmt_num(hi)),
        (None, None) => String::new(),
    };
    match &value {
        // Exact for every i64: the bounds are rounded inwards to integers.
        ParamValue::Integer(i) => {
            let i = i128::from(*i);
            if spec.minimum.is_some_and(|lo| i < lo.ceil() as i128)
                || spec.maximum.is_some_and(|hi| i > hi.floor() as i128)
            {
                return Err(format!("{i} is out of range: must be {}", range()));
            }
        }
        ParamValue::Number(x)
            if spec.minimum.is_some_and(|lo| *x < lo) || spec.maximum.is_some_and(|hi| *x > hi) =>
        {
            return Err(format!(
                "{} is out of range: must be {}",
                fmt_num(*x),
                range()
            ));
        }
        _ => {}
    }
    if let (ParamValue::Integer(i), Some(m)) = (&value, spec.multiple_of)
        && m > 0
        && i % i64::from(m) != 0
    {
        let below = i - i.rem_euclid(i64::from(m));
        return Err(format!(
            "{i} is not a multiple of {m} (nearest valid: {} or {})",
            below,
            below.saturating_add(i64::from(m))
        ));
    }
    if let ParamValue::Text(s) = &value
        && !spec.choices.is_empty()
        && !spec.choices.contains(s)
    {
        if let Some(alias) = spec.aliases.iter().find(|a| &a.name == s) {
            return Ok(ParamValue::Text(alias.target.clone()));
        }
        let aliases = if spec.aliases.is_empty() {
            String::new()
        } else {
            format!(
                " (also accepted: {})",
                spec.aliases
                    .iter()
                    .map(|a| format!("{} = {}", a.name, a.target))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        return Err(format!(
            "`{}` is not a valid choice; valid choices: {}{aliases}",
            quote(s),
            spec.choices.join(", ")
        ));
    }
    Ok(value)
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) if s.len() > 40 => format!("a string ({} bytes)", s.len()),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e16 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// A parameter spec that cannot be served, and which parameter.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("parameter `{param}`: {fault}")]
pub struct SpecProblem {
    /// The parameter's name (escaped and shortened if it is unprintable or long).
    pub param: String,
    /// What is wrong.
    pub fault: SpecFault,
}

/// What is wrong with one parameter spec.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecFault {
    /// The name is not snake_case ASCII or too long.
    #[error(
        "the name must be 1-{MAX_PARAM_NAME_BYTES} characters of a-z, 0-9 and `_`, starting with a letter (snake_case)"
    )]
    BadName,
    /// The name is one of the server's own arguments.
    #[error("the name is reserved for the server's own arguments (reserved: {})", RESERVED_PARAM_NAMES.join(", "))]
    Reserved,
    /// Declared twice in one template.
    #[error("declared twice")]
    Duplicate,
    /// Required and defaulted at once.
    #[error("required but also has a default")]
    RequiredWithDefault,
    /// A bound or default is NaN or infinite.
    #[error("{what} is {value}, not a finite number")]
    NonFinite {
        /// `minimum`, `maximum` or `default`.
        what: &'static str,
        /// The value.
        value: f64,
    },
    /// `minimum` above `maximum`.
    #[error("minimum {lo} is above maximum {hi}")]
    MinAboveMax {
        /// Lower bound.
        lo: f64,
        /// Upper bound.
        hi: f64,
    },
    /// `multiple-of` is 0.
    #[error("multiple-of is 0; it must be at least 1 (or absent)")]
    MultipleOfZero,
    /// A numeric constraint on a parameter that is not numeric.
    #[error("{what} can only be declared on {applies_to} parameters")]
    NotApplicable {
        /// The constraint.
        what: &'static str,
        /// The kinds it applies to.
        applies_to: &'static str,
    },
    /// The same choice listed twice.
    #[error("choice `{choice}` is listed twice")]
    DuplicateChoice {
        /// The choice.
        choice: String,
    },
    /// An alias whose target is not a choice.
    #[error("alias `{alias}` points at `{target}`, which is not a choice")]
    AliasNotAChoice {
        /// The alias.
        alias: String,
        /// Its target.
        target: String,
    },
    /// An alias spelled like a choice or another alias.
    #[error("alias `{alias}` is spelled like a choice or another alias")]
    AliasClash {
        /// The alias.
        alias: String,
    },
    /// The default fails its own spec.
    #[error("default is invalid: {reason}")]
    BadDefault {
        /// Why.
        reason: String,
    },
    /// An image or mask parameter with a default or examples.
    #[error("an {kind} parameter cannot declare {what} (the caller always sends the image)")]
    ImageWith {
        /// `image` or `mask`.
        kind: &'static str,
        /// `a default` or `examples`.
        what: &'static str,
    },
    /// An example fails the spec.
    #[error("example #{number} is invalid: {reason}")]
    BadExample {
        /// Its position, from 1.
        number: usize,
        /// Why.
        reason: String,
    },
    /// The seed's range admits no random seed.
    #[error(
        "no seed in 0..={MAX_RANDOM_SEED} fits the declared range and multiple-of, so no random seed can be drawn for -1"
    )]
    NoRandomSeed,
}

/// Parameter names: snake_case ASCII, at most [`MAX_PARAM_NAME_BYTES`].
pub fn valid_param_name(name: &str) -> bool {
    name.len() <= MAX_PARAM_NAME_BYTES
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Checks that a template's specs are coherent (see the module invariants).
/// Returns every problem found; empty means the specs can be served.
pub fn validate_specs(specs: &[ParamSpec]) -> Vec<SpecProblem> {
    let mut problems = Vec::new();
    let mut names = std::collections::HashSet::new();
    for spec in specs {
        let mut fault = |fault| {
            problems.push(SpecProblem {
                param: quote(&spec.name),
                fault,
            })
        };
        let name = spec.name.as_str();
        if !valid_param_name(name) {
            fault(SpecFault::BadName);
        } else if RESERVED_PARAM_NAMES.contains(&name) {
            fault(SpecFault::Reserved);
        } else if !names.insert(name) {
            fault(SpecFault::Duplicate);
        }
        if spec.required && spec.default.is_some() {
            fault(SpecFault::RequiredWithDefault);
        }
        let numeric = matches!(spec.kind, ParamKind::Integer | ParamKind::Number);
        let mut bounds_ok = true;
        for (what, bound) in [("minimum", spec.minimum), ("maximum", spec.maximum)] {
            let Some(value) = bound else { continue };
            if !numeric {
                fault(SpecFault::NotApplicable {
                    what,
                    applies_to: "integer and number",
                });
                bounds_ok = false;
            } else if !value.is_finite() {
                fault(SpecFault::NonFinite { what, value });
                bounds_ok = false;
            }
        }
        if bounds_ok
            && let (Some(lo), Some(hi)) = (spec.minimum, spec.maximum)
            && lo > hi
        {
            fault(SpecFault::MinAboveMax { lo, hi });
            bounds_ok = false;
        }
        match spec.multiple_of {
            Some(_) if spec.kind != ParamKind::Integer => fault(SpecFault::NotApplicable {
                what: "multiple-of",
                applies_to: "integer",
            }),
            Some(0) => fault(SpecFault::MultipleOfZero),
            _ => {}
        }
        if spec.kind != ParamKind::Text && !(spec.choices.is_empty() && spec.aliases.is_empty()) {
            fault(SpecFault::NotApplicable {
                what: "choices and aliases",
                applies_to: "text",
            });
        }
        let mut choices = std::collections::HashSet::new();
        for choice in &spec.choices {
            if !choices.insert(choice.as_str()) {
                fault(SpecFault::DuplicateChoice {
                    choice: quote(choice),
                });
            }
        }
        let mut spellings = choices.clone();
        for alias in &spec.aliases {
            if !choices.contains(alias.target.as_str()) {
                fault(SpecFault::AliasNotAChoice {
                    alias: quote(&alias.name),
                    target: quote(&alias.target),
                });
            }
            if !spellings.insert(alias.name.as_str()) {
                fault(SpecFault::AliasClash {
                    alias: quote(&alias.name),
                });
            }
        }
        if is_seed(spec)
            && bounds_ok
            && spec.multiple_of != Some(0)
            && random_seed_range(spec).is_none()
        {
            fault(SpecFault::NoRandomSeed);
        }
        if spec.kind.is_image() {
            let kind = if spec.kind == ParamKind::Mask {
                "mask"
            } else {
                "image"
            };
            if spec.default.is_some() {
                fault(SpecFault::ImageWith {
                    kind,
                    what: "a default",
                });
            }
            if !spec.examples.is_empty() {
                fault(SpecFault::ImageWith {
                    kind,
                    what: "examples",
                });
            }
        } else if bounds_ok {
            for (i, example) in spec.examples.iter().enumerate() {
                if let Err(reason) = check_declared(spec, example) {
                    fault(SpecFault::BadExample {
                        number: i + 1,
                        reason,
                    });
                }
            }
        }
        match &spec.default {
            _ if spec.kind.is_image() => {}
            Some(ParamValue::Number(value)) if !value.is_finite() => {
                fault(SpecFault::NonFinite {
                    what: "default",
                    value: *value,
                });
            }
            Some(default) if bounds_ok => {
                let raw = default.to_json();
                let is_random_seed = is_seed(spec) && raw == json!(-1);
                // Defaults are checked against the spec, not the caller's text cap
                // (the metadata caps bound them).
                let unbounded = MetadataLimits {
                    max_text_param_bytes: usize::MAX,
                    ..MetadataLimits::DEFAULT
                };
                if !is_random_seed {
                    match check_value(spec, &raw, &unbounded) {
                        Err(reason) => fault(SpecFault::BadDefault { reason }),
                        // Defaults reach the pack as declared, so an alias would
                        // bypass its mapping.
                        Ok(ParamValue::Text(choice))
                            if Some(&choice) != raw.as_str().map(String::from).as_ref() =>
                        {
                            fault(SpecFault::BadDefault {
                                reason: format!(
                                    "`{}` is an alias of `{}`; declare the choice itself",
                                    quote(raw.as_str().unwrap_or_default()),
                                    quote(&choice)
                                ),
                            })
                        }
                        Ok(_) => {}
                    }
                }
            }
            _ => {}
        }
    }
    problems
}

/// Checks a value a pack declared (an example) against its spec, like a
/// caller's value but without the caller's text cap (the metadata caps bound
/// it). A seed's -1 (a random seed) is acceptable.
fn check_declared(spec: &ParamSpec, value: &ParamValue) -> Result<(), String> {
    if let ParamValue::Number(x) = value
        && !x.is_finite()
    {
        return Err(format!("{x} is not a finite number"));
    }
    let raw = value.to_json();
    if is_seed(spec) && raw == json!(-1) {
        return Ok(());
    }
    let unbounded = MetadataLimits {
        max_text_param_bytes: usize::MAX,
        ..MetadataLimits::DEFAULT
    };
    check_value(spec, &raw, &unbounded).map(drop)
}

/// The JSON Schema of one parameter.
pub fn param_schema(spec: &ParamSpec) -> Value {
    let mut s = Map::new();
    s.insert("type".into(), json!(spec.kind.json_type()));
    let mut description = spec.description.clone();
    let seed = is_seed(spec);
    if seed {
        description.push_str(" (-1 or omitted: a random seed, reported back)");
    }
    if spec.kind.is_image() {
        if !description.is_empty() {
            description.push(' ');
        }
        description.push_str(&format!(
            "({}: {IMAGE_SOURCES})",
            if spec.kind == ParamKind::Mask {
                "a mask, white marks the region to change"
            } else {
                "an image"
            }
        ));
    }
    if !description.is_empty() {
        s.insert("description".into(), json!(description));
    }
    if let Some(d) = &spec.default {
        s.insert("default".into(), d.to_json());
    }
    if let Some(lo) = spec.minimum.filter(|x| x.is_finite()) {
        // -1 (a random seed) is accepted whatever the seed's range.
        let lo = if seed { lo.min(-1.0) } else { lo };
        s.insert("minimum".into(), num_json(lo, spec.kind));
    }
    if let Some(hi) = spec.maximum.filter(|x| x.is_finite()) {
        s.insert("maximum".into(), num_json(hi, spec.kind));
    }
    // A seed's multiple-of would reject -1; the host checks it.
    if let Some(m) = spec.multiple_of.filter(|m| *m >= 1 && !seed) {
        s.insert("multipleOf".into(), json!(m));
    }
    if !spec.choices.is_empty() {
        let mut all: Vec<&str> = Vec::new();
        for name in spec
            .choices
            .iter()
            .chain(spec.aliases.iter().map(|a| &a.name))
        {
            if !all.contains(&name.as_str()) {
                all.push(name);
            }
        }
        s.insert("enum".into(), json!(all));
    }
    if !spec.examples.is_empty() {
        let examples: Vec<Value> = spec.examples.iter().map(ParamValue::to_json).collect();
        s.insert("examples".into(), Value::Array(examples));
    }
    Value::Object(s)
}

fn num_json(x: f64, kind: ParamKind) -> Value {
    if kind == ParamKind::Integer && x.fract() == 0.0 && x.abs() < 9.0e15 {
        json!(x as i64)
    } else {
        json!(x)
    }
}

/// The JSON Schema (draft 2020-12 subset) of a template's parameters:
/// an object with one property per parameter, `required` listing the
/// required ones, and no other properties allowed.
pub fn input_schema(template: &TemplateInfo) -> Value {
    let properties: Map<String, Value> = template
        .params
        .iter()
        .map(|p| (p.name.clone(), param_schema(p)))
        .collect();
    let required: Vec<&str> = template
        .params
        .iter()
        .filter(|p| p.required)
        .map(|p| p.name.as_str())
        .collect();
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Alias;

    fn spec(name: &str, kind: ParamKind) -> ParamSpec {
        ParamSpec {
            name: name.into(),
            kind,
            description: String::new(),
            required: false,
            default: None,
            minimum: None,
            maximum: None,
            multiple_of: None,
            choices: vec![],
            aliases: vec![],
            examples: vec![],
        }
    }

    fn template() -> TemplateInfo {
        TemplateInfo {
            id: "t".into(),
            name: "T".into(),
            description: String::new(),
            category: "c".into(),
            tags: vec![],
            default_width: 512,
            default_height: 512,
            params: vec![
                ParamSpec {
                    required: true,
                    ..spec("prompt", ParamKind::Text)
                },
                ParamSpec {
                    default: Some(ParamValue::Integer(512)),
                    minimum: Some(64.0),
                    maximum: Some(2048.0),
                    multiple_of: Some(8),
                    ..spec("width", ParamKind::Integer)
                },
                ParamSpec {
                    default: Some(ParamValue::Number(7.0)),
                    minimum: Some(1.0),
                    maximum: Some(30.0),
                    ..spec("cfg_scale", ParamKind::Number)
                },
                ParamSpec {
                    default: Some(ParamValue::Integer(-1)),
                    minimum: Some(-1.0),
                    maximum: Some(MAX_RANDOM_SEED as f64),
                    ..spec("seed", ParamKind::Integer)
                },
                ParamSpec {
                    default: Some(ParamValue::Text("euler".into())),
                    choices: vec!["euler".into(), "dpmpp_2m".into()],
                    aliases: vec![Alias {
                        name: "dpm++".into(),
                        target: "dpmpp_2m".into(),
                    }],
                    ..spec("sampler", ParamKind::Text)
                },
            ],
            postprocess: false,
        }
    }

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn resolve(
        t: &TemplateInfo,
        a: &Map<String, Value>,
    ) -> Result<ResolvedParams, Vec<FieldError>> {
        super::resolve(t, a, &MetadataLimits::DEFAULT)
    }

    #[test]
    fn defaults_fill_in_and_seed_becomes_concrete() {
        let r = resolve(&template(), &args(json!({"prompt": "a cat"}))).unwrap();
        assert_eq!(r.get("width"), Some(&ParamValue::Integer(512)));
        assert_eq!(r.get("cfg_scale"), Some(&ParamValue::Number(7.0)));
        let seed = r.seed().unwrap();
        assert!((0..=MAX_RANDOM_SEED).contains(&seed));
        let explicit = resolve(&template(), &args(json!({"prompt": "x", "seed": 42}))).unwrap();
        assert_eq!(explicit.seed(), Some(42));
        let minus_one = resolve(&template(), &args(json!({"prompt": "x", "seed": -1}))).unwrap();
        assert!(minus_one.seed().unwrap() >= 0);
    }

    #[test]
    fn every_error_is_reported_with_what_is_allowed() {
        let e = resolve(
            &template(),
            &args(json!({"width": 513, "cfg_scale": 31, "sampler": "fancy", "colour": 1})),
        )
        .unwrap_err();
        let text = FieldError::join(&e);
        assert!(text.contains("colour: unknown parameter"), "{text}");
        assert!(
            text.contains("valid parameters: prompt, width, cfg_scale, seed, sampler"),
            "{text}"
        );
        assert!(
            text.contains("prompt: required parameter is missing"),
            "{text}"
        );
        assert!(
            text.contains("513 is not a multiple of 8 (nearest valid: 512 or 520)"),
            "{text}"
        );
        assert!(
            text.contains("31 is out of range: must be between 1 and 30"),
            "{text}"
        );
        assert!(text.contains("`fancy` is not a valid choice; valid choices: euler, dpmpp_2m (also accepted: dpm++ = dpmpp_2m)"), "{text}");
        assert_eq!(e.len(), 5);
    }

    #[test]
    fn types_are_strict_but_whole_floats_count_as_integers() {
        let e = resolve(&template(), &args(json!({"prompt": 5, "width": "512"}))).unwrap_err();
        assert_eq!(e[0].message, "expected a string, got the number 5");
        assert_eq!(e[1].message, "expected an integer, got the string \"512\"");
        let r = resolve(
            &template(),
            &args(json!({"prompt": "x", "width": 512.0, "cfg_scale": 7})),
        )
        .unwrap();
        assert_eq!(r.get("width"), Some(&ParamValue::Integer(512)));
        assert_eq!(r.get("cfg_scale"), Some(&ParamValue::Number(7.0)));
        let e = resolve(&template(), &args(json!({"prompt": "x", "width": 512.5}))).unwrap_err();
        assert_eq!(e[0].message, "expected a whole number, got 512.5");
    }

    #[test]
    fn aliases_map_to_their_target_and_null_means_omitted() {
        let r = resolve(
            &template(),
            &args(json!({"prompt": "x", "sampler": "dpm++", "width": null})),
        )
        .unwrap();
        assert_eq!(r.get("sampler"), Some(&ParamValue::Text("dpmpp_2m".into())));
        assert_eq!(r.get("width"), Some(&ParamValue::Integer(512)));
    }

    #[test]
    fn schema_carries_ranges_choices_and_required() {
        let s = input_schema(&template());
        assert_eq!(s["required"], json!(["prompt"]));
        assert_eq!(s["additionalProperties"], json!(false));
        assert_eq!(
            s["properties"]["width"],
            json!({"type": "integer", "default": 512, "minimum": 64, "maximum": 2048, "multipleOf": 8})
        );
        assert_eq!(
            s["properties"]["sampler"]["enum"],
            json!(["euler", "dpmpp_2m", "dpm++"])
        );
        assert_eq!(s["properties"]["cfg_scale"]["minimum"], json!(1.0));
    }

    #[test]
    fn incoherent_specs_are_refused() {
        let mut bad = template();
        bad.params[1].default = Some(ParamValue::Integer(100));
        let e = validate_specs(&bad.params);
        assert_eq!(e.len(), 1, "{e:?}");
        let e = e[0].to_string();
        assert!(
            e.contains("`width`: default is invalid: 100 is not a multiple of 8"),
            "{e}"
        );
        assert!(validate_specs(&template().params).is_empty());
    }
}
