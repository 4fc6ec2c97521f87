//! Job outputs on local disk: downloads a job's images from `/view` into
//! `<output_dir>/<prompt_id>/`, checks they are PNGs, and writes `provenance.json` beside them
//! (with, for a post-processed job, the stage's time and each image's steps and time). Also
//! the atomic-write and naming helpers the post-processing stage writes its results with.
//!
//! Invariants: nothing is ever written outside `<output_dir>/<sanitised prompt_id>/` — file
//! names coming from ComfyUI are reduced to one safe path component
//! ([`sanitize_filename`]) and the final path's parent is checked to be the job directory;
//! every file appears atomically (written to a hidden temp file in the same directory, then
//! renamed), so a reader never sees a half-written image or provenance; two images never
//! overwrite each other or the provenance file (names are de-duplicated).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::client::ComfyClient;
use crate::error::ClientError;
use crate::postprocess::ImagePostprocess;
use crate::snapshot::{JobOrigin, JobSnapshot, SavedImage};
use crate::types::ImageRef;

/// Name of the provenance sidecar in each job directory.
pub const PROVENANCE_FILE: &str = "provenance.json";

/// Longest sanitised file name, in bytes.
pub const MAX_FILENAME_BYTES: usize = 120;

/// A failure while storing a job's outputs.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// `/view` failed.
    #[error("downloading image `{filename}` failed: {source}")]
    Download {
        /// ComfyUI's file name.
        filename: String,
        /// The client error.
        #[source]
        source: ClientError,
    },
    /// A local file operation failed.
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        /// What we were doing (`create directory`, `rename`, …).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The downloaded bytes are not a readable PNG.
    #[error("image `{filename}` from ComfyUI is not a valid PNG: {reason}")]
    NotPng {
        /// ComfyUI's file name.
        filename: String,
        /// Decoder message.
        reason: String,
    },
    /// A computed path would leave the job directory (should be impossible after sanitising).
    #[error("refusing to write {} outside the job directory {}", path.display(), dir.display())]
    Escape {
        /// The offending path.
        path: PathBuf,
        /// The job directory.
        dir: PathBuf,
    },
}

/// Facts about the run that the snapshot does not hold, recorded in the provenance.
#[derive(Debug, Clone, PartialEq)]
pub struct ProvenanceContext {
    /// sha256 of the canonical JSON of the submitted graph ([`graph_sha256`]).
    pub graph_sha256: String,
    /// `system_stats.system.comfyui_version`, when known.
    pub comfyui_version: Option<String>,
    /// ComfyUI base URL without credentials.
    pub backend_url: String,
}

#[derive(Serialize)]
struct Provenance<'a> {
    prompt_id: &'a str,
    origin: &'a JobOrigin,
    #[serde(skip_serializing_if = "Option::is_none")]
    template_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    workflow_path: Option<&'a str>,
    parameters: &'a Value,
    metadata: &'a Value,
    graph_sha256: &'a str,
    comfyui_version: Option<&'a str>,
    backend_url: &'a str,
    /// The backend's name (a farm's member).
    backend: &'a str,
    /// What the user should know, e.g. that the job moved from a backend that stopped
    /// answering (so every backend it was on is recorded).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    warnings: &'a [String],
    submitted_at: f64,
    started_at: Option<f64>,
    finished_at: Option<f64>,
    execution_time: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    postprocess_ms: Option<f64>,
    images: Vec<ProvenanceImage<'a>>,
}

#[derive(Serialize)]
struct ProvenanceImage<'a> {
    #[serde(flatten)]
    comfyui: &'a ImageRef,
    path: &'a Path,
    local_filename: &'a str,
    width: u32,
    height: u32,
    bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    postprocess: Option<&'a ImagePostprocess>,
}

/// `<output_dir>/<sanitised prompt_id>`.
pub fn job_dir(output_dir: &Path, prompt_id: &str) -> PathBuf {
    output_dir.join(sanitize_filename(prompt_id))
}

/// Downloads every image of `job.images` into its job directory, in order. Each file is
/// checked to be a PNG and measured. On error, files already written stay (they are complete).
pub async fn download_job_images(
    client: &ComfyClient,
    job: &JobSnapshot,
    output_dir: &Path,
) -> Result<Vec<SavedImage>, OutputError> {
    let dir = job_dir(output_dir, &job.prompt_id);
    create_dir(&dir).await?;
    let mut taken: HashSet<String> = HashSet::from([PROVENANCE_FILE.to_owned()]);
    let mut saved = Vec::with_capacity(job.images.len());
    for image in &job.images {
        let name = unique_name(&sanitize_filename(&image.filename), &mut taken);
        let dest = checked_path(&dir, &name)?;
        let tmp = temp_path(&dir, &name);
        let result = async {
            let bytes = client.download_view(image, &tmp).await.map_err(|source| {
                OutputError::Download {
                    filename: image.filename.clone(),
                    source,
                }
            })?;
            let (width, height) = png_size(&tmp, &image.filename).await?;
            rename(&tmp, &dest).await?;
            Ok::<_, OutputError>(SavedImage {
                path: dest.clone(),
                filename: name.clone(),
                width,
                height,
                bytes,
                postprocess: None,
            })
        }
        .await;
        match result {
            Ok(s) => saved.push(s),
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        }
    }
    Ok(saved)
}

/// Writes `<job dir>/provenance.json` atomically and returns its path. `job.files` are the
/// local images (as returned by [`download_job_images`]), paired with `job.images` in order.
pub async fn write_provenance(
    output_dir: &Path,
    job: &JobSnapshot,
    ctx: &ProvenanceContext,
) -> Result<PathBuf, OutputError> {
    let dir = job_dir(output_dir, &job.prompt_id);
    create_dir(&dir).await?;
    let (template_id, workflow_path) = match &job.origin {
        JobOrigin::Template { template_id, .. } => (Some(template_id.as_str()), None),
        JobOrigin::Workflow { path, .. } => (None, Some(path.as_str())),
        JobOrigin::InlineWorkflow { .. } => (None, None),
    };
    let doc = Provenance {
        prompt_id: &job.prompt_id,
        origin: &job.origin,
        template_id,
        workflow_path,
        parameters: &job.parameters,
        metadata: &job.metadata,
        graph_sha256: &ctx.graph_sha256,
        comfyui_version: ctx.comfyui_version.as_deref(),
        backend_url: &ctx.backend_url,
        backend: &job.backend,
        warnings: &job.warnings,
        submitted_at: job.submitted_at,
        started_at: job.started_at,
        finished_at: job.finished_at,
        execution_time: job.execution_time,
        postprocess_ms: job.postprocess_ms,
        images: job
            .images
            .iter()
            .zip(&job.files)
            .map(|(r, f)| ProvenanceImage {
                comfyui: r,
                path: &f.path,
                local_filename: &f.filename,
                width: f.width,
                height: f.height,
                bytes: f.bytes,
                postprocess: f.postprocess.as_ref(),
            })
            .collect(),
    };
    let bytes = serde_json::to_vec_pretty(&doc).expect("provenance serialises");
    let dest = checked_path(&dir, PROVENANCE_FILE)?;
    write_atomically(&dir, &dest, bytes).await?;
    Ok(dest)
}

/// Writes `bytes` to `dest` (a file inside `dir`) atomically: a hidden temp file in `dir`,
/// then a rename over `dest`. The temp file is removed when anything fails. Both steps run
/// in one blocking task (one hop off the runtime, not one per file operation).
pub(crate) async fn write_atomically(
    dir: &Path,
    dest: &Path,
    bytes: impl AsRef<[u8]> + Send + 'static,
) -> Result<(), OutputError> {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dest = checked_path(dir, &name)?;
    let tmp = temp_path(dir, &name);
    let io = |action: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| OutputError::Io {
            action,
            path,
            source,
        }
    };
    tokio::task::spawn_blocking(move || {
        let written = std::fs::write(&tmp, bytes)
            .map_err(io("write", &tmp))
            .and_then(|()| std::fs::rename(&tmp, &dest).map_err(io("rename into place", &dest)));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    })
    .await
    .map_err(|e| OutputError::Io {
        action: "write",
        path: dir.to_owned(),
        source: std::io::Error::other(e),
    })?
}

/// Moves `from` to `to` (both inside `dir`) by a rename.
pub(crate) async fn move_within(
    dir: &Path,
    from: &Path,
    to_name: &str,
) -> Result<PathBuf, OutputError> {
    let to = checked_path(dir, to_name)?;
    rename(from, &to).await?;
    Ok(to)
}

/// The name under which ComfyUI's original of `filename` is kept (`<stem>.orig<ext>`), not
/// colliding (case-insensitively) with any name in `taken`, which it joins.
pub(crate) fn raw_name(filename: &str, taken: &mut HashSet<String>) -> String {
    let (stem, ext) = split_extension(filename);
    let room = MAX_FILENAME_BYTES.saturating_sub(ext.len() + ".orig".len());
    let wanted = format!("{}.orig{ext}", cut(stem, room));
    unique_name(&wanted, taken)
}

/// The names a job directory's files already take: the delivered images and the provenance.
pub(crate) fn taken_names<'a>(names: impl IntoIterator<Item = &'a str>) -> HashSet<String> {
    let mut taken: HashSet<String> = HashSet::from([PROVENANCE_FILE.to_owned()]);
    taken.extend(names.into_iter().map(str::to_lowercase));
    taken
}

/// Reduces a name from ComfyUI to one safe file-name component: directory parts (`/`, `\`),
/// `..`, leading dots and spaces, control and Windows-reserved characters are removed,
/// Windows device names (`CON`, `NUL`, `COM1`…) get a `_` prefix, the result is at most
/// [`MAX_FILENAME_BYTES`] bytes (extension kept) and never empty (`image`).
pub fn sanitize_filename(name: &str) -> String {
    // Last path component only (both separators).
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '<' | '>' | ':' | '"' | '|' | '?' | '*'))
        .collect();
    let trimmed = cleaned
        .trim_start_matches(['.', ' '])
        .trim_end_matches(['.', ' '])
        .to_owned();
    let mut out = if trimmed.is_empty() {
        "image".to_owned()
    } else {
        trimmed
    };
    let stem_upper = out
        .split('.')
        .next()
        .unwrap_or("")
        .trim_end()
        .to_ascii_uppercase();
    let reserved = matches!(stem_upper.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || ((stem_upper.starts_with("COM") || stem_upper.starts_with("LPT"))
            && stem_upper.len() == 4
            && stem_upper.as_bytes()[3].is_ascii_digit());
    if reserved {
        out.insert(0, '_');
    }
    if out.len() > MAX_FILENAME_BYTES {
        // The cut may end on a dot or a space (no extension kept): trim again, so the name
        // stays valid on Windows and sanitising it once more changes nothing. The first
        // character is neither, so the result is never empty.
        out = shorten(&out, MAX_FILENAME_BYTES)
            .trim_end_matches(['.', ' '])
            .to_owned();
    }
    out
}

/// Canonical JSON (object keys sorted at every level, no whitespace).
pub fn canonical_json(value: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                let mut out = serde_json::Map::new();
                for k in keys {
                    out.insert(k.clone(), sorted(&map[k]));
                }
                Value::Object(out)
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(value).to_string()
}

/// Hex sha256 of [`canonical_json`] of `graph`.
pub fn graph_sha256(graph: &Value) -> String {
    hex::encode(Sha256::digest(canonical_json(graph).as_bytes()))
}

/// Longest extension kept apart when a name is cut (`.png`, `.webp`, `.json`…).
const MAX_EXTENSION_BYTES: usize = 16;

/// Splits `name` into stem and extension (with its dot). A leading dot or an "extension"
/// longer than [`MAX_EXTENSION_BYTES`] is not an extension.
fn split_extension(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(i) if i > 0 && name.len() - i <= MAX_EXTENSION_BYTES => (&name[..i], &name[i..]),
        _ => (name, ""),
    }
}

/// `stem` cut to at most `max` bytes on a character boundary.
fn cut(stem: &str, max: usize) -> &str {
    let mut end = max.min(stem.len());
    while !stem.is_char_boundary(end) {
        end -= 1;
    }
    &stem[..end]
}

fn shorten(name: &str, max: usize) -> String {
    let (stem, ext) = split_extension(name);
    format!("{}{ext}", cut(stem, max.saturating_sub(ext.len())))
}

/// `name` (already sanitised, at most [`MAX_FILENAME_BYTES`]) or, when it is taken
/// (case-insensitively), `<stem>-<n><ext>` for the smallest free `n >= 2`, the stem cut so
/// the whole stays within [`MAX_FILENAME_BYTES`]. The suffix is appended *after* cutting, so
/// it can never be cut away again.
///
/// Terminates for any input: the candidates for different `n` are pairwise distinct (even
/// lower-cased: they end in different `-<n><ext>` tails), so at most `taken.len() + 1` of
/// them are tried.
fn unique_name(name: &str, taken: &mut HashSet<String>) -> String {
    let mut candidate = name.to_owned();
    let mut n: u64 = 2;
    while taken.contains(&candidate.to_lowercase()) {
        let (stem, ext) = split_extension(name);
        let suffix = format!("-{n}");
        let room = MAX_FILENAME_BYTES.saturating_sub(ext.len() + suffix.len());
        candidate = format!("{}{suffix}{ext}", cut(stem, room));
        n += 1;
    }
    taken.insert(candidate.to_lowercase());
    candidate
}

fn checked_path(dir: &Path, name: &str) -> Result<PathBuf, OutputError> {
    let path = dir.join(name);
    let single_component = Path::new(name).components().count() == 1
        && matches!(
            Path::new(name).components().next(),
            Some(std::path::Component::Normal(_))
        );
    if !single_component || path.parent() != Some(dir) {
        return Err(OutputError::Escape {
            path,
            dir: dir.to_owned(),
        });
    }
    Ok(path)
}

fn temp_path(dir: &Path, name: &str) -> PathBuf {
    let short = shorten(name, 80);
    dir.join(format!(".{short}.{}.part", uuid::Uuid::new_v4().simple()))
}

async fn create_dir(dir: &Path) -> Result<(), OutputError> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|source| OutputError::Io {
            action: "create directory",
            path: dir.to_owned(),
            source,
        })
}

async fn rename(from: &Path, to: &Path) -> Result<(), OutputError> {
    tokio::fs::rename(from, to)
        .await
        .map_err(|source| OutputError::Io {
            action: "rename into place",
            path: to.to_owned(),
            source,
        })
}

/// Width and height from the PNG header of `path`.
async fn png_size(path: &Path, filename: &str) -> Result<(u32, u32), OutputError> {
    let path = path.to_owned();
    let name = filename.to_owned();
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path).map_err(|source| OutputError::Io {
            action: "open",
            path: path.clone(),
            source,
        })?;
        let reader = png::Decoder::new(std::io::BufReader::new(file))
            .read_info()
            .map_err(|e| OutputError::NotPng {
                filename: name.clone(),
                reason: e.to_string(),
            })?;
        let info = reader.info();
        Ok((info.width, info.height))
    })
    .await
    .map_err(|e| OutputError::NotPng {
        filename: filename.to_owned(),
        reason: format!("header check did not finish: {e}"),
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_stay_one_component() {
        let cases = [
            ("../../x", "x"),
            ("/etc/passwd", "passwd"),
            ("a/../../b", "b"),
            ("..", "image"),
            ("...", "image"),
            ("", "image"),
            ("..\\..\\win.png", "win.png"),
            (".hidden.png", "hidden.png"),
            ("ok_00001_.png", "ok_00001_.png"),
            ("evil_00001_.png\n", "evil_00001_.png"),
            ("a\u{0}b.png", "ab.png"),
            ("CON", "_CON"),
            ("nul.png", "_nul.png"),
            ("com3.txt", "_com3.txt"),
            ("console.png", "console.png"),
            ("what?.png", "what.png"),
            ("trailing. ", "trailing"),
        ];
        for (input, want) in cases {
            let got = sanitize_filename(input);
            assert_eq!(got, want, "{input:?}");
            let dir = Path::new("jobs/x");
            assert_eq!(checked_path(dir, &got).unwrap().parent(), Some(dir));
        }
    }

    #[test]
    fn long_names_are_cut_keeping_extension() {
        let long = format!("{}.png", "é".repeat(200));
        let s = sanitize_filename(&long);
        assert!(s.len() <= MAX_FILENAME_BYTES);
        assert!(s.ends_with(".png"));
    }

    #[test]
    fn escape_attempts_are_refused() {
        let dir = Path::new("jobs/x");
        for bad in ["..", "../a", "a/b", "/abs", ""] {
            assert!(checked_path(dir, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_are_deduplicated_case_insensitively_and_provenance_reserved() {
        let mut taken = HashSet::from([PROVENANCE_FILE.to_owned()]);
        assert_eq!(unique_name("a.png", &mut taken), "a.png");
        assert_eq!(unique_name("A.png", &mut taken), "A-2.png");
        assert_eq!(unique_name("a.png", &mut taken), "a-3.png");
        assert_eq!(
            unique_name("provenance.json", &mut taken),
            "provenance-2.json"
        );
    }

    /// Runs `f` on its own thread and fails (instead of hanging the suite) when it does not
    /// finish within 10 s: the naming loop used to spin for ever.
    fn within_guard<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("naming did not finish within 10 s (endless loop)")
    }

    /// Names a batch the way `download_job_images` does.
    fn name_all(names: Vec<String>) -> Vec<String> {
        within_guard(move || {
            let mut taken = HashSet::from([PROVENANCE_FILE.to_owned()]);
            names
                .iter()
                .map(|n| unique_name(&sanitize_filename(n), &mut taken))
                .collect()
        })
    }

    fn assert_valid_batch(inputs: &[String], got: &[String]) {
        assert_eq!(got.len(), inputs.len());
        let mut seen = HashSet::from([PROVENANCE_FILE.to_owned()]);
        for name in got {
            assert!(
                name.len() <= MAX_FILENAME_BYTES,
                "{name:?} is {} bytes",
                name.len()
            );
            assert!(
                seen.insert(name.to_lowercase()),
                "collision on {name:?} in {got:?}"
            );
            assert_eq!(
                &sanitize_filename(name),
                name,
                "not a sanitised name: {name:?}"
            );
            assert!(checked_path(Path::new("jobs/x"), name).is_ok(), "{name:?}");
        }
    }

    #[test]
    fn long_names_that_sanitise_alike_terminate_and_stay_distinct() {
        // 111+ character prefix, batch of two: ComfyUI names them `<prefix>_00001_.png`, …
        let prefix = "p".repeat(120);
        let inputs: Vec<String> = vec![
            format!("{prefix}_00001_.png"),
            format!("{prefix}_00002_.png"),
            format!("{prefix}_00003_.png"),
        ];
        let got = name_all(inputs.clone());
        assert_valid_batch(&inputs, &got);
        assert!(got.iter().all(|n| n.ends_with(".png")), "{got:?}");
    }

    #[test]
    fn many_identical_long_names_get_growing_suffixes() {
        let inputs: Vec<String> = (0..150)
            .map(|_| format!("{}.png", "Z".repeat(300)))
            .collect();
        let got = name_all(inputs.clone());
        assert_valid_batch(&inputs, &got);
        assert!(
            got[1].ends_with("-2.png") && got[149].ends_with("-150.png"),
            "{got:?}"
        );
    }

    #[test]
    fn unicode_and_case_variants_never_collide() {
        let stem = "é".repeat(70);
        let inputs: Vec<String> = vec![
            format!("{stem}.png"),
            format!("{}.png", stem.to_uppercase()),
            format!("dir/{stem}.PNG"),
            format!("{stem}?.png"),
            "a-2.png".into(),
            "a.png".into(),
            "A.png".into(),
            "PROVENANCE.JSON".into(),
            format!("{}.png", "İ".repeat(80)),
            format!("{}.png", "i̇".repeat(40)),
            "x".repeat(500),
            "x".repeat(501),
        ];
        let got = name_all(inputs.clone());
        assert_valid_batch(&inputs, &got);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        #[test]
        fn any_name_list_terminates_unique_and_within_length(
            names in proptest::collection::vec(
                proptest::prop_oneof![
                    ".{0,200}",
                    "[aA]{100,130}(\\.png|\\.PNG)?",
                    "[a-z./\\\\]{0,8}",
                    "(CON|nul|com1|provenance)(\\.json|\\.png)?",
                ],
                0..40,
            )
        ) {
            let got = name_all(names.clone());
            assert_valid_batch(&names, &got);
        }
    }

    #[test]
    fn canonical_json_sorts_keys_so_hash_ignores_order() {
        let a: Value =
            serde_json::from_str(r#"{"b":1,"a":{"y":[1,{"d":2,"c":3}],"x":0}}"#).unwrap();
        let b: Value =
            serde_json::from_str(r#"{"a":{"x":0,"y":[1,{"c":3,"d":2}]},"b":1}"#).unwrap();
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"x":0,"y":[1,{"c":3,"d":2}]},"b":1}"#
        );
        assert_eq!(graph_sha256(&a), graph_sha256(&b));
        assert_eq!(graph_sha256(&a).len(), 64);
    }

    #[tokio::test]
    async fn png_header_is_read_and_garbage_refused() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("g.png");
        let mut png = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut png, 64, 48);
            enc.set_color(png::ColorType::Rgb);
            let mut w = enc.write_header().unwrap();
            w.write_image_data(&vec![7u8; 64 * 48 * 3]).unwrap();
        }
        std::fs::write(&good, png).unwrap();
        assert_eq!(png_size(&good, "g.png").await.unwrap(), (64, 48));
        let bad = dir.path().join("b.png");
        std::fs::write(&bad, b"<html>not a png</html>").unwrap();
        assert!(matches!(
            png_size(&bad, "b.png").await,
            Err(OutputError::NotPng { .. })
        ));
    }
}
