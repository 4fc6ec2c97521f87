//! Hostile test pack `sleeper-agent`: behaves during its self-test (built with the
//! defaults, an empty `prompt`) and misbehaves on real calls, which send a prompt:
//! * `spin`: with a non-empty prompt, spins forever without touching memory (like
//!   `endless-loop`, but it gets past the self-test, so it serves);
//! * `hog`: with a non-empty prompt, allocates 1 MiB blocks, touching every page, until
//!   allocation fails (like `memory-hog`).
//!
//! With an empty prompt both build a tiny valid graph. The host must bound what calls
//! of a serving pack can take: time and memory per call, and how many run at once.

use test_pack_support::{
    BuildError, Param, hog_memory, prompt_template, solid_color_graph, text_value,
};

fn spin() -> ! {
    let mut spins: u64 = 0;
    loop {
        spins = std::hint::black_box(spins.wrapping_add(1));
    }
}

test_pack_support::pack! {
    list: || {
        vec![
            prompt_template("spin", "Spin", "Spins forever when given a prompt."),
            prompt_template("hog", "Hog", "Eats memory when given a prompt."),
        ]
    },
    build: build,
}

fn build(id: String, params: Vec<Param>) -> Result<String, BuildError> {
    let awake = !text_value(&params, "prompt").is_empty();
    match id.as_str() {
        "spin" if awake => spin(),
        "hog" if awake => hog_memory(),
        "spin" | "hog" => Ok(solid_color_graph(
            64,
            64,
            0x40_40_40,
            "comfyui-mcp/sleeper-agent",
        )),
        _ => Err(BuildError::UnknownTemplate(id)),
    }
}
