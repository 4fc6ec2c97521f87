//! `comfyui-mcp new NAME --lang rust|python|js [--dir PATH]`: writes a pack project with one
//! working template, ready to build, check and serve.
//!
//! The project is the example pack of its language (see [`sources`]) with the example's
//! pack name replaced by `NAME` and its template id by `NAME-txt2img`, in one left-to-right
//! pass (a name containing the example's name is not replaced twice).
//!
//! Invariants: `NAME` is kebab-case (it becomes the pack name, the template id prefix, a crate
//! or npm package name and a file name) and at most [`MAX_NAME_BYTES`]; the target directory
//! must not exist: it is created with `create_dir` (never reused, never overwritten) and
//! removed again if a file cannot be written, so a failed run leaves nothing behind.

mod sources;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

pub use sources::{Example, Source, example};

/// Longest pack name accepted; the template id `NAME-txt2img` stays within MCP tool-name limits.
pub const MAX_NAME_BYTES: usize = 48;

/// Names a Rust crate cannot have (keywords and the standard crates).
const RUST_RESERVED: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "core", "crate", "dyn", "else", "enum",
    "extern", "false", "fn", "for", "if", "impl", "in", "let", "loop", "match", "mod", "move",
    "mut", "pub", "ref", "return", "self", "static", "std", "alloc", "struct", "super", "test",
    "trait", "true", "type", "unsafe", "use", "where", "while",
];

/// The language of a new pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    /// Rust with wit-bindgen, built for wasm32-wasip2.
    #[value(alias = "rs")]
    Rust,
    /// Python with componentize-py.
    #[value(alias = "py")]
    Python,
    /// JavaScript with componentize-qjs (QuickJS).
    #[value(alias = "javascript")]
    Js,
}

/// Options of `new`.
#[derive(Debug, Clone, Args)]
pub struct NewArgs {
    /// Pack name, kebab-case (e.g. `my-pack`); the template id becomes `NAME-txt2img`.
    pub name: String,
    /// The language to write the pack in.
    #[arg(long, value_enum)]
    pub lang: Lang,
    /// Where to write the project (default: ./NAME); must not exist yet.
    #[arg(long, value_name = "PATH")]
    pub dir: Option<PathBuf>,
}

/// Why a project could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name is not kebab-case or too long.
    #[error(
        "pack name `{0}` is not valid: use lowercase ASCII letters, digits and single hyphens, \
         starting with a letter and not ending with a hyphen, at most {MAX_NAME_BYTES} bytes (e.g. `my-pack`)"
    )]
    InvalidName(String),
    /// The name cannot be a Rust crate name.
    #[error(
        "pack name `{0}` is reserved in Rust (a keyword or a standard crate); choose another, e.g. `{0}-pack`"
    )]
    ReservedName(String),
    /// The target exists.
    #[error("{} already exists; `new` never overwrites: choose another --dir or remove it", .0.display())]
    Exists(PathBuf),
    /// Writing failed.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// What was being written.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// Checks that `name` can be a pack name in `lang`.
pub fn validate_name(name: &str, lang: Lang) -> Result<(), ScaffoldError> {
    let kebab = name.len() <= MAX_NAME_BYTES
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && !name.contains("--")
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !kebab {
        return Err(ScaffoldError::InvalidName(name.to_string()));
    }
    if lang == Lang::Rust && RUST_RESERVED.contains(&name) {
        return Err(ScaffoldError::ReservedName(name.to_string()));
    }
    Ok(())
}

/// The template id of a new pack.
pub fn template_id(name: &str) -> String {
    format!("{name}-txt2img")
}

/// Replaces every occurrence of each `(from, to)` in one left-to-right pass.
fn substitute(text: &str, pairs: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let next = pairs
            .iter()
            .filter_map(|(from, to)| rest.find(from).map(|at| (at, *from, *to)))
            .min_by_key(|(at, from, _)| (*at, std::cmp::Reverse(from.len())));
        match next {
            Some((at, from, to)) => {
                out.push_str(&rest[..at]);
                out.push_str(to);
                rest = &rest[at + from.len()..];
            }
            None => {
                out.push_str(rest);
                return out;
            }
        }
    }
}

/// The project's files for `name` in `lang`: (path, text, executable).
pub fn render(name: &str, lang: Lang) -> Vec<(&'static str, String, bool)> {
    let ex = example(lang);
    let id = template_id(name);
    let pairs = [(ex.template_id, id.as_str()), (ex.pack, name)];
    ex.files
        .iter()
        .map(|f| (f.path, substitute(f.text, &pairs), f.executable))
        .collect()
}

/// Writes the project; returns its directory.
pub fn create(args: &NewArgs) -> Result<PathBuf, ScaffoldError> {
    validate_name(&args.name, args.lang)?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.symlink_metadata().is_ok() {
        return Err(ScaffoldError::Exists(dir));
    }
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ScaffoldError::Io { path, source }
    };
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    fs::create_dir(&dir).map_err(|e| match e.kind() {
        io::ErrorKind::AlreadyExists => ScaffoldError::Exists(dir.clone()),
        _ => io_err(&dir)(e),
    })?;
    let written = write_files(&dir, render(&args.name, args.lang));
    if written.is_err() {
        let _ = fs::remove_dir_all(&dir);
    }
    written.map(|()| dir)
}

fn write_files(dir: &Path, files: Vec<(&str, String, bool)>) -> Result<(), ScaffoldError> {
    for (rel, text, executable) in files {
        let path = dir.join(rel);
        let io_err = |source| ScaffoldError::Io {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_err)?;
        }
        fs::write(&path, text).map_err(io_err)?;
        set_mode(&path, executable).map_err(io_err)?;
    }
    Ok(())
}

#[cfg(unix)]
fn set_mode(path: &Path, executable: bool) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(
        path,
        fs::Permissions::from_mode(if executable { 0o755 } else { 0o644 }),
    )
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _executable: bool) -> io::Result<()> {
    Ok(())
}

/// What to do next, printed by `comfyui-mcp new`.
pub fn next_steps(dir: &Path, args: &NewArgs) -> String {
    let test = match args.lang {
        Lang::Rust => "cargo test && ",
        Lang::Python | Lang::Js => "",
    };
    format!(
        "created {dir} ({lang:?} pack `{name}`, template `{id}`)\n\nnext:\n  cd {dir}\n  ./build.sh\n  {test}comfyui-mcp check {name}.wasm\n  cp {name}.wasm <templates folder>   # COMFYUI_TEMPLATES_DIR, default ./templates\n\nsee {dir}/README.md\n",
        dir = dir.display(),
        lang = args.lang,
        name = args.name,
        id = template_id(&args.name),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const LANGS: [Lang; 3] = [Lang::Rust, Lang::Python, Lang::Js];

    fn args(name: &str, lang: Lang, dir: PathBuf) -> NewArgs {
        NewArgs {
            name: name.to_string(),
            lang,
            dir: Some(dir),
        }
    }

    #[test]
    fn names_must_be_kebab_case_and_short() {
        for good in ["a", "my-pack", "p2", "x-1-y"] {
            assert!(validate_name(good, Lang::Python).is_ok(), "{good}");
        }
        let long = "a".repeat(MAX_NAME_BYTES + 1);
        for bad in [
            "",
            "My-Pack",
            "my_pack",
            "-a",
            "a-",
            "a--b",
            "1a",
            "a b",
            "ä",
            long.as_str(),
        ] {
            let err = validate_name(bad, Lang::Js).unwrap_err();
            assert!(matches!(err, ScaffoldError::InvalidName(_)), "{bad}: {err}");
            assert!(err.to_string().contains("at most 48 bytes"), "{err}");
        }
        assert!(matches!(
            validate_name("fn", Lang::Rust),
            Err(ScaffoldError::ReservedName(_))
        ));
        assert!(validate_name("fn", Lang::Python).is_ok());
    }

    #[test]
    fn substitution_is_one_pass() {
        let pairs = [
            ("py-txt2img", "python-example-2-txt2img"),
            ("python-example", "python-example-2"),
        ];
        assert_eq!(
            substitute("python-example py-txt2img python-example.wasm", &pairs),
            "python-example-2 python-example-2-txt2img python-example-2.wasm"
        );
    }

    #[test]
    fn no_trace_of_the_example_names_is_left() {
        for lang in LANGS {
            let ex = example(lang);
            let files = render("zebra", lang);
            assert_eq!(files.len(), ex.files.len());
            let all: String = files.iter().map(|(_, t, _)| t.as_str()).collect();
            assert!(!all.contains(ex.pack), "{lang:?} still names {}", ex.pack);
            assert!(
                !all.contains(ex.template_id),
                "{lang:?} still names {}",
                ex.template_id
            );
            assert!(all.contains("zebra-txt2img"), "{lang:?} has no template id");
            assert!(files.iter().any(|(p, t, _)| *p == "wit/workflow.wit"
                && t.contains("package comfyui:workflow@1.0.0;")));
            assert!(files.iter().any(|(p, _, x)| *p == "build.sh" && *x));
        }
    }

    #[test]
    fn writes_a_project_and_refuses_to_overwrite() {
        let tmp = tempfile::tempdir().expect("tempdir");
        for lang in LANGS {
            let dir = tmp.path().join(format!("{lang:?}")).join("p");
            let a = args("zebra", lang, dir.clone());
            assert_eq!(create(&a).expect("first run"), dir);
            assert!(dir.join("README.md").is_file());
            assert!(dir.join("wit/workflow.wit").is_file());
            let readme = fs::read_to_string(dir.join("README.md")).expect("readme");
            assert!(readme.contains("comfyui-mcp check zebra.wasm"), "{readme}");
            match create(&a) {
                Err(ScaffoldError::Exists(p)) => assert_eq!(p, dir),
                other => panic!("expected Exists, got {other:?}"),
            }
        }
        let empty = tmp.path().join("empty");
        fs::create_dir(&empty).expect("mkdir");
        assert!(matches!(
            create(&args("zebra", Lang::Js, empty)),
            Err(ScaffoldError::Exists(_))
        ));
    }

    #[cfg(unix)]
    #[test]
    fn build_scripts_are_executable() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("p");
        create(&args("zebra", Lang::Python, dir.clone())).expect("create");
        let mode = fs::metadata(dir.join("build.sh"))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        let mode = fs::metadata(dir.join("app.py"))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
    }
}
