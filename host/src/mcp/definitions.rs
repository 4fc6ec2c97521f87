//! The tool list: the fixed tools and one tool per template, with names, descriptions,
//! input and output schemas and annotations, cached per catalog generation.
//!
//! Invariants: the tool list is derived from one catalog snapshot (so names, the template
//! enum and per-template schemas agree); a template whose id collides with a fixed tool or
//! is not a portable tool name (`[A-Za-z0-9_-]{1,64}`) gets no tool of its own (it stays
//! reachable through `generate_image`).

use std::borrow::Cow;
use std::sync::Arc;

use rmcp::model::{JsonObject, Tool, ToolAnnotations};

use super::models::{self, LIST_MODELS};
use super::options::McpOptions;
use super::schemas;
use crate::catalog::Catalog;

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
/// Jobs of the job store.
pub const LIST_JOBS: &str = "list_jobs";
/// The tools that exist whatever the catalog holds.
pub const FIXED_TOOLS: [&str; 7] = [
    GENERATE_IMAGE,
    LIST_WORKFLOWS,
    GET_WORKFLOW_STATUS,
    CANCEL_WORKFLOW,
    LOAD_WORKFLOW,
    LIST_MODELS,
    LIST_JOBS,
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

/// A tool with its title, description, input and output schemas and annotations.
fn tool(
    name: impl Into<Cow<'static, str>>,
    title: impl Into<String>,
    description: impl Into<Cow<'static, str>>,
    input: impl Into<Arc<JsonObject>>,
    output: Arc<JsonObject>,
    annotations: ToolAnnotations,
) -> Tool {
    Tool::new(name, description, input)
        .with_title(title)
        .with_raw_output_schema(output)
        .with_annotations(annotations)
}

/// Annotations of a tool that queues a new ComfyUI job: it writes (not read-only), adds
/// without destroying, is not idempotent (every call is a new job) and reaches ComfyUI.
fn queues_a_job() -> ToolAnnotations {
    ToolAnnotations::new()
        .read_only(false)
        .destructive(false)
        .idempotent(false)
        .open_world(true)
}

/// Every tool offered for `catalog`.
pub fn definitions(catalog: &Catalog, options: &McpOptions) -> Vec<Tool> {
    let mut tools = vec![
        tool(
            GENERATE_IMAGE,
            "Generate images from a template or a custom workflow",
            "Generate images with a workflow template (list_workflows describes the templates and their parameters), or \
             with a custom ComfyUI workflow in API format: inline (workflow) or a file of the workflow folders \
             (workflow_path); give exactly one of the three. Template parameters are checked against the template (ranges, \
             multiples of 8, choices) and the graph is built in a sandbox; a custom workflow takes the same parameters as \
             overrides of its inputs (plus parameters for \"<node_id>.<input>\"). Every graph is checked against ComfyUI's \
             nodes, then queued. Returns at once with a prompt_id and status \"queued\": poll get_workflow_status, or pass \
             wait=true to wait for the images (progress notifications while waiting; thumbnails and resource links to the \
             full images in the result). seed -1 or omitted picks a random seed; the seed used is reported in metadata.",
            schemas::generate_image_input(catalog, options.default_wait),
            schemas::generation_output(),
            queues_a_job(),
        ),
        tool(
            LIST_WORKFLOWS,
            "List workflow templates",
            "List the workflow templates this server offers, with their category, tags, default size, pack and every \
             parameter (type, default, range, choices). Filter by category and/or tags (all must match). Also reports \
             packs that failed to load. Use it to pick a template for generate_image.",
            schemas::list_workflows_input(),
            schemas::list_workflows_output(),
            ToolAnnotations::new().read_only(true).open_world(false),
        ),
        tool(
            GET_WORKFLOW_STATUS,
            "Get job status",
            "Report a job's state (queued, running, completed, failed, cancelled), progress (0..1), queue position, \
             execution time and, once completed, its saved images (absolute path, comfyui:// uri, size). Failed jobs \
             report the failing node and ComfyUI's message. Jobs of every server sharing the job store are known, across restarts.",
            schemas::status_input(),
            schemas::status_output(),
            ToolAnnotations::new().read_only(true).open_world(true),
        ),
        tool(
            CANCEL_WORKFLOW,
            "Cancel a job",
            "Cancel a job submitted through this server (or another server sharing its job store): a queued job is removed \
             from ComfyUI's queue, a running one is interrupted (only that job, never someone else's). Without prompt_id, interrupt=true stops the job running \
             now if it is ours. Give prompt_id or interrupt=true.",
            schemas::cancel_input(),
            schemas::cancel_output(),
            ToolAnnotations::new()
                .read_only(false)
                .destructive(true)
                .idempotent(true)
                .open_world(true),
        ),
        tool(
            LOAD_WORKFLOW,
            "Run a workflow file",
            "Run a ComfyUI workflow saved in API format (ComfyUI: Export (API)) from one of the configured workflow \
             folders, with optional overrides (seed, steps, cfg_scale, sampler, scheduler, denoise, width, height, \
             batch_size, checkpoint, prompt, negative_prompt, or \"<node_id>.<input>\"). The graph is checked against ComfyUI's nodes \
             before it is queued. Returns at once with a prompt_id unless wait=true; reports which overrides applied.",
            schemas::load_workflow_input(options.default_wait),
            schemas::load_workflow_output(),
            queues_a_job(),
        ),
        tool(
            LIST_MODELS,
            "List ComfyUI's model files",
            "List the model files the connected ComfyUI has, per model folder (checkpoints, loras, vae, \
             upscale_models, embeddings, controlnet, ...), to pick a `checkpoint` for generate_image or a file \
             for a workflow. Pass folder to list only one. Each folder reports its full count; long lists are \
             cut (omitted says how many were left out). The same lists are resources comfyui://models/<folder>.",
            models::input_schema(),
            models::output_schema(),
            ToolAnnotations::new().read_only(true).open_world(true),
        ),
        tool(
            LIST_JOBS,
            "List jobs",
            "List jobs newest first, with the same fields as get_workflow_status: every job in the job store, whichever \
             server (client session) submitted it, kept across restarts. Filter by state, template and since (unix \
             seconds); page with limit (1-200, default 50) and the cursor from next_cursor.",
            schemas::list_jobs_input(),
            schemas::list_jobs_output(),
            ToolAnnotations::new().read_only(true).open_world(false),
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
            tools.push(tool(
                info.id.clone(),
                info.name.clone(),
                description,
                schemas::template_input(&entry.input_schema, options.default_wait),
                schemas::generation_output(),
                queues_a_job(),
            ));
        }
    }
    tools
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
}
