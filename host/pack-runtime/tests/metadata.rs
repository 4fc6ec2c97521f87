//! Pack metadata, parameter specs and their caps, against real (hostile) packs
//! built from `plugins/test-packs/`, plus property tests of parameter resolution.

mod common;

use common::{args, host, repo, test_pack};
use std::path::Path;

use pack_runtime::params::{self, FieldError, MAX_RANDOM_SEED};
use pack_runtime::{
    Alias, CallError, Limits, LoadError, MetadataLimits, Pack, ParamKind, ParamSpec, ParamValue,
    Runtime, RuntimeConfig, TemplateInfo,
};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn runtime_with(metadata: MetadataLimits) -> Runtime {
    Runtime::new(RuntimeConfig {
        limits: Limits {
            metadata,
            ..Limits::default()
        },
        ..RuntimeConfig::default()
    })
    .expect("engine")
}

fn load_err(rt: &Runtime, path: &Path) -> LoadError {
    match rt.load_file(path) {
        Ok(pack) => panic!("{} loaded: {pack:?}", path.display()),
        Err(e) => e,
    }
}

#[test]
fn metadata_bomb_is_refused_at_the_template_cap() {
    let err = load_err(
        &runtime_with(MetadataLimits::DEFAULT),
        &test_pack("metadata-bomb"),
    );
    assert!(matches!(err, LoadError::Metadata { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("the pack offers 300 templates, over the limit of 256; raise it with max_templates_per_pack (--max-templates-per-pack or COMFYUI_MCP_MAX_TEMPLATES_PER_PACK)"),
        "{text}"
    );
    // One problem only: the walk stops at the count.
    assert!(!text.contains("description"), "{text}");
}

#[test]
fn metadata_bomb_strings_and_lists_are_refused_past_the_count() {
    let limits = MetadataLimits {
        max_templates_per_pack: 1000,
        ..MetadataLimits::DEFAULT
    };
    let text = load_err(&runtime_with(limits), &test_pack("metadata-bomb")).to_string();
    assert!(
        text.contains("template `bomb-0` description is 524288 bytes, over the limit of 4096 bytes; raise it with max_description_bytes (--max-description-bytes or COMFYUI_MCP_MAX_DESCRIPTION_BYTES)"),
        "{text}"
    );
    assert!(
        text.contains("template `bomb-0` tags has 1000 entries, over the limit of 256; raise it with max_list_items"),
        "{text}"
    );
    let limits = MetadataLimits {
        max_templates_per_pack: 1000,
        max_metadata_bytes: 64 << 10,
        ..MetadataLimits::DEFAULT
    };
    let text = load_err(&runtime_with(limits), &test_pack("metadata-bomb")).to_string();
    assert!(
        text.contains("over the limit of 65536 bytes; raise it with max_metadata_bytes"),
        "{text}"
    );
    assert!(text.contains("metadata text totals"), "{text}");
}

#[test]
fn bad_specs_are_refused_naming_every_problem() {
    let err = load_err(
        &runtime_with(MetadataLimits::DEFAULT),
        &test_pack("bad-specs"),
    );
    let text = err.to_string();
    for expected in [
        "parameter `nan_bounds`: minimum is NaN, not a finite number",
        "parameter `nan_bounds`: maximum is inf, not a finite number",
        "parameter `upside_down`: minimum 10 is above maximum 1",
        "parameter `step_zero`: multiple-of is 0",
        "parameter `template`: the name is reserved for the server's own arguments (reserved: template, wait, timeout",
        "parameter `Bad Name`: the name must be 1-64 characters of a-z, 0-9 and `_`",
        "parameter `dup`: declared twice",
        "template `bad-specs` parameter `escape` description contains the control character U+001B at byte 4",
        "parameter `bad_default`: default is invalid: 99 is out of range: must be between 0 and 10",
        "parameter `choice`: choice `a` is listed twice",
        "parameter `choice`: alias `z` points at `nowhere`, which is not a choice",
        "parameter `choice`: default is invalid: `c` is not a valid choice",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    // The message itself carries no escape or line break from the pack.
    assert!(
        !text.chars().any(pack_runtime::metadata::forbidden_char),
        "{text:?}"
    );
}

#[test]
fn a_pack_at_the_template_cap_loads_and_one_below_is_refused() {
    let path = test_pack("template-cap");
    let pack = runtime_with(MetadataLimits::DEFAULT)
        .load_file(&path)
        .expect("at the cap loads");
    assert_eq!(
        pack.templates().len(),
        MetadataLimits::DEFAULT.max_templates_per_pack,
        "the template-cap pack must offer exactly the default cap"
    );
    let last = pack.templates().last().unwrap().id.clone();
    assert!(pack.template(&last).is_some());
    pack.build(&last, &Map::new(), host()).expect("builds");
    let limits = MetadataLimits {
        max_templates_per_pack: 255,
        ..MetadataLimits::DEFAULT
    };
    let text = load_err(&runtime_with(limits), &path).to_string();
    assert!(
        text.contains("offers 256 templates, over the limit of 255"),
        "{text}"
    );
}

#[test]
fn a_pack_file_over_the_size_cap_is_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.wasm");
    // Sparse: the size is in the metadata, no byte is written (or read).
    let file = std::fs::File::create(&big).unwrap();
    file.set_len((64 << 20) + 1).unwrap();
    let err = load_err(&runtime_with(MetadataLimits::DEFAULT), &big);
    assert!(matches!(err, LoadError::TooLarge { .. }), "{err:?}");
    assert!(
        err.to_string().contains("pack file is 67108865 bytes, over the limit of 67108864 bytes; raise it with max_pack_file_bytes (--max-pack-file-bytes or COMFYUI_MCP_MAX_PACK_FILE_BYTES)"),
        "{err}"
    );
}

#[test]
fn the_pack_file_cap_is_inclusive() {
    let path = test_pack("mini");
    let size = std::fs::metadata(&path).unwrap().len();
    let at = MetadataLimits {
        max_pack_file_bytes: size,
        ..MetadataLimits::DEFAULT
    };
    runtime_with(at).load_file(&path).expect("at the cap loads");
    let below = MetadataLimits {
        max_pack_file_bytes: size - 1,
        ..MetadataLimits::DEFAULT
    };
    let err = load_err(&runtime_with(below), &path);
    assert!(
        matches!(err, LoadError::TooLarge { size: s, limit, .. } if s == size && limit == size - 1),
        "{err:?}"
    );
}

/// A file whose metadata says nothing of its size (a pipe) is still read only up
/// to the cap: the read is bounded, not just the pre-check.
#[cfg(unix)]
#[test]
fn the_read_itself_is_bounded() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.wasm");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(status.success());
    let limit = 1 << 20;
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
            let chunk = vec![0u8; 64 << 10];
            let mut written = 0usize;
            // Stops when the reader closes the pipe (EPIPE) or after 8 MiB.
            while written < 8 << 20 {
                match f.write(&chunk) {
                    Ok(n) => written += n,
                    Err(_) => break,
                }
            }
            written
        })
    };
    let rt = runtime_with(MetadataLimits {
        max_pack_file_bytes: limit,
        ..MetadataLimits::DEFAULT
    });
    let err = load_err(&rt, &fifo);
    assert!(
        matches!(err, LoadError::TooLarge { size, .. } if size == limit + 1),
        "{err:?}"
    );
    let written = writer.join().unwrap();
    assert!(
        written < 8 << 20,
        "the reader kept reading: {written} bytes"
    );
}

#[test]
fn a_huge_prompt_is_refused_before_the_pack_is_called() {
    let rt = runtime_with(MetadataLimits::DEFAULT);
    let pack = rt
        .load_file(&repo().join("templates/game-assets.wasm"))
        .expect("shipped pack loads");
    let prompt = "a".repeat(15_000_000);
    let err = pack
        .build(
            "item-icon",
            &args(json!({"prompt": prompt, "seed": 1})),
            host(),
        )
        .unwrap_err();
    let CallError::InvalidParams(errors) = &err else {
        panic!("expected invalid params, got {err:?}");
    };
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].param, "prompt");
    assert!(
        errors[0].message.starts_with("prompt is 15000000 bytes, over the limit of 65536 bytes for one text parameter; raise it with max_text_param_bytes (--max-text-param-bytes or COMFYUI_MCP_MAX_TEXT_PARAM_BYTES)"),
        "{err}"
    );
    // At the limit it goes through.
    let prompt = "a".repeat(MetadataLimits::DEFAULT.max_text_param_bytes);
    pack.build(
        "item-icon",
        &args(json!({"prompt": prompt, "seed": 1})),
        host(),
    )
    .expect("a prompt at the limit builds");
}

// ---- parameter resolution ----------------------------------------------------

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

fn template(params: Vec<ParamSpec>) -> TemplateInfo {
    TemplateInfo {
        id: "t".into(),
        name: "T".into(),
        description: String::new(),
        category: "c".into(),
        tags: vec![],
        default_width: 64,
        default_height: 64,
        params,
        postprocess: false,
    }
}

fn resolve(t: &TemplateInfo, a: Value) -> Result<params::ResolvedParams, Vec<FieldError>> {
    params::resolve(t, &args(a), &MetadataLimits::DEFAULT)
}

#[test]
fn integers_beyond_i64_or_the_spec_say_out_of_range() {
    let t = template(vec![ParamSpec {
        default: Some(ParamValue::Integer(-1)),
        minimum: Some(-1.0),
        maximum: Some(MAX_RANDOM_SEED as f64),
        ..spec("seed", ParamKind::Integer)
    }]);
    let two_63: Value = serde_json::from_str("9223372036854775808").unwrap();
    let e = resolve(&t, json!({ "seed": two_63 })).unwrap_err();
    assert_eq!(
        e[0].message,
        format!("9223372036854775808 is out of range: must be between -1 and {MAX_RANDOM_SEED}")
    );
    let e = resolve(&t, json!({"seed": 1e19})).unwrap_err();
    assert!(e[0].message.contains("is out of range"), "{e:?}");
    let e = resolve(&t, json!({"seed": MAX_RANDOM_SEED + 1})).unwrap_err();
    assert_eq!(
        e[0].message,
        format!(
            "{} is out of range: must be between -1 and {MAX_RANDOM_SEED}",
            MAX_RANDOM_SEED + 1
        )
    );
    let free = template(vec![spec("n", ParamKind::Integer)]);
    let e = resolve(&free, json!({ "n": two_63 })).unwrap_err();
    assert_eq!(
        e[0].message,
        "9223372036854775808 is out of range: must be between -9223372036854775808 and 9223372036854775807"
    );
    // Whole floats within i64 are integers, even above 2^53.
    let r = resolve(&free, json!({"n": 1e17})).unwrap();
    assert_eq!(
        r.get("n"),
        Some(&ParamValue::Integer(100_000_000_000_000_000))
    );
}

#[test]
fn the_seed_range_of_the_spec_is_honoured() {
    let t = template(vec![ParamSpec {
        minimum: Some(100.0),
        maximum: Some(164.0),
        multiple_of: Some(8),
        ..spec("seed", ParamKind::Integer)
    }]);
    assert!(params::validate_specs(&t.params).is_empty());
    for given in [json!({}), json!({"seed": -1}), json!({"seed": null})] {
        for _ in 0..50 {
            let seed = resolve(&t, given.clone()).unwrap().seed().unwrap();
            assert!((104..=160).contains(&seed) && seed % 8 == 0, "{seed}");
        }
    }
    assert_eq!(resolve(&t, json!({"seed": 112})).unwrap().seed(), Some(112));
    let e = resolve(&t, json!({"seed": 99})).unwrap_err();
    assert!(e[0].message.contains("out of range"), "{e:?}");
    // -1 means random even when the spec starts at 0.
    let zero = template(vec![ParamSpec {
        minimum: Some(0.0),
        maximum: Some(10.0),
        ..spec("seed", ParamKind::Integer)
    }]);
    let seed = resolve(&zero, json!({"seed": -1})).unwrap().seed().unwrap();
    assert!((0..=10).contains(&seed));
    // A range with no drawable seed is refused at load.
    let none = vec![ParamSpec {
        minimum: Some(-10.0),
        maximum: Some(-2.0),
        ..spec("seed", ParamKind::Integer)
    }];
    let p = params::validate_specs(&none);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].to_string().contains("no random seed can be drawn"),
        "{p:?}"
    );
}

#[test]
fn non_finite_and_misplaced_constraints_are_refused() {
    let cases: Vec<(ParamSpec, &str)> = vec![
        (
            ParamSpec {
                default: Some(ParamValue::Number(f64::NAN)),
                ..spec("cfg", ParamKind::Number)
            },
            "default is NaN, not a finite number",
        ),
        (
            ParamSpec {
                minimum: Some(f64::NEG_INFINITY),
                ..spec("cfg", ParamKind::Number)
            },
            "minimum is -inf, not a finite number",
        ),
        (
            ParamSpec {
                multiple_of: Some(8),
                ..spec("cfg", ParamKind::Number)
            },
            "multiple-of can only be declared on integer parameters",
        ),
        (
            ParamSpec {
                choices: vec!["a".into()],
                ..spec("n", ParamKind::Integer)
            },
            "choices and aliases can only be declared on text parameters",
        ),
        (
            ParamSpec {
                maximum: Some(3.0),
                ..spec("s", ParamKind::Text)
            },
            "maximum can only be declared on integer and number parameters",
        ),
        (
            ParamSpec {
                choices: vec!["a".into(), "b".into()],
                aliases: vec![Alias {
                    name: "b".into(),
                    target: "a".into(),
                }],
                ..spec("s", ParamKind::Text)
            },
            "alias `b` is spelled like a choice or another alias",
        ),
        (
            ParamSpec {
                required: true,
                default: Some(ParamValue::Boolean(true)),
                ..spec("b", ParamKind::Boolean)
            },
            "required but also has a default",
        ),
        (
            ParamSpec {
                choices: vec!["a".into()],
                aliases: vec![Alias {
                    name: "b".into(),
                    target: "a".into(),
                }],
                default: Some(ParamValue::Text("b".into())),
                ..spec("s", ParamKind::Text)
            },
            "default is invalid: `b` is an alias of `a`; declare the choice itself",
        ),
        (spec("wait", ParamKind::Boolean), "reserved"),
        (spec("timeout", ParamKind::Number), "reserved"),
        (spec("9lives", ParamKind::Text), "snake_case"),
        (spec(&"a".repeat(65), ParamKind::Text), "snake_case"),
        (spec("", ParamKind::Text), "snake_case"),
    ];
    for (s, expected) in cases {
        let problems = params::validate_specs(std::slice::from_ref(&s));
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert!(
            text.iter().any(|t| t.contains(expected)),
            "{s:?}: expected {expected:?}, got {text:?}"
        );
    }
    let ok = spec(&"a".repeat(64), ParamKind::Text);
    assert!(params::validate_specs(&[ok]).is_empty());
}

// ---- property tests ----------------------------------------------------------

fn arb_kind() -> impl Strategy<Value = ParamKind> {
    prop_oneof![
        Just(ParamKind::Text),
        Just(ParamKind::Integer),
        Just(ParamKind::Number),
        Just(ParamKind::Boolean),
    ]
}

fn arb_bound() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![
        Just(None),
        (-1000i64..1000).prop_map(|x| Some(x as f64)),
        (-1e6f64..1e6).prop_map(Some),
        Just(Some(f64::NAN)),
        Just(Some(i64::MAX as f64)),
    ]
}

/// Any spec, coherent or not; the tests keep those `validate_specs` accepts.
fn arb_spec(name: &'static str) -> impl Strategy<Value = ParamSpec> {
    (
        arb_kind(),
        any::<bool>(),
        arb_bound(),
        arb_bound(),
        prop_oneof![Just(None), (0u32..10).prop_map(Some)],
        proptest::collection::vec("[a-c]{1,2}", 0..4),
        any::<bool>(),
        arb_value(),
    )
        .prop_map(
            move |(kind, required, minimum, maximum, multiple_of, choices, has_default, d)| {
                let default = if has_default {
                    json_to_value(kind, &d)
                } else {
                    None
                };
                let text = kind == ParamKind::Text;
                ParamSpec {
                    name: name.into(),
                    kind,
                    description: String::new(),
                    examples: vec![],
                    required,
                    default,
                    minimum,
                    maximum,
                    multiple_of,
                    aliases: if text && !choices.is_empty() {
                        vec![Alias {
                            name: "zz".into(),
                            target: choices[0].clone(),
                        }]
                    } else {
                        vec![]
                    },
                    choices,
                }
            },
        )
}

fn json_to_value(kind: ParamKind, v: &Value) -> Option<ParamValue> {
    match (kind, v) {
        (ParamKind::Text, Value::String(s)) => Some(ParamValue::Text(s.clone())),
        (ParamKind::Integer, Value::Number(n)) => n.as_i64().map(ParamValue::Integer),
        (ParamKind::Number, Value::Number(n)) => n.as_f64().map(ParamValue::Number),
        (ParamKind::Boolean, Value::Bool(b)) => Some(ParamValue::Boolean(*b)),
        _ => None,
    }
}

fn arb_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-2000i64..2000).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e7f64..1e7).prop_map(Value::from),
        Just(json!(-1)),
        Just(json!(1e300)),
        "[a-c]{0,3}|zz".prop_map(Value::from),
        Just(json!([1, 2])),
        Just(json!({"a": 1})),
    ]
}

fn within_spec(spec: &ParamSpec, v: &ParamValue) -> Result<(), String> {
    let lo = spec.minimum.unwrap_or(f64::NEG_INFINITY);
    let hi = spec.maximum.unwrap_or(f64::INFINITY);
    match (spec.kind, v) {
        (ParamKind::Integer, ParamValue::Integer(i)) => {
            let i128v = i128::from(*i);
            if spec.minimum.is_some_and(|lo| i128v < lo.ceil() as i128)
                || spec.maximum.is_some_and(|hi| i128v > hi.floor() as i128)
            {
                return Err(format!("{i} outside {lo}..={hi}"));
            }
            if let Some(m) = spec.multiple_of
                && i % i64::from(m) != 0
            {
                return Err(format!("{i} not a multiple of {m}"));
            }
            if spec.name == params::SEED_PARAM && *i == -1 {
                return Err("seed -1 was not made concrete".into());
            }
        }
        (ParamKind::Number, ParamValue::Number(x)) => {
            if !x.is_finite() || *x < lo || *x > hi {
                return Err(format!("{x} outside {lo}..={hi}"));
            }
        }
        (ParamKind::Text, ParamValue::Text(s)) => {
            if !spec.choices.is_empty() && !spec.choices.contains(s) {
                return Err(format!("{s} not a choice"));
            }
        }
        (ParamKind::Boolean, ParamValue::Boolean(_)) => {}
        (kind, v) => return Err(format!("{v:?} is not of kind {kind:?}")),
    }
    Ok(())
}

const NAMES: [&str; 3] = ["seed", "alpha", "beta"];

/// Turns an arbitrary spec into one `validate_specs` accepts, dropping what is
/// incoherent, so most generated cases exercise resolution.
fn repair(mut s: ParamSpec) -> ParamSpec {
    if !matches!(s.kind, ParamKind::Integer | ParamKind::Number) {
        s.minimum = None;
        s.maximum = None;
    }
    if s.kind != ParamKind::Integer {
        s.multiple_of = None;
    }
    if s.kind != ParamKind::Text {
        s.choices.clear();
        s.aliases.clear();
    }
    s.minimum = s.minimum.filter(|x| x.is_finite());
    s.maximum = s.maximum.filter(|x| x.is_finite());
    if let (Some(lo), Some(hi)) = (s.minimum, s.maximum)
        && lo > hi
    {
        (s.minimum, s.maximum) = (Some(hi), Some(lo));
    }
    if s.multiple_of == Some(0) {
        s.multiple_of = Some(1);
    }
    let mut seen = Vec::new();
    s.choices.retain(|c| {
        let fresh = !seen.contains(c);
        seen.push(c.clone());
        fresh
    });
    if s.required {
        s.default = None;
    }
    if !params::validate_specs(std::slice::from_ref(&s)).is_empty() {
        s.default = None;
    }
    if !params::validate_specs(std::slice::from_ref(&s)).is_empty() {
        s.minimum = None;
        s.maximum = None;
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1000,
        max_global_rejects: 20_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn resolution_accepts_only_values_within_spec(
        specs in (arb_spec(NAMES[0]), arb_spec(NAMES[1]), arb_spec(NAMES[2])),
        given in proptest::collection::btree_map(
            prop_oneof![Just("seed"), Just("alpha"), Just("beta"), Just("other")],
            arb_value(),
            0..4,
        ),
        text_cap in 0usize..4,
    ) {
        let raw = vec![specs.0, specs.1, specs.2];
        // validate_specs never panics, whatever the spec.
        let _ = params::validate_specs(&raw);
        let specs: Vec<ParamSpec> = raw.into_iter().map(repair).collect();
        let problems = params::validate_specs(&specs);
        prop_assume!(problems.is_empty());
        let t = template(specs.clone());
        // The schema of a served spec never carries a non-finite number.
        let schema = params::input_schema(&t);
        prop_assert!(!schema.to_string().contains("null"), "{}", schema);
        let limits = MetadataLimits { max_text_param_bytes: text_cap, ..MetadataLimits::DEFAULT };
        let args: Map<String, Value> =
            given.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
        match params::resolve(&t, &args, &limits) {
            Ok(resolved) => {
                prop_assert!(!args.contains_key("other"));
                for s in &specs {
                    let value = resolved.get(&s.name);
                    let given = args.get(&s.name).filter(|v| !v.is_null());
                    if s.required {
                        prop_assert!(value.is_some(), "required {} missing", s.name);
                    }
                    if given.is_none() && s.name != params::SEED_PARAM {
                        prop_assert_eq!(value, s.default.as_ref(), "default of {}", s.name);
                    }
                    if let Some(v) = value {
                        let ok = within_spec(s, v);
                        prop_assert!(ok.is_ok(), "{}: {:?}", s.name, ok);
                    }
                    if let Some(Value::String(text)) = given {
                        prop_assert!(text.len() <= limits.max_text_param_bytes);
                    }
                    let random_default =
                        matches!(s.default, None | Some(ParamValue::Integer(-1)));
                    let asks_random = given.and_then(Value::as_f64) == Some(-1.0)
                        || (given.is_none() && random_default);
                    if s.name == params::SEED_PARAM && s.kind == ParamKind::Integer && asks_random
                    {
                        let seed = resolved.seed();
                        prop_assert!(
                            seed.is_some_and(|x| (0..=MAX_RANDOM_SEED).contains(&x)),
                            "random seed {:?}", seed
                        );
                    }
                }
            }
            Err(errors) => {
                prop_assert!(!errors.is_empty());
                for e in &errors {
                    prop_assert!(
                        NAMES.contains(&e.param.as_str()) || e.param == "other",
                        "error names no parameter: {:?}", e
                    );
                    prop_assert!(!e.message.is_empty());
                    // Errors name the given parameter, never a made-up one.
                    prop_assert!(
                        args.contains_key(&e.param) || specs.iter().any(|s| s.name == e.param && s.required),
                        "{:?} for args {:?}", e, args
                    );
                }
            }
        }
    }
}

/// Metadata strings: each field with a control character is refused, naming the field.
#[test]
fn control_characters_are_refused_in_every_metadata_string() {
    let base_pack = pack_runtime::PackInfo {
        name: "p".into(),
        version: "1.0.0".into(),
        description: "d".into(),
    };
    let base = template(vec![ParamSpec {
        choices: vec!["a".into()],
        aliases: vec![Alias {
            name: "b".into(),
            target: "a".into(),
        }],
        default: Some(ParamValue::Text("a".into())),
        ..spec("s", ParamKind::Text)
    }]);
    let check = |info: &pack_runtime::PackInfo, t: &TemplateInfo| {
        pack_runtime::metadata::validate_metadata(
            info,
            std::slice::from_ref(t),
            &MetadataLimits::DEFAULT,
        )
    };
    check(&base_pack, &base).expect("the base is valid");
    let bad = "ok\u{1b}[31m";
    type Mutation = Box<dyn Fn(&mut pack_runtime::PackInfo, &mut TemplateInfo)>;
    let cases: Vec<(&str, Mutation)> = vec![
        ("the pack name", Box::new(|p, _| p.name = bad.into())),
        ("the pack version", Box::new(|p, _| p.version = bad.into())),
        (
            "the pack description",
            Box::new(|p, _| p.description = "line\nforged".into()),
        ),
        ("template `t` name", Box::new(|_, t| t.name = bad.into())),
        (
            "template `t` description",
            Box::new(|_, t| t.description = "bidi \u{202E}txt".into()),
        ),
        (
            "template `t` category",
            Box::new(|_, t| t.category = bad.into()),
        ),
        (
            "template `t` tags #1",
            Box::new(|_, t| t.tags = vec![bad.into()]),
        ),
        (
            "template `t` parameter `s` description",
            Box::new(|_, t| t.params[0].description = "\u{7f}".into()),
        ),
        (
            "template `t` parameter `s` choices #2",
            Box::new(|_, t| t.params[0].choices.push(bad.into())),
        ),
        (
            "template `t` parameter `s` alias names #1",
            Box::new(|_, t| t.params[0].aliases[0].name = bad.into()),
        ),
    ];
    for (field, mutate) in cases {
        let (mut p, mut t) = (base_pack.clone(), base.clone());
        mutate(&mut p, &mut t);
        let err = check(&p, &t).expect_err(field).to_string();
        assert!(
            err.contains(&format!("{field} contains the control character U+")),
            "{field}: {err}"
        );
    }
    // A bad template id is quoted escaped in the message.
    let mut t = base.clone();
    t.id = "x\u{1b}[2Jy".into();
    let err = check(&base_pack, &t).unwrap_err().to_string();
    assert!(err.contains(r"template id `x\u{1b}[2Jy`"), "{err}");
    assert!(!err.contains('\u{1b}'), "{err:?}");
}

#[test]
fn caps_on_counts_and_lengths_are_inclusive() {
    let info = pack_runtime::PackInfo {
        name: "p".into(),
        version: "1".into(),
        description: String::new(),
    };
    let limits = MetadataLimits::DEFAULT;
    let mut t = template(
        (0..limits.max_params_per_template)
            .map(|i| spec(&format!("p{i}"), ParamKind::Text))
            .collect(),
    );
    t.name = "n".repeat(limits.max_name_bytes);
    t.description = "d".repeat(limits.max_description_bytes);
    t.tags = (0..limits.max_list_items).map(|i| format!("{i}")).collect();
    t.tags[0] = "t".repeat(limits.max_item_bytes);
    let check = |t: &TemplateInfo| {
        pack_runtime::metadata::validate_metadata(&info, std::slice::from_ref(t), &limits)
            .map_err(|e| e.to_string())
    };
    check(&t).expect("everything at its cap");
    type Grow = Box<dyn Fn(&mut TemplateInfo)>;
    let over: Vec<(Grow, &str)> = vec![
        (
            Box::new(|t| t.params.push(spec("extra", ParamKind::Text))),
            "declares 65 parameters, over the limit of 64; raise it with max_params_per_template",
        ),
        (
            Box::new(|t| t.name.push('n')),
            "template `t` name is 201 bytes, over the limit of 200 bytes; raise it with max_name_bytes",
        ),
        (
            Box::new(|t| t.description.push('d')),
            "description is 4097 bytes, over the limit of 4096 bytes",
        ),
        (
            Box::new(|t| t.tags.push("x".into())),
            "tags has 257 entries, over the limit of 256",
        ),
        (
            Box::new(|t| t.tags[0].push('t')),
            "template `t` tags #1 is 201 bytes, over the limit of 200 bytes; raise it with max_item_bytes",
        ),
    ];
    for (mutate, expected) in over {
        let mut t2 = t.clone();
        mutate(&mut t2);
        let err = check(&t2).unwrap_err();
        assert!(err.contains(expected), "expected {expected:?} in {err}");
    }
}

#[test]
fn the_template_lookup_is_by_id() {
    let rt = runtime_with(MetadataLimits::DEFAULT);
    let pack: Pack = rt.load_file(&test_pack("template-cap")).unwrap();
    for t in pack.templates() {
        assert_eq!(pack.template(&t.id).map(|x| &x.id), Some(&t.id));
    }
    assert!(pack.template("cap-999").is_none());
}

#[test]
fn many_unknown_arguments_give_a_bounded_error() {
    let t = template(vec![spec("prompt", ParamKind::Text)]);
    let given: Map<String, Value> = (0..10_000).map(|i| (format!("x{i}"), json!(1))).collect();
    let e = params::resolve(&t, &given, &MetadataLimits::DEFAULT).unwrap_err();
    assert_eq!(e.len(), params::MAX_UNKNOWN_REPORTED + 1, "{e:?}");
    assert_eq!(
        e.last().unwrap().message,
        format!(
            "and {} more unknown parameters, not listed",
            10_000 - params::MAX_UNKNOWN_REPORTED
        )
    );
}
