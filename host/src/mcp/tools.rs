//! The tools: their definitions (names, descriptions, schemas, annotations) and the calls
//! behind them — `generate_image`, `list_workflows`, `get_workflow_status`,
//! `cancel_workflow`, `load_workflow`, and one tool per template named after its id.
//!
//! Invariants: the tool list is derived from one catalog snapshot (so names, the template
//! enum and per-template schemas agree); a template whose id collides with a fixed tool or
//! is not a portable tool name (`[A-Za-z0-9_-]{1,64}`) gets no tool of its own (it stays
//! reachable through `generate_image`); every user mistake or backend failure comes back as
//! an `isError` result naming the problem and what is allowed, never as a protocol error.

use std::sync::Arc;
use std::time::Duration;

use comfyui::{JobSnapshot, JobState};
use pack_runtime::TemplateInfo;
use rmcp::ErrorData as McpError;
use rmcp::RoleServer;
use rmcp::model::{CallToolResult, JsonObject, Tool, ToolAnnotations};
use rmcp::service::RequestContext;
use serde_json::{Map, Value, json};

use super::McpOptions;
use super::progress::{ProgressReporter, WaitOutcome, wait_for_job};
use super::render::{self, tool_error, tool_success};
use super::schemas;
use super::server::Shared;
use crate::catalog::Catalog;
use crate::error::AppError;

/// Generic generation from any template.
pub const GENERATE_IMAGE: &str = "generate_image";
/// The template catalog.
pub const LIST_WORKFLOWS: &str = "list_workflows";
/// State of one job.
pub const GET_WORKFLOW_STATUS: &str = "get_workflow_status";
/// Cancel or interrupt a job.
pub const CANCEL_WORKFLOW: &str = "cancel_workflow";
/// Run a workflow JSON file.
pub const LOAD_WORKFLOW: &str = "load_workflow";
/// The tools that exist whatever the catalog holds.
pub const FIXED_TOOLS: [&str; 5] = [
    GENERATE_IMAGE,
    LIST_WORKFLOWS,
    GET_WORKFLOW_STATUS,
    CANCEL_WORKFLOW,
    LOAD_WORKFLOW,
];

/// Whether `id` can be offered as a tool name of its own.
pub fn is_template_tool_name(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && !FIXED_TOOLS.contains(&id)
}

/// Every tool offered for `catalog`.
pub fn definitions(catalog: &Catalog, options: &McpOptions) -> Vec<Tool> {
    let mut tools = vec![
        Tool::new(
            GENERATE_IMAGE,
            "Generate images with a workflow template (list_workflows describes the templates and their parameters). \
             The parameters are checked against the template (ranges, multiples of 8, choices), the ComfyUI graph is built \
             in a sandbox and queued. Returns at once with a prompt_id and status \"queued\": poll get_workflow_status, or pass \
             wait=true to wait for the images (progress notifications while waiting; thumbnails and resource links to the \
             full images in the result). seed -1 or omitted picks a random seed; the seed used is reported in metadata.",
            schemas::generate_image_input(catalog),
        )
        .with_title("Generate images from a template")
        .with_raw_output_schema(schemas::generation_output())
        .with_annotations(
            ToolAnnotations::new()
                .read_only(false)
                .destructive(false)
                .idempotent(false)
                .open_world(true),
        ),
        Tool::new(
            LIST_WORKFLOWS,
            "List the workflow templates this server offers, with their category, tags, default size, pack and every \
             parameter (type, default, range, choices). Filter by category and/or tags (all must match). Also reports \
             packs that failed to load. Use it to pick a template for generate_image.",
            schemas::list_workflows_input(),
        )
        .with_title("List workflow templates")
        .with_raw_output_schema(schemas::list_workflows_output())
        .with_annotations(ToolAnnotations::new().read_only(true).open_world(false)),
        Tool::new(
            GET_WORKFLOW_STATUS,
            "Report a job's state (queued, running, completed, failed, cancelled), progress (0..1), queue position, \
             execution time and, once completed, its saved images (absolute path, comfyui:// uri, size). Failed jobs \
             report the failing node and ComfyUI's message. Only jobs submitted through this server are known.",
            schemas::status_input(),
        )
        .with_title("Get job status")
        .with_raw_output_schema(schemas::status_output())
        .with_annotations(ToolAnnotations::new().read_only(true).open_world(true)),
        Tool::new(
            CANCEL_WORKFLOW,
            "Cancel a job submitted through this server: a queued job is removed from ComfyUI's queue, a running one is \
             interrupted (only that job, never someone else's). Without prompt_id, interrupt=true stops the job running \
             now if it is ours. Give prompt_id or interrupt=true.",
            schemas::cancel_input(),
        )
        .with_title("Cancel a job")
        .with_raw_output_schema(schemas::cancel_output())
        .with_annotations(
            ToolAnnotations::new()
                .read_only(false)
                .destructive(true)
                .idempotent(true)
                .open_world(true),
        ),
        Tool::new(
            LOAD_WORKFLOW,
            "Run a ComfyUI workflow saved in API format (ComfyUI: Export (API)) from one of the configured workflow \
             folders, with optional overrides (seed, steps, cfg_scale, sampler, scheduler, denoise, width, height, \
             batch_size, prompt, negative_prompt, or \"<node_id>.<input>\"). The graph is checked against ComfyUI's nodes \
             before it is queued. Returns at once with a prompt_id unless wait=true; reports which overrides applied.",
            schemas::load_workflow_input(),
        )
        .with_title("Run a workflow file")
        .with_raw_output_schema(schemas::load_workflow_output())
        .with_annotations(
            ToolAnnotations::new()
                .read_only(false)
                .destructive(false)
                .idempotent(false)
                .open_world(true),
        ),
    ];
    if options.per_template_tools {
        for entry in catalog.templates() {
            let info = &entry.info;
            if !is_template_tool_name(&info.id) {
                tracing::warn!(template = %info.id, "template id is not usable as a tool name; it is only reachable through generate_image");
                continue;
            }
            let description = format!(
                "{}: {} (template `{}` of pack {} {}; category {}; default size {}x{}). Same as generate_image with \
                 template=\"{}\": returns at once with a prompt_id (poll get_workflow_status) unless wait=true.",
                info.name,
                info.description.trim_end_matches('.'),
                info.id,
                entry.pack.name,
                entry.pack.version,
                info.category,
                info.default_width,
                info.default_height,
                info.id,
            );
            tools.push(
                Tool::new(
                    info.id.clone(),
                    description,
                    schemas::template_input(&entry.input_schema),
                )
                .with_title(info.name.clone())
                .with_raw_output_schema(schemas::generation_output())
                .with_annotations(
                    ToolAnnotations::new()
                        .read_only(false)
                        .destructive(false)
                        .idempotent(false)
                        .open_world(true),
                ),
            );
        }
    }
    tools
}

/// The `parameters` list of a template as `list_workflows` and template resources show
/// it: `{name, type, required, description, default?, min?, max?, multiple_of?, choices?,
/// aliases?}`.
pub fn parameters_json(info: &TemplateInfo) -> Vec<Value> {
    info.params
        .iter()
        .map(|p| {
            let mut out = json!({
                "name": p.name,
                "type": p.kind.json_type(),
                "required": p.required,
                "description": p.description,
            });
            if let Some(d) = &p.default {
                out["default"] = d.to_json();
            }
            if let Some(min) = p.minimum {
                out["min"] = number(min, p.kind);
            }
            if let Some(max) = p.maximum {
                out["max"] = number(max, p.kind);
            }
            if let Some(m) = p.multiple_of {
                out["multiple_of"] = json!(m);
            }
            if !p.choices.is_empty() {
                out["choices"] = json!(p.choices);
            }
            if !p.aliases.is_empty() {
                let aliases: Map<String, Value> = p
                    .aliases
                    .iter()
                    .map(|a| (a.name.clone(), json!(a.target)))
                    .collect();
                out["aliases"] = Value::Object(aliases);
            }
            out
        })
        .collect()
}

fn number(x: f64, kind: pack_runtime::ParamKind) -> Value {
    if kind == pack_runtime::ParamKind::Integer && x.fract() == 0.0 && x.abs() < 9.0e15 {
        json!(x as i64)
    } else {
        json!(x)
    }
}

/// A mistake in a tool's arguments, reported as an `isError` result.
#[derive(Debug, thiserror::Error)]
#[error("{tool}: {message}")]
pub struct ArgumentError {
    /// The tool called.
    pub tool: String,
    /// What was wrong and what is allowed.
    pub message: String,
}

impl ArgumentError {
    fn new(tool: &str, message: impl Into<String>) -> Self {
        Self {
            tool: tool.to_owned(),
            message: message.into(),
        }
    }

    fn into_result(self) -> CallToolResult {
        let message = self.to_string();
        tool_error(
            message.clone(),
            json!({"kind": "invalid_arguments", "message": message}),
        )
    }
}

fn app_error(error: AppError) -> CallToolResult {
    tool_error(error.to_string(), error.to_json())
}

/// The arguments of one call, consumed as they are read.
struct Args<'a> {
    tool: &'a str,
    map: Map<String, Value>,
}

impl<'a> Args<'a> {
    fn new(tool: &'a str, map: Option<JsonObject>) -> Self {
        Self {
            tool,
            map: map.unwrap_or_default(),
        }
    }

    fn err(&self, message: impl Into<String>) -> ArgumentError {
        ArgumentError::new(self.tool, message)
    }

    /// Removes `name`; JSON `null` counts as absent.
    fn take(&mut self, name: &str) -> Option<Value> {
        self.map.remove(name).filter(|v| !v.is_null())
    }

    fn string(&mut self, name: &str) -> Result<Option<String>, ArgumentError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.err(format!("`{name}` must be a string, got {other}"))),
        }
    }

    fn required_string(&mut self, name: &str) -> Result<String, ArgumentError> {
        match self.string(name)? {
            Some(s) if !s.trim().is_empty() => Ok(s),
            Some(_) => Err(self.err(format!("`{name}` must not be empty"))),
            None => Err(self.err(format!("`{name}` is required"))),
        }
    }

    fn bool(&mut self, name: &str, default: bool) -> Result<bool, ArgumentError> {
        match self.take(name) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(b),
            Some(other) => Err(self.err(format!("`{name}` must be true or false, got {other}"))),
        }
    }

    fn timeout(&mut self) -> Result<Duration, ArgumentError> {
        let max = schemas::MAX_TIMEOUT_SECS;
        match self.take("timeout") {
            None => Ok(Duration::from_secs_f64(schemas::DEFAULT_TIMEOUT_SECS)),
            Some(Value::Number(n)) => match n.as_f64() {
                Some(secs) if secs > 0.0 && secs <= max => Ok(Duration::from_secs_f64(secs)),
                _ => Err(self.err(format!(
                    "`timeout` must be a number of seconds above 0 and at most {max}, got {n}"
                ))),
            },
            Some(other) => Err(self.err(format!(
                "`timeout` must be a number of seconds above 0 and at most {max}, got {other}"
            ))),
        }
    }

    /// `wait` and `timeout`; the timeout only matters when waiting.
    fn wait(&mut self) -> Result<Option<Duration>, ArgumentError> {
        let wait = self.bool("wait", false)?;
        let timeout = self.timeout()?;
        Ok(wait.then_some(timeout))
    }

    /// Fails when arguments are left that the tool does not take.
    fn finish(self, allowed: &[&str]) -> Result<(), ArgumentError> {
        if let Some(name) = self.map.keys().next() {
            return Err(self.err(format!(
                "unknown argument `{name}`; allowed arguments: {}",
                allowed.join(", ")
            )));
        }
        Ok(())
    }
}

/// Runs the tool `name`. `Err` only for a tool that does not exist.
pub async fn call(
    shared: &Shared,
    name: &str,
    arguments: Option<JsonObject>,
    context: RequestContext<RoleServer>,
) -> Result<CallToolResult, McpError> {
    let args = Args::new(name, arguments);
    let outcome = match name {
        GENERATE_IMAGE => generate_image(shared, args, context).await,
        LIST_WORKFLOWS => list_workflows(shared, args),
        GET_WORKFLOW_STATUS => get_workflow_status(shared, args).await,
        CANCEL_WORKFLOW => cancel_workflow(shared, args).await,
        LOAD_WORKFLOW => load_workflow(shared, args, context).await,
        other => {
            let catalog = shared.app.catalog();
            let offered = shared.options.per_template_tools
                && is_template_tool_name(other)
                && catalog.template(other).is_some();
            if !offered {
                let mut names: Vec<String> = FIXED_TOOLS.iter().map(|s| (*s).to_owned()).collect();
                if shared.options.per_template_tools {
                    names.extend(
                        catalog
                            .templates()
                            .iter()
                            .map(|t| t.info.id.clone())
                            .filter(|id| is_template_tool_name(id)),
                    );
                }
                return Err(McpError::invalid_params(
                    format!(
                        "unknown tool `{other}`; available tools: {}",
                        names.join(", ")
                    ),
                    Some(json!({ "tool": other })),
                ));
            }
            template_tool(shared, other.to_owned(), args, context).await
        }
    };
    Ok(outcome.unwrap_or_else(ArgumentError::into_result))
}

async fn generate_image(
    shared: &Shared,
    mut args: Args<'_>,
    context: RequestContext<RoleServer>,
) -> Result<CallToolResult, ArgumentError> {
    let wait = args.wait()?;
    let Some(template) = args.string("template")? else {
        let catalog = shared.app.catalog();
        return Err(args.err(format!(
            "`template` is required; available templates: {}",
            catalog.template_ids()
        )));
    };
    generate(shared, &template, args.map, wait, context).await
}

async fn template_tool(
    shared: &Shared,
    template: String,
    mut args: Args<'_>,
    context: RequestContext<RoleServer>,
) -> Result<CallToolResult, ArgumentError> {
    let wait = args.wait()?;
    generate(shared, &template, args.map, wait, context).await
}

async fn generate(
    shared: &Shared,
    template: &str,
    params: Map<String, Value>,
    wait: Option<Duration>,
    context: RequestContext<RoleServer>,
) -> Result<CallToolResult, ArgumentError> {
    let job = match shared.app.generate(template, params).await {
        Ok(job) => job,
        Err(e) => return Ok(app_error(e)),
    };
    shared.recent.record(&job.prompt_id);
    tracing::info!(prompt_id = %job.prompt_id, template, "job submitted");
    Ok(respond_with_job(shared, job, wait, &context, |_| {}).await)
}

/// The result of a generating call: waits when asked, then reports the job (with images
/// inline once completed). `extend` adds call-specific fields to the structured result.
async fn respond_with_job(
    shared: &Shared,
    job: JobSnapshot,
    wait: Option<Duration>,
    context: &RequestContext<RoleServer>,
    extend: impl FnOnce(&mut Value),
) -> CallToolResult {
    let job = match wait {
        None => job,
        Some(timeout) => {
            let mut reporter = ProgressReporter::new(context);
            match wait_for_job(&shared.app, job, timeout, &context.ct, &mut reporter).await {
                Ok(WaitOutcome::Finished(job)) | Ok(WaitOutcome::TimedOut(job)) => job,
                Ok(WaitOutcome::Cancelled(job)) => {
                    let message = format!(
                        "the request was cancelled by the client, so job {} was cancelled (state now: {})",
                        job.prompt_id, job.state
                    );
                    return tool_error(
                        message.clone(),
                        json!({"kind": "cancelled", "message": message, "details": render::generation_json(&job)}),
                    );
                }
                Err(e) => return app_error(e),
            }
        }
    };
    let mut value = render::generation_json(&job);
    extend(&mut value);
    if job.state == JobState::Failed {
        let message = match &job.error {
            Some(e) => match (&e.node_id, &e.node_type) {
                (Some(id), Some(class)) => {
                    format!(
                        "job {} failed at node {id} ({class}): {}",
                        job.prompt_id, e.message
                    )
                }
                _ => format!("job {} failed: {}", job.prompt_id, e.message),
            },
            None => format!("job {} failed", job.prompt_id),
        };
        let mut result = tool_error(message, json!({}));
        result.structured_content = Some(value);
        return result;
    }
    let (value, blocks) = render::attach_images(&job, value).await;
    tool_success(value, blocks)
}

fn list_workflows(shared: &Shared, mut args: Args<'_>) -> Result<CallToolResult, ArgumentError> {
    let category = args.string("category")?;
    let tags: Vec<String> = match args.take("tags") {
        None => Vec::new(),
        Some(Value::String(tag)) => vec![tag],
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|t| match t {
                Value::String(s) => Ok(s),
                other => Err(args.err(format!("`tags` must be a list of strings, got {other}"))),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(args.err(format!("`tags` must be a list of strings, got {other}")));
        }
    };
    args.finish(&["category", "tags"])?;
    let catalog = shared.app.catalog();
    let workflows: Vec<Value> = catalog
        .templates()
        .iter()
        .filter(|t| {
            category
                .as_deref()
                .is_none_or(|c| t.info.category.eq_ignore_ascii_case(c.trim()))
        })
        .filter(|t| {
            tags.iter().all(|want| {
                t.info
                    .tags
                    .iter()
                    .any(|have| have.eq_ignore_ascii_case(want.trim()))
            })
        })
        .map(|t| {
            json!({
                "id": t.info.id,
                "name": t.info.name,
                "description": t.info.description,
                "category": t.info.category,
                "tags": t.info.tags,
                "default_width": t.info.default_width,
                "default_height": t.info.default_height,
                "pack": {"name": t.pack.name, "version": t.pack.version},
                "parameters": parameters_json(&t.info),
            })
        })
        .collect();
    let errors: Vec<Value> = catalog
        .errors()
        .iter()
        .map(|p| json!({"path": p.path.display().to_string(), "error": p.error}))
        .collect();
    Ok(tool_success(
        json!({
            "total_count": workflows.len(),
            "workflows": workflows,
            "errors": errors,
        }),
        Vec::new(),
    ))
}

async fn get_workflow_status(
    shared: &Shared,
    mut args: Args<'_>,
) -> Result<CallToolResult, ArgumentError> {
    let prompt_id = args.required_string("prompt_id")?;
    args.finish(&["prompt_id"])?;
    Ok(match shared.app.status(&prompt_id).await {
        Ok(job) => tool_success(render::job_json(&job), render::image_links(&job)),
        Err(e) => app_error(e),
    })
}

async fn cancel_workflow(
    shared: &Shared,
    mut args: Args<'_>,
) -> Result<CallToolResult, ArgumentError> {
    let prompt_id = args.string("prompt_id")?;
    let interrupt = args.bool("interrupt", false)?;
    args.finish(&["prompt_id", "interrupt"])?;
    if prompt_id.as_deref().is_some_and(|id| id.trim().is_empty()) {
        return Err(ArgumentError::new(
            CANCEL_WORKFLOW,
            "`prompt_id` must not be empty",
        ));
    }
    Ok(
        match shared.app.cancel(prompt_id.as_deref(), interrupt).await {
            Ok(report) => tool_success(
                json!({
                    "cancelled": report.cancelled,
                    "prompt_id": report.prompt_id,
                    "message": report.message,
                }),
                Vec::new(),
            ),
            Err(e) => app_error(e),
        },
    )
}

async fn load_workflow(
    shared: &Shared,
    mut args: Args<'_>,
    context: RequestContext<RoleServer>,
) -> Result<CallToolResult, ArgumentError> {
    let path = args.required_string("workflow_path")?;
    let overrides = match args.take("parameters") {
        None => Map::new(),
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(args.err(format!(
                "`parameters` must be an object of overrides (e.g. {{\"seed\": 42, \"steps\": 30}}), got {other}"
            )));
        }
    };
    let wait = args.wait()?;
    args.finish(&["workflow_path", "parameters", "wait", "timeout"])?;
    let submission = match shared.app.load_workflow(&path, overrides).await {
        Ok(s) => s,
        Err(e) => return Ok(app_error(e)),
    };
    shared.recent.record(&submission.job.prompt_id);
    tracing::info!(prompt_id = %submission.job.prompt_id, workflow = %submission.workflow_name, "workflow submitted");
    let extra = json!({
        "workflow_name": submission.workflow_name,
        "parameters_applied": submission.parameters_applied,
        "parameters_unmatched": submission.parameters_unmatched,
    });
    Ok(
        respond_with_job(shared, submission.job, wait, &context, move |value| {
            if let (Value::Object(out), Value::Object(extra)) = (value, extra) {
                out.extend(extra);
            }
        })
        .await,
    )
}

/// The tool list of a catalog generation, cached so repeated listings (and the HTTP
/// transport's per-request header checks) do not rebuild schemas.
#[derive(Debug, Default)]
pub struct ToolCache(std::sync::Mutex<Option<(u64, Arc<Vec<Tool>>)>>);

impl ToolCache {
    /// The tools for `catalog`, rebuilt when its generation changed.
    pub fn get(&self, catalog: &Catalog, options: &McpOptions) -> Arc<Vec<Tool>> {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((generation, tools)) = slot.as_ref()
            && *generation == catalog.generation()
        {
            return tools.clone();
        }
        let tools = Arc::new(definitions(catalog, options));
        *slot = Some((catalog.generation(), tools.clone()));
        tools
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_tool_names_are_portable_and_never_shadow_fixed_tools() {
        assert!(is_template_tool_name("character-portrait"));
        assert!(is_template_tool_name("pixel_art2"));
        assert!(!is_template_tool_name("generate_image"));
        assert!(!is_template_tool_name("has space"));
        assert!(!is_template_tool_name("dotted.name"));
        assert!(!is_template_tool_name(""));
        assert!(!is_template_tool_name(&"x".repeat(65)));
    }

    #[test]
    fn fixed_tools_have_descriptions_and_object_schemas() {
        let tools = definitions(&Catalog::default(), &McpOptions::default());
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        assert_eq!(names, FIXED_TOOLS);
        for t in &tools {
            assert!(
                t.description.as_ref().is_some_and(|d| d.len() > 40),
                "{}",
                t.name
            );
            assert_eq!(t.input_schema["type"], "object", "{}", t.name);
            assert_eq!(
                t.output_schema.as_ref().expect("output schema")["type"],
                "object",
                "{}",
                t.name
            );
        }
    }

    #[test]
    fn argument_reader_reports_precise_mistakes() {
        let mut a = Args::new(
            "t",
            Some(serde_json::from_value(json!({"timeout": 0, "wait": true})).unwrap()),
        );
        assert!(a.bool("wait", false).unwrap());
        let e = a.timeout().unwrap_err();
        assert!(e.to_string().contains("at most 3600"), "{e}");
        let mut a = Args::new(
            "t",
            Some(serde_json::from_value(json!({"wait": "yes"})).unwrap()),
        );
        assert!(a.wait().unwrap_err().to_string().contains("true or false"));
        let mut a = Args::new(
            "t",
            Some(serde_json::from_value(json!({"timeout": 12.5, "bogus": 1})).unwrap()),
        );
        assert_eq!(a.timeout().unwrap(), Duration::from_millis(12_500));
        let e = a.finish(&["timeout"]).unwrap_err();
        assert!(e.to_string().contains("unknown argument `bogus`"), "{e}");
        let a = Args::new(
            "t",
            Some(serde_json::from_value(json!({"wait": null})).unwrap()),
        );
        let mut a = a;
        assert_eq!(a.wait().unwrap(), None);
    }
}
