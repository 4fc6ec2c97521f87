//! Test pack `bad-specs`: one template whose parameter specs break the host's rules
//! at once: NaN and infinite bounds, minimum above maximum, `multiple-of` 0, the
//! reserved name `template`, names that are not snake_case, a duplicate name, a
//! terminal escape in a description, a default outside its range and outside its
//! choices, duplicate choices, an alias to a non-choice. The host must refuse it at
//! load and name every problem.

use test_pack_support::{
    Alias, BuildError, Guest, PackInfo, Param, ParamSpec, TemplateInfo, Value, ValueKind,
    pack_info, template,
};

struct Pack;

fn spec(name: &str, kind: ValueKind) -> ParamSpec {
    ParamSpec {
        name: name.to_string(),
        kind,
        description: String::new(),
        required: false,
        default: None,
        minimum: None,
        maximum: None,
        multiple_of: None,
        choices: Vec::new(),
        aliases: Vec::new(),
    }
}

impl Guest for Pack {
    fn info() -> PackInfo {
        pack_info!()
    }

    fn list() -> Vec<TemplateInfo> {
        let params = vec![
            ParamSpec {
                minimum: Some(f64::NAN),
                maximum: Some(f64::INFINITY),
                ..spec("nan_bounds", ValueKind::Number)
            },
            ParamSpec {
                minimum: Some(10.0),
                maximum: Some(1.0),
                ..spec("upside_down", ValueKind::Integer)
            },
            ParamSpec {
                multiple_of: Some(0),
                ..spec("step_zero", ValueKind::Integer)
            },
            spec("template", ValueKind::Text),
            spec("Bad Name", ValueKind::Text),
            spec("dup", ValueKind::Text),
            spec("dup", ValueKind::Text),
            ParamSpec {
                description: "fine\u{1b}[2J\u{1b}[31mFORGED LOG LINE\nERROR".to_string(),
                ..spec("escape", ValueKind::Text)
            },
            ParamSpec {
                default: Some(Value::Integer(99)),
                minimum: Some(0.0),
                maximum: Some(10.0),
                ..spec("bad_default", ValueKind::Integer)
            },
            ParamSpec {
                default: Some(Value::Text("c".to_string())),
                choices: vec!["a".to_string(), "a".to_string(), "b".to_string()],
                aliases: vec![Alias {
                    name: "z".to_string(),
                    target: "nowhere".to_string(),
                }],
                ..spec("choice", ValueKind::Text)
            },
        ];
        vec![template(
            "bad-specs",
            "Bad specs",
            "Every parameter here is wrong.",
            params,
        )]
    }

    fn build(id: String, _params: Vec<Param>) -> Result<String, BuildError> {
        Err(BuildError::UnknownTemplate(id))
    }
}

test_pack_support::export!(Pack);
