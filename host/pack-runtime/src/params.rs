//! Host-side parameter handling, driven by the packs' parameter specs:
//! checking a caller's arguments, completing them with defaults, making the
//! seed concrete, and deriving the JSON Schema MCP clients see. Every pack
//! gets these checks for free, and the schema and the checks can never
//! disagree because both come from the same [`ParamSpec`].

use serde_json::{Map, Value, json};

use crate::spec::{ParamKind, ParamSpec, ParamValue, TemplateInfo};

/// Name of the parameter that gets a concrete random value when omitted or -1.
pub const SEED_PARAM: &str = "seed";
/// Largest random seed chosen by the host: 2^53 - 1, exact in every JSON client.
pub const MAX_RANDOM_SEED: i64 = (1 << 53) - 1;

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

/// Checks `args` against `template`'s specs.
///
/// Rejects unknown names (listing the valid ones), missing required
/// parameters, wrong types, values out of range, integers that are not a
/// multiple of the spec's `multiple_of`, and text outside `choices`. A JSON
/// `null` counts as omitted. Aliases are mapped to their target. A seed of
/// -1 or no seed becomes a random seed in `0..=MAX_RANDOM_SEED`. All errors
/// are reported together.
pub fn resolve(
    template: &TemplateInfo,
    args: &Map<String, Value>,
) -> Result<ResolvedParams, Vec<FieldError>> {
    let mut errors = Vec::new();
    for name in args.keys() {
        if template.param(name).is_none() {
            errors.push(FieldError::new(
                name,
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
    let mut resolved = Vec::with_capacity(template.params.len());
    for spec in &template.params {
        let given = args.get(&spec.name).filter(|v| !v.is_null());
        let value = match given {
            Some(raw) => match check_value(spec, raw) {
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
        let value = if spec.name == SEED_PARAM && spec.kind == ParamKind::Integer {
            match value {
                None | Some(ParamValue::Integer(-1)) => {
                    Some(ParamValue::Integer(rand::random_range(0..=MAX_RANDOM_SEED)))
                }
                other => other,
            }
        } else {
            value
        };
        if let Some(value) = value {
            resolved.push((spec.name.clone(), value));
        }
    }
    if errors.is_empty() {
        Ok(ResolvedParams(resolved))
    } else {
        Err(errors)
    }
}

/// Parameters for a self-test: every default, and a placeholder for each
/// required parameter (text "self-test", the minimum for numbers, `false`).
pub fn self_test_args(template: &TemplateInfo) -> Map<String, Value> {
    template
        .params
        .iter()
        .filter(|p| p.required)
        .map(|p| {
            let v = match p.kind {
                ParamKind::Text => p.choices.first().map_or(json!("self-test"), |c| json!(c)),
                ParamKind::Integer => json!(p.minimum.unwrap_or(0.0) as i64),
                ParamKind::Number => json!(p.minimum.unwrap_or(0.0)),
                ParamKind::Boolean => json!(false),
            };
            (p.name.clone(), v)
        })
        .collect()
}

fn check_value(spec: &ParamSpec, raw: &Value) -> Result<ParamValue, String> {
    let value = match (spec.kind, raw) {
        (ParamKind::Text, Value::String(s)) => ParamValue::Text(s.clone()),
        (ParamKind::Boolean, Value::Bool(b)) => ParamValue::Boolean(*b),
        (ParamKind::Number, Value::Number(n)) => match n.as_f64() {
            Some(f) if f.is_finite() => ParamValue::Number(f),
            _ => return Err(format!("{n} is not a finite number")),
        },
        (ParamKind::Integer, Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                ParamValue::Integer(i)
            } else {
                match n.as_f64() {
                    Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
                        ParamValue::Integer(f as i64)
                    }
                    _ => return Err(format!("expected a whole number, got {n}")),
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
                },
                describe(other)
            ));
        }
    };
    check_constraints(spec, value)
}

fn check_constraints(spec: &ParamSpec, value: ParamValue) -> Result<ParamValue, String> {
    let numeric = match &value {
        ParamValue::Integer(i) => Some(*i as f64),
        ParamValue::Number(n) => Some(*n),
        _ => None,
    };
    if let Some(x) = numeric {
        let range = || match (spec.minimum, spec.maximum) {
            (Some(lo), Some(hi)) => format!("between {} and {}", fmt_num(lo), fmt_num(hi)),
            (Some(lo), None) => format!("at least {}", fmt_num(lo)),
            (None, Some(hi)) => format!("at most {}", fmt_num(hi)),
            (None, None) => String::new(),
        };
        if spec.minimum.is_some_and(|lo| x < lo) || spec.maximum.is_some_and(|hi| x > hi) {
            return Err(format!(
                "{} is out of range: must be {}",
                fmt_num(x),
                range()
            ));
        }
    }
    if let (ParamValue::Integer(i), Some(m)) = (&value, spec.multiple_of)
        && m > 0
        && i % i64::from(m) != 0
    {
        let below = i - i.rem_euclid(i64::from(m));
        return Err(format!(
            "{i} is not a multiple of {m} (nearest valid: {} or {})",
            below,
            below + i64::from(m)
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
            "`{s}` is not a valid choice; valid choices: {}{aliases}",
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
        Value::String(s) if s.len() > 40 => format!("a string ({} characters)", s.len()),
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

/// Checks that a template's specs are coherent: unique names, defaults that
/// pass their own spec, aliases that point at choices, sane ranges.
pub fn validate_specs(specs: &[ParamSpec]) -> Result<(), String> {
    let mut names = std::collections::HashSet::new();
    for spec in specs {
        let name = &spec.name;
        if name.is_empty() || !names.insert(name.as_str()) {
            return Err(format!("parameter name `{name}` is empty or appears twice"));
        }
        if spec.required && spec.default.is_some() {
            return Err(format!(
                "parameter `{name}` is required but also has a default"
            ));
        }
        if let (Some(lo), Some(hi)) = (spec.minimum, spec.maximum)
            && lo > hi
        {
            return Err(format!(
                "parameter `{name}`: minimum {lo} is above maximum {hi}"
            ));
        }
        for alias in &spec.aliases {
            if !spec.choices.contains(&alias.target) {
                return Err(format!(
                    "parameter `{name}`: alias `{}` points at `{}`, which is not a choice",
                    alias.name, alias.target
                ));
            }
        }
        if let Some(default) = &spec.default {
            let raw = default.to_json();
            let is_random_seed = name == SEED_PARAM && raw == json!(-1);
            if !is_random_seed {
                check_value(spec, &raw)
                    .map_err(|e| format!("parameter `{name}`: default is invalid: {e}"))?;
            }
        }
    }
    Ok(())
}

/// The JSON Schema of one parameter.
pub fn param_schema(spec: &ParamSpec) -> Value {
    let mut s = Map::new();
    s.insert("type".into(), json!(spec.kind.json_type()));
    let mut description = spec.description.clone();
    if spec.name == SEED_PARAM && spec.kind == ParamKind::Integer {
        description.push_str(" (-1 or omitted: a random seed, reported back)");
    }
    if !description.is_empty() {
        s.insert("description".into(), json!(description));
    }
    if let Some(d) = &spec.default {
        s.insert("default".into(), d.to_json());
    }
    if let Some(lo) = spec.minimum {
        s.insert("minimum".into(), num_json(lo, spec.kind));
    }
    if let Some(hi) = spec.maximum {
        s.insert("maximum".into(), num_json(hi, spec.kind));
    }
    if let Some(m) = spec.multiple_of {
        s.insert("multipleOf".into(), json!(m));
    }
    if !spec.choices.is_empty() {
        let mut all: Vec<&str> = spec.choices.iter().map(String::as_str).collect();
        all.extend(spec.aliases.iter().map(|a| a.name.as_str()));
        s.insert("enum".into(), json!(all));
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
        }
    }

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
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
        let e = validate_specs(&bad.params).unwrap_err();
        assert!(
            e.contains("`width`: default is invalid: 100 is not a multiple of 8"),
            "{e}"
        );
        assert!(validate_specs(&template().params).is_ok());
    }
}
