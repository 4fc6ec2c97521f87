//! Custom workflows for `load_workflow` and `generate_image`: files under the folder policy
//! ([`crate::allowed_dirs`]: a path must resolve inside a configured workflow folder), inline
//! graphs, API-format detection, and parameter overrides.
//!
//! Budgets: a file over [`WorkflowDirs::max_bytes`] (default [`DEFAULT_MAX_WORKFLOW_BYTES`],
//! setting `COMFYUI_MCP_MAX_WORKFLOW_BYTES`) is refused from its metadata, before it is read,
//! and the read itself stops one byte past the cap (a file growing meanwhile is refused too);
//! an inline workflow obeys the same cap, measured as compact JSON while it is hashed (nothing
//! is buffered); a graph of more nodes than the graph node cap is refused after parsing. Everything here is
//! blocking file and CPU work: the server runs it on its bounded blocking pool
//! ([`crate::graph_gate`]). Parsing and overrides never panic on any input.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::allowed_dirs::{AllowedDirs, DirRefusal, ReadError, read_capped};
use crate::error::AppError;

/// Default size cap of a workflow file: 8 MiB.
pub const DEFAULT_MAX_WORKFLOW_BYTES: u64 = 8 << 20;

/// How an inline workflow is named in messages and responses.
pub const INLINE_NAME: &str = "`workflow` (inline)";

/// Where a custom workflow comes from.
#[derive(Debug, Clone)]
pub enum WorkflowSource {
    /// A file in the workflow folders, as given (`workflow_path`).
    File(String),
    /// An API-format graph passed in the call (`workflow`).
    Inline(Value),
}

/// A custom workflow read, measured and hashed; its graph not yet unwrapped or checked.
#[derive(Debug)]
pub struct SourcedWorkflow {
    /// The file name, or [`INLINE_NAME`].
    pub name: String,
    /// Where it came from, for provenance.
    pub origin: comfyui::JobOrigin,
    /// The parsed JSON document.
    pub document: Value,
}

impl WorkflowSource {
    /// Reads (a file, through the folder policy) or measures (an inline graph) the workflow
    /// within `dirs`' size cap and hashes it. Blocking.
    pub fn resolve(self, dirs: &WorkflowDirs) -> Result<SourcedWorkflow, AppError> {
        match self {
            WorkflowSource::File(path) => {
                let file = dirs.read(&path)?;
                let document = parse_json(&file.display_name, &file.bytes)?;
                Ok(SourcedWorkflow {
                    name: file.display_name,
                    origin: comfyui::JobOrigin::Workflow {
                        path: file.path.display().to_string(),
                        sha256: file.sha256,
                    },
                    document,
                })
            }
            WorkflowSource::Inline(document) => {
                let sha256 = inline_sha256(&document, dirs.max_bytes)?;
                Ok(SourcedWorkflow {
                    name: INLINE_NAME.to_owned(),
                    origin: comfyui::JobOrigin::InlineWorkflow { sha256 },
                    document,
                })
            }
        }
    }
}

/// Counts and hashes what is written, keeping nothing.
struct Digesting {
    hasher: Sha256,
    bytes: u64,
}

impl std::io::Write for Digesting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.hasher.update(buf);
        self.bytes += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The SHA-256 (hex) of `document` as compact JSON, if that is at most `max_bytes` long.
pub fn inline_sha256(document: &Value, max_bytes: u64) -> Result<String, AppError> {
    let mut out = Digesting {
        hasher: Sha256::new(),
        bytes: 0,
    };
    serde_json::to_writer(&mut out, document)
        .map_err(|e| AppError::Internal(format!("cannot serialise the inline workflow: {e}")))?;
    if out.bytes > max_bytes {
        return Err(AppError::WorkflowTooLarge {
            path: INLINE_NAME.to_owned(),
            bytes: out.bytes,
            limit: max_bytes,
        });
    }
    Ok(hex::encode(out.hasher.finalize()))
}

/// The folders workflow files may be read from, and the file size cap.
#[derive(Debug, Clone)]
pub struct WorkflowDirs {
    /// The folder policy.
    dirs: AllowedDirs,
    /// Largest file accepted, in bytes.
    max_bytes: u64,
}

/// A workflow file that passed the folder policy.
#[derive(Debug, Clone)]
pub struct WorkflowFile {
    /// Canonical path.
    pub path: PathBuf,
    /// File name, for responses.
    pub display_name: String,
    /// Contents.
    pub bytes: Vec<u8>,
    /// SHA-256 of the contents, hex.
    pub sha256: String,
}

impl WorkflowDirs {
    /// The allowed folders; those that do not exist (yet) are kept for
    /// messages and re-resolved on each read.
    pub fn new(dirs: Vec<PathBuf>) -> Self {
        Self {
            dirs: AllowedDirs::new(dirs),
            max_bytes: DEFAULT_MAX_WORKFLOW_BYTES,
        }
    }

    /// The same folders with another file size cap.
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// The file size cap, in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Resolves `requested` (absolute, relative to the working folder, or
    /// relative to an allowed folder) and reads it if, after resolving `..`
    /// and symlinks, it lies inside an allowed folder.
    pub fn read(&self, requested: &str) -> Result<WorkflowFile, AppError> {
        match self.dirs.find(requested) {
            Ok(real) => read_file(&real, self.max_bytes),
            Err(DirRefusal::Empty) => {
                Err(AppError::InvalidRequest("workflow_path is empty".into()))
            }
            Err(DirRefusal::Outside) => Err(AppError::PathRefused {
                path: requested.to_owned(),
                allowed: self.dirs.describe(),
            }),
            Err(DirRefusal::NotFound) => Err(AppError::Workflow(format!(
                "workflow file `{requested}` not found in the workflow folders ({})",
                self.dirs.describe()
            ))),
        }
    }
}

fn read_file(path: &Path, max_bytes: u64) -> Result<WorkflowFile, AppError> {
    let bytes = read_capped(path, max_bytes).map_err(|e| match e {
        ReadError::TooLarge(bytes) => AppError::WorkflowTooLarge {
            path: path.display().to_string(),
            bytes,
            limit: max_bytes,
        },
        ReadError::NotAFile => AppError::Workflow(format!("{} is not a file", path.display())),
        ReadError::Io(e) => {
            AppError::Workflow(format!("cannot read workflow file {}: {e}", path.display()))
        }
    })?;
    Ok(WorkflowFile {
        display_name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        sha256: hex::encode(Sha256::digest(&bytes)),
        path: path.to_owned(),
        bytes,
    })
}

/// Parses an API-format graph of at most `max_nodes` nodes. Accepts a bare graph or a
/// `/prompt` body (`{"prompt": {...}}`); a UI-format export gets an explanation.
pub fn parse_api_graph(name: &str, bytes: &[u8], max_nodes: usize) -> Result<Value, AppError> {
    api_graph(name, parse_json(name, bytes)?, max_nodes)
}

fn parse_json(name: &str, bytes: &[u8]) -> Result<Value, AppError> {
    serde_json::from_slice(bytes)
        .map_err(|e| AppError::Workflow(format!("{name} is not valid JSON: {e}")))
}

/// The API-format graph of a parsed workflow document of at most `max_nodes` nodes (see
/// [`parse_api_graph`]).
pub fn api_graph(name: &str, document: Value, max_nodes: usize) -> Result<Value, AppError> {
    let graph = unwrap_graph(name, document)?;
    let nodes = graph.as_object().map_or(0, Map::len);
    if nodes > max_nodes {
        return Err(AppError::WorkflowTooManyNodes {
            name: name.to_owned(),
            nodes,
            limit: max_nodes,
        });
    }
    Ok(graph)
}

fn unwrap_graph(name: &str, value: Value) -> Result<Value, AppError> {
    let Value::Object(mut top) = value else {
        return Err(AppError::Workflow(format!(
            "{name} must hold a JSON object of nodes (ComfyUI API format)"
        )));
    };
    if top.contains_key("nodes") && top.contains_key("links") {
        return Err(AppError::Workflow(format!(
            "{name} is a ComfyUI UI-format workflow (it has \"nodes\" and \"links\"); custom workflows must be in the API format. In ComfyUI, open the workflow and use Workflow > Export (API) (older versions: enable Dev mode in the settings, then \"Save (API Format)\"), and load that file"
        )));
    }
    if let Some(Value::Object(prompt)) = top.remove("prompt") {
        return Ok(Value::Object(prompt));
    }
    if top.is_empty() {
        return Err(AppError::Workflow(format!("{name} holds no nodes")));
    }
    Ok(Value::Object(top))
}

/// What the overrides did.
#[derive(Debug, Default)]
pub struct Overrides {
    /// Each applied override with the value used.
    pub applied: Map<String, Value>,
    /// Overrides that matched no input.
    pub unmatched: Vec<String>,
}

/// Sampler-level names and the ComfyUI inputs they set.
const SAMPLER_KEYS: &[(&str, &[&str])] = &[
    ("seed", &["seed", "noise_seed"]),
    ("steps", &["steps"]),
    ("cfg_scale", &["cfg"]),
    ("cfg", &["cfg"]),
    ("sampler", &["sampler_name"]),
    ("sampler_name", &["sampler_name"]),
    ("scheduler", &["scheduler"]),
    ("denoise", &["denoise"]),
    ("width", &["width"]),
    ("height", &["height"]),
    ("batch_size", &["batch_size"]),
    ("checkpoint", &["ckpt_name"]),
];

/// Applies overrides to literal inputs (never to links):
/// * the seed's names (`seed` also sets `noise_seed`; -1 means a random seed),
///   `steps`, `cfg_scale`→`cfg`, `sampler`→`sampler_name`, `scheduler`,
///   `denoise`, `width`, `height`, `batch_size`, `checkpoint`→`ckpt_name` on every node
///   having them;
/// * `prompt` / `negative_prompt` on the `text` of the nodes wired into a
///   sampler's `positive` / `negative` inputs;
/// * `"<node id>.<input>"` on exactly that input.
pub fn apply_overrides(graph: &mut Value, overrides: &Map<String, Value>) -> Overrides {
    let mut result = Overrides::default();
    for (key, raw) in overrides {
        let value = if (key == "seed" || key.ends_with(".seed") || key.ends_with(".noise_seed"))
            && raw == &json!(-1)
        {
            json!(rand::random_range(
                0..=pack_runtime::params::MAX_RANDOM_SEED
            ))
        } else {
            raw.clone()
        };
        let hits = if let Some((node, input)) = key.split_once('.') {
            set_literal(graph, node, input, &value) as usize
        } else if key == "prompt" || key == "negative_prompt" {
            let port = if key == "prompt" {
                "positive"
            } else {
                "negative"
            };
            encoders_on(graph, port)
                .into_iter()
                .filter(|node| set_literal(graph, node, "text", &value))
                .count()
        } else if let Some((_, inputs)) = SAMPLER_KEYS.iter().find(|(k, _)| k == key) {
            let ids: Vec<String> = graph
                .as_object()
                .map(|g| g.keys().cloned().collect())
                .unwrap_or_default();
            ids.iter()
                .map(|id| {
                    inputs
                        .iter()
                        .filter(|input| set_literal(graph, id, input, &value))
                        .count()
                })
                .sum()
        } else {
            0
        };
        if hits > 0 {
            result.applied.insert(key.clone(), value);
        } else {
            result.unmatched.push(key.clone());
        }
    }
    result
}

/// Sets `node.inputs[input]` if it exists and is a literal (not a link).
fn set_literal(graph: &mut Value, node: &str, input: &str, value: &Value) -> bool {
    let Some(slot) = graph
        .get_mut(node)
        .and_then(|n| n.get_mut("inputs"))
        .and_then(|i| i.get_mut(input))
    else {
        return false;
    };
    if is_link(slot) {
        return false;
    }
    *slot = value.clone();
    true
}

fn is_link(v: &Value) -> bool {
    matches!(v, Value::Array(a) if a.len() == 2 && a[0].is_string() && a[1].is_u64())
}

/// Ids of the nodes linked into any node's `port` input (`positive`/`negative`).
fn encoders_on(graph: &Value, port: &str) -> Vec<String> {
    let mut ids: Vec<String> = graph
        .as_object()
        .into_iter()
        .flat_map(|g| g.values())
        .filter_map(|node| node["inputs"].get(port))
        .filter(|v| is_link(v))
        .filter_map(|v| v[0].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: usize = comfyui::graph::GraphLimits::DEFAULT.max_nodes;

    fn t2i() -> Value {
        json!({
            "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "m.safetensors"}},
            "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "old", "clip": ["4", 1]}},
            "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "old neg", "clip": ["4", 1]}},
            "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
            "3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 20, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}}
        })
    }

    #[test]
    fn overrides_reach_the_right_inputs() {
        let mut g = t2i();
        let o = json!({"seed": 42, "steps": 30, "cfg_scale": 6.5, "sampler": "dpmpp_2m", "width": 640, "prompt": "new", "negative_prompt": "bad", "4.ckpt_name": "x.safetensors", "3.model": "nope", "lora": 1});
        let r = apply_overrides(&mut g, o.as_object().unwrap());
        assert_eq!(g["3"]["inputs"]["seed"], 42);
        assert_eq!(g["3"]["inputs"]["cfg"], 6.5);
        assert_eq!(g["3"]["inputs"]["sampler_name"], "dpmpp_2m");
        assert_eq!(g["5"]["inputs"]["width"], 640);
        assert_eq!(g["6"]["inputs"]["text"], "new");
        assert_eq!(g["7"]["inputs"]["text"], "bad");
        assert_eq!(g["4"]["inputs"]["ckpt_name"], "x.safetensors");
        assert_eq!(
            g["3"]["inputs"]["model"],
            json!(["4", 0]),
            "links are never overwritten"
        );
        assert_eq!(r.unmatched, vec!["3.model".to_owned(), "lora".to_owned()]);
        assert_eq!(r.applied.len(), 8);
    }

    #[test]
    fn random_seed_is_concrete() {
        let mut g = t2i();
        let r = apply_overrides(&mut g, json!({"seed": -1}).as_object().unwrap());
        let seed = r.applied["seed"].as_i64().unwrap();
        assert!(seed >= 0);
        assert_eq!(g["3"]["inputs"]["seed"], seed);
    }

    #[test]
    fn ui_format_gets_an_explanation_and_prompt_bodies_are_unwrapped() {
        let ui = br#"{"nodes": [], "links": [], "version": 0.4}"#;
        let e = parse_api_graph("w.json", ui, NODES)
            .unwrap_err()
            .to_string();
        assert!(e.contains("UI-format") && e.contains("Export (API)"), "{e}");
        let body =
            br#"{"prompt": {"1": {"class_type": "EmptyImage", "inputs": {}}}, "client_id": "x"}"#;
        assert!(
            parse_api_graph("w.json", body, NODES)
                .unwrap()
                .get("1")
                .is_some()
        );
        assert!(
            parse_api_graph("w.json", b"[1]", NODES)
                .unwrap_err()
                .to_string()
                .contains("JSON object")
        );
        assert!(
            parse_api_graph("w.json", b"{", NODES)
                .unwrap_err()
                .to_string()
                .contains("not valid JSON")
        );
    }

    #[test]
    fn paths_outside_the_folders_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let allowed = root.path().join("workflows");
        let secret = root.path().join("secret");
        std::fs::create_dir_all(&allowed).unwrap();
        std::fs::create_dir_all(&secret).unwrap();
        std::fs::write(allowed.join("ok.json"), "{}").unwrap();
        std::fs::write(secret.join("s.json"), "{}").unwrap();
        std::os::unix::fs::symlink(secret.join("s.json"), allowed.join("link.json")).unwrap();
        let dirs = WorkflowDirs::new(vec![allowed.clone()]);
        assert!(dirs.read(allowed.join("ok.json").to_str().unwrap()).is_ok());
        assert!(
            dirs.read("ok.json").is_ok(),
            "relative to an allowed folder"
        );
        for bad in [
            secret.join("s.json").display().to_string(),
            "../secret/s.json".to_owned(),
            "link.json".to_owned(),
            format!("{}/../secret/s.json", allowed.display()),
            "/etc/passwd".to_owned(),
        ] {
            let e = dirs.read(&bad).unwrap_err();
            assert!(matches!(e, AppError::PathRefused { .. }), "{bad}: {e}");
            assert!(
                e.to_string().contains(&allowed.display().to_string()),
                "{e}"
            );
        }
        let missing = dirs.read("absent.json").unwrap_err().to_string();
        assert!(missing.contains("not found"), "{missing}");
    }

    #[test]
    fn the_file_size_cap_is_checked_before_reading_and_holds_at_the_limit() {
        let root = tempfile::tempdir().unwrap();
        let at_limit = br#"{"1": {"class_type": "EmptyImage", "inputs": {}}}"#;
        std::fs::write(root.path().join("ok.json"), at_limit).unwrap();
        let mut over = at_limit.to_vec();
        over.push(b' ');
        std::fs::write(root.path().join("big.json"), &over).unwrap();
        let dirs =
            WorkflowDirs::new(vec![root.path().to_owned()]).with_max_bytes(at_limit.len() as u64);
        assert_eq!(dirs.read("ok.json").unwrap().bytes, at_limit);
        let error = dirs.read("big.json").unwrap_err();
        assert!(
            matches!(error, AppError::WorkflowTooLarge { bytes, limit, .. }
                if bytes == over.len() as u64 && limit == at_limit.len() as u64),
            "{error:?}"
        );
        let text = error.to_string();
        assert!(text.contains("COMFYUI_MCP_MAX_WORKFLOW_BYTES"), "{text}");
        assert_eq!(
            WorkflowDirs::new(vec![]).max_bytes(),
            DEFAULT_MAX_WORKFLOW_BYTES
        );
    }

    #[test]
    fn an_inline_workflow_obeys_the_file_cap_measured_as_compact_json() {
        let graph = json!({"1": {"class_type": "EmptyImage", "inputs": {"width": 64}}});
        let compact = serde_json::to_vec(&graph).unwrap();
        let at = compact.len() as u64;
        let sha = inline_sha256(&graph, at).unwrap();
        assert_eq!(sha, hex::encode(Sha256::digest(&compact)));
        let error = inline_sha256(&graph, at - 1).unwrap_err();
        assert!(
            matches!(&error, AppError::WorkflowTooLarge { path, bytes, limit }
                if path == INLINE_NAME && *bytes == at && *limit == at - 1),
            "{error:?}"
        );
        assert!(error.to_string().contains("COMFYUI_MCP_MAX_WORKFLOW_BYTES"));
        let dirs = WorkflowDirs::new(vec![]).with_max_bytes(at);
        let sourced = WorkflowSource::Inline(graph.clone())
            .resolve(&dirs)
            .unwrap();
        assert_eq!(
            sourced.origin,
            comfyui::JobOrigin::InlineWorkflow { sha256: sha }
        );
        assert_eq!(
            (sourced.name.as_str(), &sourced.document),
            (INLINE_NAME, &graph)
        );
        let mut g = t2i();
        let r = apply_overrides(
            &mut g,
            json!({"checkpoint": "b.safetensors"}).as_object().unwrap(),
        );
        assert_eq!(g["4"]["inputs"]["ckpt_name"], "b.safetensors");
        assert!(r.unmatched.is_empty());
    }

    #[test]
    fn a_workflow_over_the_node_cap_is_refused_naming_the_limit() {
        let graph = |n: usize| {
            let nodes: Map<String, Value> = (0..n)
                .map(|i| {
                    (
                        i.to_string(),
                        json!({"class_type": "EmptyImage", "inputs": {}}),
                    )
                })
                .collect();
            serde_json::to_vec(&nodes).unwrap()
        };
        assert_eq!(
            parse_api_graph("w.json", &graph(5), 5)
                .unwrap()
                .as_object()
                .unwrap()
                .len(),
            5
        );
        let error = parse_api_graph("w.json", &graph(6), 5).unwrap_err();
        assert!(
            matches!(
                error,
                AppError::WorkflowTooManyNodes {
                    nodes: 6,
                    limit: 5,
                    ..
                }
            ),
            "{error:?}"
        );
        let text = error.to_string();
        assert!(text.contains("COMFYUI_MCP_MAX_GRAPH_NODES"), "{text}");
        // A /prompt body counts the nodes of its prompt.
        let body = format!("{{\"prompt\": {}}}", String::from_utf8(graph(6)).unwrap());
        assert!(parse_api_graph("w.json", body.as_bytes(), 5).is_err());
    }
}
