//! MCP prompts: one prompt per template of the live catalog, named after the template id. Its
//! arguments are the template's required parameters plus an optional `style`; `prompts/get`
//! answers with one user message telling the agent which tool to call (the template's own
//! tool and `generate_image` with `template`), with the given values, the style folded into
//! the prompt text, and the template's other settings with their defaults and ranges.
//!
//! Invariants: the prompt list is derived from one catalog snapshot, so it follows hot reload
//! exactly like the tool list (the server sends `notifications/prompts/list_changed` with the
//! tools' and resources' ones); an unknown prompt, a missing required argument, an argument
//! the prompt does not take, a value that is not text (or a number or boolean) or cannot be
//! read as the parameter's type, and a value over [`McpOptions::max_prompt_argument_bytes`]
//! are protocol errors (`-32602`) naming what exists, what is missing or the limit; names from
//! the client are cut to [`SHOWN_NAME_CHARS`] characters in messages.

use rmcp::ErrorData as McpError;
use rmcp::model::{GetPromptResult, JsonObject, Prompt, PromptArgument, PromptMessage, Role};
use serde_json::{Map, Value, json};

use super::definitions::{GENERATE_IMAGE, is_template_tool_name};
use super::options::McpOptions;
use crate::catalog::{Catalog, TemplateEntry};
use pack_runtime::{ParamKind, ParamSpec};

/// Default of [`McpOptions::max_prompt_argument_bytes`].
pub const DEFAULT_MAX_PROMPT_ARGUMENT_BYTES: usize = 4096;
/// The optional argument every prompt takes (unless the template has a parameter of that
/// name): a visual style folded into the prompt text.
pub const STYLE_ARG: &str = "style";
/// The parameter a style is folded into, when the template has it.
pub const PROMPT_PARAM: &str = "prompt";
/// Names from the client longer than this (in characters) are cut in messages.
pub const SHOWN_NAME_CHARS: usize = 120;

/// `prompts/list`: one prompt per template.
pub fn list(catalog: &Catalog) -> Vec<Prompt> {
    catalog.templates().iter().map(prompt).collect()
}

fn prompt(entry: &TemplateEntry) -> Prompt {
    let info = &entry.info;
    let mut arguments: Vec<PromptArgument> = info
        .params
        .iter()
        .filter(|p| p.required)
        .map(|p| {
            PromptArgument::new(p.name.clone())
                .with_description(format!("{} ({})", p.description, describe_range(p)))
                .with_required(true)
        })
        .collect();
    if info.param(STYLE_ARG).is_none() {
        arguments.push(
            PromptArgument::new(STYLE_ARG)
                .with_description(
                    "Optional visual style folded into the prompt text, e.g. \"pixel art, 16-bit palette\"",
                )
                .with_required(false),
        );
    }
    Prompt::new(
        info.id.clone(),
        Some(format!(
            "Generate with template `{}` ({}): {}",
            info.id, info.name, info.description
        )),
        Some(arguments),
    )
    .with_title(info.name.clone())
}

/// `prompts/get`.
pub fn get(
    catalog: &Catalog,
    options: &McpOptions,
    name: &str,
    arguments: Option<JsonObject>,
) -> Result<GetPromptResult, McpError> {
    let entry = catalog.template(name).ok_or_else(|| {
        let available: Vec<&str> = catalog
            .templates()
            .iter()
            .map(|t| t.info.id.as_str())
            .collect();
        McpError::invalid_params(
            format!(
                "unknown prompt `{}`; available prompts: {}",
                cut(name),
                if available.is_empty() {
                    "none (no template is loaded)".to_owned()
                } else {
                    available.join(", ")
                }
            ),
            Some(json!({ "prompt": cut(name) })),
        )
    })?;
    let given = read_arguments(entry, options, arguments.unwrap_or_default())?;
    let text = message(entry, options, given);
    Ok(
        GetPromptResult::new(vec![PromptMessage::new_text(Role::User, text)]).with_description(
            format!(
                "Generate with template `{}` ({})",
                entry.info.id, entry.info.name
            ),
        ),
    )
}

/// The arguments as parameter values (`style` separately), checked against the prompt.
struct Given {
    values: Map<String, Value>,
    style: Option<String>,
}

fn read_arguments(
    entry: &TemplateEntry,
    options: &McpOptions,
    arguments: JsonObject,
) -> Result<Given, McpError> {
    let info = &entry.info;
    let takes_style = info.param(STYLE_ARG).is_none();
    let error = |message: String| {
        McpError::invalid_params(
            format!("prompt `{}`: {message}", info.id),
            Some(json!({ "prompt": info.id })),
        )
    };
    let mut values = Map::new();
    let mut style = None;
    for (name, value) in arguments {
        let text = match value {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => continue,
            other => {
                return Err(error(format!(
                    "argument `{}` must be text, got {}",
                    cut(&name),
                    json_type(&other)
                )));
            }
        };
        if text.len() > options.max_prompt_argument_bytes {
            return Err(error(format!(
                "argument `{}` is {} bytes, over the limit of {} bytes per argument (COMFYUI_MCP_MAX_PROMPT_ARGUMENT_BYTES)",
                cut(&name),
                text.len(),
                options.max_prompt_argument_bytes
            )));
        }
        if takes_style && name == STYLE_ARG {
            style = Some(text).filter(|s| !s.trim().is_empty());
            continue;
        }
        let Some(spec) = info.param(&name).filter(|p| p.required) else {
            return Err(error(format!(
                "unknown argument `{}`; arguments: {}",
                cut(&name),
                argument_names(entry).join(", ")
            )));
        };
        values.insert(name.clone(), typed(spec, &text).map_err(error)?);
    }
    let missing: Vec<&str> = info
        .params
        .iter()
        .filter(|p| p.required && !values.contains_key(&p.name))
        .map(|p| p.name.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(error(format!(
            "missing required argument(s): {}; arguments: {}",
            missing
                .iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(", "),
            argument_names(entry).join(", ")
        )));
    }
    Ok(Given { values, style })
}

fn argument_names(entry: &TemplateEntry) -> Vec<String> {
    prompt(entry)
        .arguments
        .unwrap_or_default()
        .into_iter()
        .map(|a| {
            if a.required == Some(true) {
                format!("{} (required)", a.name)
            } else {
                a.name
            }
        })
        .collect()
}

/// A prompt argument (text) as a value of the parameter's type.
fn typed(spec: &ParamSpec, text: &str) -> Result<Value, String> {
    let trimmed = text.trim();
    let bad = |what: &str| {
        format!(
            "argument `{}` must be {what}, got {:?}",
            spec.name,
            cut(text)
        )
    };
    match spec.kind {
        ParamKind::Text if text.trim().is_empty() => {
            Err(format!("argument `{}` must not be empty", spec.name))
        }
        ParamKind::Text => Ok(Value::String(text.to_owned())),
        ParamKind::Integer => trimmed
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| bad("a whole number")),
        ParamKind::Number => trimmed
            .parse::<f64>()
            .ok()
            .and_then(|x| serde_json::Number::from_f64(x).map(Value::Number))
            .ok_or_else(|| bad("a number")),
        ParamKind::Boolean => match trimmed {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(bad("true or false")),
        },
        // An image argument is its source, as text (see params::IMAGE_SOURCES).
        ParamKind::Image | ParamKind::Mask if trimmed.is_empty() => {
            Err(format!("argument `{}` must not be empty", spec.name))
        }
        ParamKind::Image | ParamKind::Mask => Ok(Value::String(trimmed.to_owned())),
    }
}

/// The parameter the style goes into: `prompt`, else the first required text parameter.
fn style_target(entry: &TemplateEntry) -> Option<&ParamSpec> {
    let info = &entry.info;
    info.param(PROMPT_PARAM)
        .filter(|p| p.kind == ParamKind::Text)
        .or_else(|| {
            info.params
                .iter()
                .find(|p| p.required && p.kind == ParamKind::Text)
        })
}

fn message(entry: &TemplateEntry, options: &McpOptions, given: Given) -> String {
    let info = &entry.info;
    let mut call = given.values;
    let mut style_note = String::new();
    if let Some(style) = &given.style {
        match style_target(entry) {
            Some(target) => {
                let text = match call.get(&target.name).and_then(Value::as_str) {
                    Some(prompt) => format!("{}, {style}", prompt.trim_end_matches([',', ' '])),
                    None => style.clone(),
                };
                call.insert(target.name.clone(), Value::String(text));
            }
            None => {
                style_note = format!(
                    "\nThis template has no text prompt parameter, so the style \"{style}\" cannot be passed; choose settings that suit it.\n"
                );
            }
        }
    }
    let arguments =
        serde_json::to_string_pretty(&Value::Object(call)).unwrap_or_else(|_| "{}".to_owned());
    let own_tool = options.per_template_tools && is_template_tool_name(&info.id);
    let how = if own_tool {
        format!(
            "Call the tool `{id}` with these arguments (or `{GENERATE_IMAGE}` with the same arguments plus \"template\": \"{id}\"):",
            id = info.id
        )
    } else {
        format!(
            "Call the tool `{GENERATE_IMAGE}` with these arguments plus \"template\": \"{}\":",
            info.id
        )
    };
    let settings: Vec<String> = info
        .params
        .iter()
        .filter(|p| !p.required)
        .map(setting_line)
        .collect();
    let mut out = format!(
        "Generate an image with the ComfyUI workflow template `{}` ({}, pack {} {}): {}\n\n{how}\n\n{arguments}\n{style_note}",
        info.id,
        info.name,
        entry.pack.name,
        entry.pack.version,
        info.description.trim_end_matches('.'),
    );
    if !settings.is_empty() {
        out.push_str(
            "\nOther settings you may add (the defaults are good starting points; stay inside the ranges; omit seed or pass -1 for a random one):\n",
        );
        out.push_str(&settings.join("\n"));
        out.push('\n');
    }
    out.push_str(&format!(
        "\nDefault size: {}x{}. Pass \"wait\": true to get the images in the result (with progress notifications), or poll get_workflow_status with the prompt_id the call returns. Call list_models to see the installed checkpoints.",
        info.default_width, info.default_height
    ));
    out
}

/// `- steps (integer): default 20; from 1 to 100. Sampling steps.`
fn setting_line(p: &ParamSpec) -> String {
    let default = p
        .default
        .as_ref()
        .map(|d| format!("default {}", d.to_json()))
        .unwrap_or_else(|| "no default".to_owned());
    format!(
        "- {} ({}): {default}; {}. {}",
        p.name,
        p.kind.json_type(),
        describe_range(p),
        p.description
    )
}

/// `from 1 to 100, a multiple of 8` / `one of a, b` / `any string`.
fn describe_range(p: &ParamSpec) -> String {
    let mut parts = Vec::new();
    let show = |x: f64| {
        if p.kind == ParamKind::Integer && x.fract() == 0.0 {
            format!("{}", x as i64)
        } else {
            format!("{x}")
        }
    };
    match (p.minimum, p.maximum) {
        (Some(min), Some(max)) => parts.push(format!("from {} to {}", show(min), show(max))),
        (Some(min), None) => parts.push(format!("at least {}", show(min))),
        (None, Some(max)) => parts.push(format!("at most {}", show(max))),
        (None, None) => {}
    }
    if let Some(m) = p.multiple_of {
        parts.push(format!("a multiple of {m}"));
    }
    if !p.choices.is_empty() {
        parts.push(format!("one of {}", p.choices.join(", ")));
    }
    if parts.is_empty() {
        parts.push(format!("any {}", p.kind.json_type()));
    }
    parts.join(", ")
}

fn cut(name: &str) -> String {
    name.chars().take(SHOWN_NAME_CHARS).collect()
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
        _ => "a scalar",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pack_runtime::ParamValue;

    fn spec(name: &str, kind: ParamKind, required: bool) -> ParamSpec {
        ParamSpec {
            name: name.into(),
            kind,
            description: format!("the {name}"),
            required,
            default: None,
            minimum: None,
            maximum: None,
            multiple_of: None,
            choices: Vec::new(),
            aliases: Vec::new(),
            examples: Vec::new(),
        }
    }

    #[test]
    fn arguments_are_typed_like_the_parameters() {
        let steps = ParamSpec {
            minimum: Some(1.0),
            maximum: Some(100.0),
            ..spec("steps", ParamKind::Integer, true)
        };
        assert_eq!(typed(&steps, " 12 "), Ok(json!(12)));
        let e = typed(&steps, "twelve").unwrap_err();
        assert!(e.contains("must be a whole number"), "{e}");
        assert_eq!(describe_range(&steps), "from 1 to 100");
        let flag = spec("tile", ParamKind::Boolean, true);
        assert_eq!(typed(&flag, "true"), Ok(json!(true)));
        assert!(typed(&flag, "yes").is_err());
        let text = spec("prompt", ParamKind::Text, true);
        assert!(
            typed(&text, "  ")
                .unwrap_err()
                .contains("must not be empty")
        );
        let cfg = spec("cfg", ParamKind::Number, true);
        assert_eq!(typed(&cfg, "7.5"), Ok(json!(7.5)));
        assert!(typed(&cfg, "NaN").is_err());
    }

    #[test]
    fn setting_lines_show_defaults_and_ranges() {
        let width = ParamSpec {
            default: Some(ParamValue::Integer(512)),
            minimum: Some(64.0),
            maximum: Some(2048.0),
            multiple_of: Some(8),
            ..spec("width", ParamKind::Integer, false)
        };
        assert_eq!(
            setting_line(&width),
            "- width (integer): default 512; from 64 to 2048, a multiple of 8. the width"
        );
        let sampler = ParamSpec {
            choices: vec!["euler".into(), "heun".into()],
            ..spec("sampler", ParamKind::Text, false)
        };
        assert!(setting_line(&sampler).contains("no default; one of euler, heun"));
    }
}
