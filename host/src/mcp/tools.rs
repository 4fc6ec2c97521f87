//! The calls behind the tools — `generate_image`, `list_workflows`, `get_workflow_status`,
//! `cancel_workflow`, `load_workflow`, `list_models` (in [`models`](super::models)),
//! `list_jobs` (in [`jobs_tool`](super::jobs_tool)), and one tool per template named after its
//! id — one function per tool, and the reading of their arguments. `generate_image` with a
//! custom workflow (`workflow` or `workflow_path`) and `load_workflow` share one path
//! ([`custom_workflow`]).
//!
//! A call runs in a [`CallContext`] (cancellation and a progress sink) and returns a typed
//! [`Outcome`], so MCP `tools/call` and the plain HTTP API share this one dispatch and
//! differ only in how they render the outcome.
//!
//! Invariants: every user mistake or backend failure comes back as an [`Outcome::Failure`]
//! naming the problem and what is allowed (over MCP an `isError` result, never a protocol
//! error); only a tool that does not exist is an `Err` ([`UnknownTool`], over MCP `-32602`
//! listing the tools that do).

use std::time::Duration;

use comfyui::{JobSnapshot, JobState};
use rmcp::model::JsonObject;
use serde_json::{Map, Value, json};

use super::definitions::{
    CANCEL_WORKFLOW, FIXED_TOOLS, GENERATE_IMAGE, GET_WORKFLOW_STATUS, LIST_JOBS, LIST_WORKFLOWS,
    LOAD_WORKFLOW, is_template_tool_name,
};
use super::models::{self, LIST_MODELS};
pub use super::outcome::{ArgumentError, CallContext, Failure, Outcome, UnknownTool};
use super::progress::{WaitOutcome, wait_for_job};
use super::render;
use super::schemas;
use super::shared::Shared;
use crate::error::AppError;
use crate::workflow_file::WorkflowSource;
use pack_runtime::params::{
    PARAMETERS_ARG, RETRIES_ARG, TEMPLATE_ARG, TIMEOUT_ARG, WAIT_ARG, WORKFLOW_PATH_ARG,
};

fn app_error(error: AppError) -> Outcome {
    Outcome::from(error)
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

    /// `timeout`, `default` when absent.
    fn timeout(&mut self, default: Duration) -> Result<Duration, ArgumentError> {
        let max = schemas::MAX_TIMEOUT_SECS;
        match self.take("timeout") {
            None => Ok(default),
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

    /// `wait` and `timeout` (`default` when absent); the timeout only matters when waiting.
    fn wait(&mut self, default: Duration) -> Result<Option<Duration>, ArgumentError> {
        let wait = self.bool("wait", false)?;
        let timeout = self.timeout(default)?;
        Ok(wait.then_some(timeout))
    }

    /// The `parameters` object of overrides (empty when absent).
    fn overrides(&mut self) -> Result<Map<String, Value>, ArgumentError> {
        match self.take(PARAMETERS_ARG) {
            None => Ok(Map::new()),
            Some(Value::Object(m)) => Ok(m),
            Some(other) => Err(self.err(format!(
                "`parameters` must be an object of overrides (e.g. {{\"seed\": 42, \"steps\": 30}}), got {other}"
            ))),
        }
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
    context: CallContext,
) -> Result<Outcome, UnknownTool> {
    let args = Args::new(name, arguments);
    let outcome = match name {
        GENERATE_IMAGE => generate_image(shared, args, context).await,
        LIST_WORKFLOWS => list_workflows(shared, args).await,
        GET_WORKFLOW_STATUS => get_workflow_status(shared, args).await,
        CANCEL_WORKFLOW => cancel_workflow(shared, args).await,
        LOAD_WORKFLOW => load_workflow(shared, args, context).await,
        LIST_MODELS => list_models(shared, args).await,
        LIST_JOBS => Ok(super::jobs_tool::list_jobs(shared, args.map).await),
        other => {
            if !offers_template_tool(shared, other) {
                return Err(unknown_tool(shared, other));
            }
            template_tool(shared, other.to_owned(), args, context).await
        }
    };
    Ok(outcome.unwrap_or_else(Outcome::from))
}

/// Whether `name` is the tool of a template in the current catalog.
fn offers_template_tool(shared: &Shared, name: &str) -> bool {
    shared.options.per_template_tools
        && is_template_tool_name(name)
        && shared.app.catalog().template(name).is_some()
}

/// The names of every tool offered now.
fn tool_names(shared: &Shared) -> Vec<String> {
    let catalog = shared.app.catalog();
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
    names
}

/// A tool that does not exist, with the ones that do.
fn unknown_tool(shared: &Shared, name: &str) -> UnknownTool {
    UnknownTool {
        name: name.to_owned(),
        available: tool_names(shared),
    }
}

async fn generate_image(
    shared: &Shared,
    mut args: Args<'_>,
    context: CallContext,
) -> Result<Outcome, ArgumentError> {
    let wait = args.wait(shared.options.default_wait)?;
    let template = args.string(TEMPLATE_ARG)?;
    let inline = args.take(schemas::WORKFLOW_ARG);
    let path = args.string(WORKFLOW_PATH_ARG)?;
    match (template, inline, path) {
        (Some(template), None, None) => generate(shared, &template, args.map, wait, context).await,
        (None, Some(Value::Object(graph)), None) => {
            let overrides = workflow_overrides(&mut args)?;
            let source = WorkflowSource::Inline(Value::Object(graph));
            custom_workflow(shared, source, overrides, wait, context).await
        }
        (None, Some(other), None) => Err(args.err(format!(
            "`workflow` must be a JSON object of nodes (ComfyUI API format), got {}",
            comfyui::nodes::json_type(&other)
        ))),
        (None, None, Some(path)) => {
            let overrides = workflow_overrides(&mut args)?;
            custom_workflow(shared, WorkflowSource::File(path), overrides, wait, context).await
        }
        (template, inline, path) => {
            let given: Vec<&str> = [
                (TEMPLATE_ARG, template.is_some()),
                (schemas::WORKFLOW_ARG, inline.is_some()),
                (WORKFLOW_PATH_ARG, path.is_some()),
            ]
            .into_iter()
            .filter_map(|(name, present)| present.then_some(name))
            .collect();
            let got = if given.is_empty() {
                "none was given".to_owned()
            } else {
                format!("got {}", given.join(" and "))
            };
            Err(args.err(format!(
                "give exactly one of `template` (a template id; available: {}), `workflow` (an API-format graph object) or `workflow_path` (a file in the workflow folders); {got}",
                shared.app.catalog().template_ids()
            )))
        }
    }
}

/// The overrides of a custom workflow in `generate_image`: the generation parameters given
/// next to it, then `parameters`; anything else is refused.
fn workflow_overrides(args: &mut Args<'_>) -> Result<Map<String, Value>, ArgumentError> {
    let mut overrides = args.overrides()?;
    take_retries(args, &mut overrides);
    for name in schemas::SHARED_PARAMS {
        if let Some(value) = args.take(name) {
            if overrides.contains_key(*name) {
                return Err(args.err(format!(
                    "`{name}` is given both as an argument and in `parameters`; give it once"
                )));
            }
            overrides.insert((*name).to_owned(), value);
        }
    }
    let mut allowed = vec![
        schemas::WORKFLOW_ARG,
        WORKFLOW_PATH_ARG,
        PARAMETERS_ARG,
        WAIT_ARG,
        TIMEOUT_ARG,
        RETRIES_ARG,
    ];
    allowed.extend_from_slice(schemas::SHARED_PARAMS);
    let rest = Args {
        tool: args.tool,
        map: std::mem::take(&mut args.map),
    };
    rest.finish(&allowed)?;
    Ok(overrides)
}

async fn template_tool(
    shared: &Shared,
    template: String,
    mut args: Args<'_>,
    context: CallContext,
) -> Result<Outcome, ArgumentError> {
    let wait = args.wait(shared.options.default_wait)?;
    generate(shared, &template, args.map, wait, context).await
}

async fn generate(
    shared: &Shared,
    template: &str,
    params: Map<String, Value>,
    wait: Option<Duration>,
    context: CallContext,
) -> Result<Outcome, ArgumentError> {
    let job = match shared.app.generate(template, params).await {
        Ok(job) => job,
        Err(e) => return Ok(app_error(e)),
    };
    tracing::info!(prompt_id = %job.prompt_id, template, "job submitted");
    Ok(respond_with_job(shared, job, wait, context, |_| {}).await)
}

/// The result of a generating call: waits when asked, then reports the job (with images
/// inline once completed). `extend` adds call-specific fields to the structured result.
async fn respond_with_job(
    shared: &Shared,
    job: JobSnapshot,
    wait: Option<Duration>,
    mut context: CallContext,
    extend: impl FnOnce(&mut Value),
) -> Outcome {
    let job = match wait {
        None => job,
        Some(timeout) => {
            let progress = context.progress.as_mut();
            match wait_for_job(&shared.app, job, timeout, &context.cancel, progress).await {
                Ok(WaitOutcome::Finished(job)) | Ok(WaitOutcome::TimedOut(job)) => job,
                Ok(WaitOutcome::Cancelled(job)) => {
                    let message = format!(
                        "the request was cancelled by the client, so job {} was cancelled (state now: {})",
                        job.prompt_id, job.state
                    );
                    return Outcome::from(Failure::Cancelled {
                        message,
                        job: render::generation_json(&job),
                    });
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
        return Outcome::from(Failure::JobFailed {
            message,
            job: value,
        });
    }
    let (value, blocks) = render::attach_images(&shared.thumbnails, &job, value).await;
    Outcome::Success { value, blocks }
}

async fn list_workflows(shared: &Shared, mut args: Args<'_>) -> Result<Outcome, ArgumentError> {
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
    let runnable = shared.app.runnable().await;
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
            let mut entry = json!({
                "id": t.info.id,
                "name": t.info.name,
                "description": t.info.description,
                "category": t.info.category,
                "tags": t.info.tags,
                "default_width": t.info.default_width,
                "default_height": t.info.default_height,
                "pack": {"name": t.pack.name, "version": t.pack.version},
                "parameters": render::parameters_json(&t.info),
            });
            if let Some(backends) = runnable.as_ref().and_then(|r| r.get(&t.info.id)) {
                entry["runnable"] = json!(!backends.is_empty());
                entry["backends"] = json!(backends);
            }
            entry
        })
        .collect();
    let errors: Vec<Value> = catalog
        .errors()
        .iter()
        .map(|p| json!({"path": p.path.display().to_string(), "error": p.error}))
        .collect();
    Ok(Outcome::success(json!({
        "total_count": workflows.len(),
        "workflows": workflows,
        "errors": errors,
    })))
}

async fn get_workflow_status(
    shared: &Shared,
    mut args: Args<'_>,
) -> Result<Outcome, ArgumentError> {
    let prompt_id = args.required_string("prompt_id")?;
    args.finish(&["prompt_id"])?;
    Ok(match shared.app.status(&prompt_id).await {
        Ok(job) => Outcome::Success {
            value: render::job_json(&job),
            blocks: render::image_links(&job),
        },
        Err(e) => app_error(e),
    })
}

async fn cancel_workflow(shared: &Shared, mut args: Args<'_>) -> Result<Outcome, ArgumentError> {
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
            Ok(report) => Outcome::success(json!({
                "cancelled": report.cancelled,
                "prompt_id": report.prompt_id,
                "message": report.message,
            })),
            Err(e) => app_error(e),
        },
    )
}

async fn list_models(shared: &Shared, mut args: Args<'_>) -> Result<Outcome, ArgumentError> {
    let folder = args.string("folder")?;
    args.finish(&["folder"])?;
    Ok(models::call(&shared.app, folder.as_deref()).await)
}

async fn load_workflow(
    shared: &Shared,
    mut args: Args<'_>,
    context: CallContext,
) -> Result<Outcome, ArgumentError> {
    let path = args.required_string(WORKFLOW_PATH_ARG)?;
    let mut overrides = args.overrides()?;
    take_retries(&mut args, &mut overrides);
    let wait = args.wait(shared.options.default_wait)?;
    args.finish(&[
        WORKFLOW_PATH_ARG,
        PARAMETERS_ARG,
        WAIT_ARG,
        TIMEOUT_ARG,
        RETRIES_ARG,
    ])?;
    custom_workflow(shared, WorkflowSource::File(path), overrides, wait, context).await
}

/// Moves `retries` next to the overrides, where the app takes it (it checks the value).
fn take_retries(args: &mut Args<'_>, overrides: &mut Map<String, Value>) {
    if let Some(retries) = args.take(RETRIES_ARG) {
        overrides.insert(RETRIES_ARG.into(), retries);
    }
}

/// Runs a custom workflow (a file or inline) and answers like a template call, plus
/// `workflow_name`, `parameters_applied` and `parameters_unmatched`.
async fn custom_workflow(
    shared: &Shared,
    source: WorkflowSource,
    overrides: Map<String, Value>,
    wait: Option<Duration>,
    context: CallContext,
) -> Result<Outcome, ArgumentError> {
    let submission = match shared.app.load_workflow(source, overrides).await {
        Ok(s) => s,
        Err(e) => return Ok(app_error(e)),
    };
    tracing::info!(prompt_id = %submission.job.prompt_id, workflow = %submission.workflow_name, "workflow submitted");
    let extra = json!({
        "workflow_name": submission.workflow_name,
        "parameters_applied": submission.parameters_applied,
        "parameters_unmatched": submission.parameters_unmatched,
    });
    Ok(
        respond_with_job(shared, submission.job, wait, context, move |value| {
            if let (Value::Object(out), Value::Object(extra)) = (value, extra) {
                out.extend(extra);
            }
        })
        .await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_reader_reports_precise_mistakes() {
        let mut a = Args::new(
            "t",
            Some(serde_json::from_value(json!({"timeout": 0, "wait": true})).unwrap()),
        );
        assert!(a.bool("wait", false).unwrap());
        let e = a.timeout(WAIT).unwrap_err();
        assert!(e.to_string().contains("at most 3600"), "{e}");
        let mut a = Args::new(
            "t",
            Some(serde_json::from_value(json!({"wait": "yes"})).unwrap()),
        );
        assert!(
            a.wait(WAIT)
                .unwrap_err()
                .to_string()
                .contains("true or false")
        );
        let mut a = Args::new(
            "t",
            Some(serde_json::from_value(json!({"timeout": 12.5, "bogus": 1})).unwrap()),
        );
        assert_eq!(a.timeout(WAIT).unwrap(), Duration::from_millis(12_500));
        let e = a.finish(&["timeout"]).unwrap_err();
        assert!(e.to_string().contains("unknown argument `bogus`"), "{e}");
        let a = Args::new(
            "t",
            Some(serde_json::from_value(json!({"wait": null})).unwrap()),
        );
        let mut a = a;
        assert_eq!(a.wait(WAIT).unwrap(), None);
        let mut a = Args::new(
            "t",
            Some(serde_json::from_value(json!({"wait": true})).unwrap()),
        );
        assert_eq!(
            a.wait(WAIT).unwrap(),
            Some(WAIT),
            "the default follows the setting"
        );
    }

    const WAIT: Duration = Duration::from_secs(7);
}
