//! Hostile test pack `memory-hog`: `build` of its one template, `eat-memory`, allocates
//! 1 MiB blocks, writes to every page of each and keeps them all, until allocation
//! fails.
//!
//! Without a host limit it grows linear memory to the 4 GiB wasm32 ceiling. With one,
//! `memory.grow` is refused, the allocator reports failure and the guest aborts (a
//! trap); the host must report the memory limit and stay up.

use test_pack_support::{
    BuildError, Guest, PackInfo, Param, TemplateInfo, pack_info, prompt_param, template,
};

const BLOCK: usize = 1 << 20;
const PAGE: usize = 4096;

struct Pack;

impl Guest for Pack {
    fn info() -> PackInfo {
        pack_info!()
    }

    fn list() -> Vec<TemplateInfo> {
        vec![template(
            "eat-memory",
            "Eat Memory",
            "Allocates until memory runs out.",
            vec![prompt_param()],
        )]
    }

    fn build(id: String, _params: Vec<Param>) -> Result<String, BuildError> {
        if id != "eat-memory" {
            return Err(BuildError::UnknownTemplate(id));
        }
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut block = vec![0u8; BLOCK];
            for (i, byte) in block.iter_mut().step_by(PAGE).enumerate() {
                *byte = (i as u8) | 1;
            }
            hoard.push(std::hint::black_box(block));
            std::hint::black_box(&hoard);
        }
    }
}

test_pack_support::export!(Pack);
