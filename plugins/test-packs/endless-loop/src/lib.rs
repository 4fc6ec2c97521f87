//! Hostile test pack `endless-loop`: `info` and `list` behave; `build` of its one
//! template, `loop-forever`, spins forever without touching memory or calling the host.
//!
//! The host must stop it with its time limit (epoch interruption) and report a timeout.
//! `black_box` keeps the optimiser from proving the loop endless or removing it.

use test_pack_support::{
    BuildError, Guest, PackInfo, Param, TemplateInfo, pack_info, prompt_param, template,
};

struct Pack;

impl Guest for Pack {
    fn info() -> PackInfo {
        pack_info!()
    }

    fn list() -> Vec<TemplateInfo> {
        vec![template(
            "loop-forever",
            "Loop Forever",
            "Never returns from build.",
            vec![prompt_param()],
        )]
    }

    fn build(id: String, _params: Vec<Param>) -> Result<String, BuildError> {
        if id != "loop-forever" {
            return Err(BuildError::UnknownTemplate(id));
        }
        let mut spins: u64 = 0;
        while std::hint::black_box(true) {
            spins = std::hint::black_box(spins.wrapping_add(1));
        }
        Err(BuildError::Failed(format!(
            "the endless loop ended after {spins} spins"
        )))
    }
}

test_pack_support::export!(Pack);
