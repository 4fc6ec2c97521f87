//! The files of a new pack project, per language, embedded at compile time.
//!
//! One source of truth: a new project is a copy of the example pack of its language
//! (`plugins/{rust,python,js}-example/`, built and tested by this repository's CI) with the
//! example's pack name and template id replaced, and the WIT contract comes from `wit/`. So
//! the scaffold cannot drift from packs that are known to build, load and serve.

use super::Lang;

/// One file of a project.
pub struct Source {
    /// Path inside the project, `/`-separated.
    pub path: &'static str,
    /// Its text, before the names are replaced.
    pub text: &'static str,
    /// Whether it is a script to run (mode 0755 instead of 0644).
    pub executable: bool,
}

/// What the example of a language is called, to be replaced by the new pack's names.
pub struct Example {
    /// The example's pack name (replaced by the new name).
    pub pack: &'static str,
    /// The example's template id (replaced by `<name>-txt2img`).
    pub template_id: &'static str,
    /// Its files.
    pub files: &'static [Source],
}

macro_rules! source {
    ($dir:literal, $path:literal) => {
        source!($dir, $path, false)
    };
    ($dir:literal, $path:literal, $executable:expr) => {
        Source {
            path: $path,
            text: include_str!(concat!("../../../plugins/", $dir, "/", $path)),
            executable: $executable,
        }
    };
}

/// The WIT contract every project carries, from `wit/` (the examples link to it).
const WIT: Source = Source {
    path: "wit/workflow.wit",
    text: include_str!("../../../wit/v1/workflow.wit"),
    executable: false,
};

const RUST: Example = Example {
    pack: "rust-example",
    template_id: "rs-txt2img",
    files: &[
        source!("rust-example", "Cargo.toml"),
        source!("rust-example", "Cargo.lock"),
        source!("rust-example", "src/lib.rs"),
        source!("rust-example", "src/txt2img.rs"),
        source!("rust-example", "build.sh", true),
        source!("rust-example", "README.md"),
        source!("rust-example", ".gitignore"),
        WIT,
    ],
};

const PYTHON: Example = Example {
    pack: "python-example",
    template_id: "py-txt2img",
    files: &[
        source!("python-example", "app.py"),
        source!("python-example", "requirements.txt"),
        source!("python-example", "build.sh", true),
        source!("python-example", "README.md"),
        source!("python-example", ".gitignore"),
        WIT,
    ],
};

const JS: Example = Example {
    pack: "js-example",
    template_id: "js-txt2img",
    files: &[
        source!("js-example", "app.js"),
        source!("js-example", "package.json"),
        source!("js-example", "package-lock.json"),
        source!("js-example", "build.sh", true),
        source!("js-example", "README.md"),
        source!("js-example", ".gitignore"),
        WIT,
    ],
};

/// The example a project in `lang` starts from.
pub fn example(lang: Lang) -> &'static Example {
    match lang {
        Lang::Rust => &RUST,
        Lang::Python => &PYTHON,
        Lang::Js => &JS,
    }
}
