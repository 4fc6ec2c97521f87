//! Test pack `bad-specs`: one template whose parameter specs break the host's rules
//! at once: NaN and infinite bounds, minimum above maximum, `multiple-of` 0, the
//! reserved name `template`, names that are not snake_case, a duplicate name, a
//! terminal escape in a description, a default outside its range and outside its
//! choices, duplicate choices, an alias to a non-choice. The host must refuse it at
//! load and name every problem.

use test_pack_support::{
    Alias, ParamSpec, TemplateInfo, Value, ValueKind, int_param, prompt_param, template,
    unknown_template,
};

/// An optional parameter without description, default, bounds or choices.
fn spec(name: &str, kind: ValueKind) -> ParamSpec {
    ParamSpec {
        name: name.to_string(),
        kind,
        description: String::new(),
        default: None,
        ..prompt_param()
    }
}

test_pack_support::pack! { list: list, build: unknown_template }

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
        int_param("bad_default", "", 99, 0, 10),
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
