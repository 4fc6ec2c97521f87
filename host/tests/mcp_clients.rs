//! End-to-end suite through independent MCP clients: runs the Python tests in `tests/mcp/`
//! (official MCP Python SDK) against the `comfyui-mcp` binary built by this package.
//!
//! The virtualenv lives at `<repo>/.venv`. It is created with `python3 -m venv` and filled
//! with `pip install -r tests/mcp/requirements.txt`; a stamp file holding the SHA-256 of
//! the requirements skips the install while they are unchanged. pytest's output streams
//! to the terminal; the test fails unless pytest exits with 0 (exit 5, "no tests ran",
//! is a failure too).
//!
//! Needs `python3` (3.10 or newer) and, on the first run or after the requirements
//! change, access to the Python package index.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// The repository root: this package lives in `<repo>/host`.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent directory")
        .to_path_buf()
}

/// Runs a command to completion with inherited stdio, panicking with `what` on failure.
fn run(cmd: &mut Command, what: &str) {
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("{what}: could not start {cmd:?}: {e}"));
    assert!(status.success(), "{what}: {cmd:?} exited with {status}");
}

/// Makes sure `<repo>/.venv` exists and holds exactly the pinned requirements.
fn ensure_venv(repo: &Path) -> PathBuf {
    let venv = repo.join(".venv");
    let python = venv.join("bin").join("python");
    let requirements = repo.join("tests").join("mcp").join("requirements.txt");
    let wanted = hex::encode(Sha256::digest(
        std::fs::read(&requirements)
            .unwrap_or_else(|e| panic!("reading {}: {e}", requirements.display())),
    ));
    let stamp = venv.join(".requirements.sha256");
    if python.exists() && std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == wanted) {
        return python;
    }
    if !python.exists() {
        run(
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
            "creating the Python virtualenv (python3 >= 3.10 is required)",
        );
    }
    run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--quiet",
                "-r",
            ])
            .arg(&requirements),
        "installing the MCP test requirements",
    );
    std::fs::write(&stamp, &wanted).unwrap_or_else(|e| panic!("writing {}: {e}", stamp.display()));
    python
}

#[test]
fn python_sdk_end_to_end_suite() {
    let repo = repo_root();
    let python = ensure_venv(&repo);
    let status = Command::new(&python)
        .args(["-m", "pytest", "tests/mcp", "-q"])
        .current_dir(&repo)
        .env("COMFYUI_MCP_BIN", env!("CARGO_BIN_EXE_comfyui-mcp"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .status()
        .unwrap_or_else(|e| panic!("could not run pytest with {}: {e}", python.display()));
    match status.code() {
        Some(0) => {}
        Some(5) => panic!("pytest collected no tests in tests/mcp"),
        _ => panic!("the MCP client suite failed (pytest {status}); see its output above"),
    }
}
