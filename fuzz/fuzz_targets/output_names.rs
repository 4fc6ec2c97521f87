//! Output naming (`comfyui::outputs`): `sanitize_filename` directly, and the
//! per-job unique naming through the nearest public API,
//! `download_job_images`, against a local HTTP stand-in that answers every
//! `GET /view` with the same 1x1 PNG.
//!
//! Invariants checked: a sanitised name is one non-empty path component of
//! at most `MAX_FILENAME_BYTES` bytes without separators or control
//! characters; every image of a job is saved under its own name (distinct
//! even ignoring case, never `provenance.json`), each within the limit, and
//! the call terminates (run with `-timeout=`; see README).

#![no_main]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use arbitrary::Arbitrary;
use comfyui::ComfyConfig;
use comfyui::client::ComfyClient;
use comfyui::outputs::{
    MAX_FILENAME_BYTES, PROVENANCE_FILE, download_job_images, sanitize_filename,
};
use comfyui::snapshot::{JobOrigin, JobSnapshot, JobState};
use comfyui::types::ImageRef;
use libfuzzer_sys::fuzz_target;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Arbitrary)]
enum Name {
    /// A name as ComfyUI might return it.
    New(String),
    /// The same name as an earlier image (batches share a prefix).
    Again(u8),
    /// `len` copies of one character, plus an extension (long prefixes).
    Long(u8, char, bool),
}

struct Env {
    rt: tokio::runtime::Runtime,
    client: ComfyClient,
    out: tempfile::TempDir,
}

static ENV: LazyLock<Env> = LazyLock::new(|| {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(serve(listener, png_1x1()));
    let config = ComfyConfig::new(&format!("http://{addr}")).unwrap();
    let client = ComfyClient::new(&config).unwrap();
    Env {
        rt,
        client,
        out: tempfile::tempdir().unwrap(),
    }
});

fn png_1x1() -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, 1, 1);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(&[0, 0, 0]).unwrap();
    writer.finish().unwrap();
    bytes
}

async fn serve(listener: tokio::net::TcpListener, png: Vec<u8>) {
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: image/png\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        png.len()
    );
    let mut response = head.into_bytes();
    response.extend_from_slice(&png);
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            continue;
        };
        let response = response.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            let _ = socket.write_all(&response).await;
            let _ = socket.shutdown().await;
        });
    }
}

fn check_sanitised(raw: &str, name: &str) {
    assert!(!name.is_empty(), "{raw:?} sanitised to nothing");
    assert!(
        name.len() <= MAX_FILENAME_BYTES,
        "{raw:?} sanitised to {} bytes",
        name.len()
    );
    assert!(
        !name.contains(['/', '\\']) && !name.chars().any(char::is_control),
        "{raw:?} sanitised to {name:?}"
    );
    assert!(name != "." && name != "..", "{raw:?} sanitised to {name:?}");
    let mut parts = Path::new(name).components();
    assert!(
        matches!(parts.next(), Some(std::path::Component::Normal(_))) && parts.next().is_none(),
        "{raw:?} sanitised to {name:?}, not one path component"
    );
}

fn job(prompt_id: String, names: Vec<String>) -> JobSnapshot {
    JobSnapshot {
        prompt_id,
        state: JobState::Running,
        progress: 0.99,
        queue_position: None,
        execution_time: None,
        postprocess_ms: None,
        postprocessing: None,
        images: names
            .into_iter()
            .map(|filename| ImageRef {
                filename,
                subfolder: String::new(),
                kind: "output".into(),
            })
            .collect(),
        files: Vec::new(),
        warnings: Vec::new(),
        error: None,
        node_errors: json!({}),
        submitted_at: 0.0,
        started_at: None,
        finished_at: None,
        origin: JobOrigin::Workflow {
            path: "fuzz.json".into(),
            sha256: String::new(),
        },
        parameters: json!({}),
        metadata: json!({}),
    }
}

static JOBS: AtomicU64 = AtomicU64::new(0);

fuzz_target!(|input: Vec<Name>| {
    let mut names: Vec<String> = Vec::new();
    for n in input.iter().take(8) {
        let name = match n {
            Name::New(s) => s.clone(),
            Name::Again(i) if !names.is_empty() => names[*i as usize % names.len()].clone(),
            Name::Again(_) => continue,
            Name::Long(len, c, ext) => {
                let stem: String = std::iter::repeat_n(*c, *len as usize).collect();
                if *ext {
                    format!("{stem}_00001_.png")
                } else {
                    stem
                }
            }
        };
        check_sanitised(&name, &sanitize_filename(&name));
        names.push(name);
    }
    if names.is_empty() {
        return;
    }
    let env = &*ENV;
    let prompt_id = format!("job-{}", JOBS.fetch_add(1, Ordering::Relaxed));
    let dir: PathBuf = env.out.path().join(&prompt_id);
    let count = names.len();
    let saved = env
        .rt
        .block_on(download_job_images(
            &env.client,
            &job(prompt_id, names.clone()),
            env.out.path(),
        ))
        .unwrap_or_else(|e| panic!("saving {names:?} failed: {e}"));
    assert_eq!(saved.len(), count);
    let mut seen = HashSet::new();
    for s in &saved {
        check_sanitised(&s.filename, &s.filename);
        assert!(
            seen.insert(s.filename.to_lowercase()),
            "two images saved as {:?} from {names:?}",
            s.filename
        );
        assert_ne!(s.filename.to_lowercase(), PROVENANCE_FILE);
        assert_eq!(s.path, dir.join(&s.filename));
    }
    let _ = std::fs::remove_dir_all(&dir);
});
