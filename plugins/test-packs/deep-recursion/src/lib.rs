//! Hostile test pack `deep-recursion`: recursion on the WebAssembly call stack.
//! Templates:
//!
//! - `runaway`: recurses without end; the host must stop it with a clear
//!   "stack exhausted" error;
//! - `deep`: recurses `depth` calls deep (integer parameter, default 40 000), then
//!   returns a tiny valid graph (EmptyImage -> SaveImage, prefix
//!   `comfyui-mcp/deep-<depth>`). Interpreters compiled to wasm recurse like this.
//!
//! Each level is a call through a function pointer read with a volatile load, with
//! work after the call, so the compiler can neither inline it nor turn it into a
//! loop. Its frame holds only scalars, so the recursion uses the wasm stack (the one
//! the host limits), not the shadow stack in linear memory.

use test_pack_support::{
    BuildError, Param, TemplateInfo, int_param, int_value, prompt_param, prompt_template,
    solid_color_graph, template,
};

/// Default depth of the `deep` template.
pub const DEFAULT_DEPTH: i64 = 40_000;
/// Largest depth the `deep` template accepts.
pub const MAX_DEPTH: i64 = 10_000_000;

static STEP: fn(u64, u64) -> u64 = step;

#[inline(never)]
fn step(n: u64, limit: u64) -> u64 {
    if n >= limit {
        return n;
    }
    // SAFETY: reading a valid, initialised static.
    let next: fn(u64, u64) -> u64 = unsafe { std::ptr::read_volatile(&STEP) };
    next(n + 1, limit).rotate_left(1) ^ n
}

test_pack_support::pack! { list: list, build: build }

fn list() -> Vec<TemplateInfo> {
    vec![
        prompt_template("runaway", "Runaway", "Recurses without end."),
        template(
            "deep",
            "Deep",
            "Recurses `depth` calls deep, then returns a tiny graph.",
            vec![
                prompt_param(),
                int_param("depth", "Recursion depth.", DEFAULT_DEPTH, 1, MAX_DEPTH),
            ],
        ),
    ]
}

fn build(id: String, params: Vec<Param>) -> Result<String, BuildError> {
    match id.as_str() {
        "runaway" => {
            let r = step(0, u64::MAX);
            Err(BuildError::Failed(format!("runaway returned {r}")))
        }
        "deep" => {
            let depth = int_value(&params, "depth", DEFAULT_DEPTH, 1, MAX_DEPTH);
            let r = step(0, depth as u64);
            // `r` depends on every level; use it so nothing is optimised away.
            let color = (r & 0xff) as i64;
            Ok(solid_color_graph(
                64,
                64,
                color,
                &format!("comfyui-mcp/deep-{depth}"),
            ))
        }
        _ => Err(BuildError::UnknownTemplate(id)),
    }
}
