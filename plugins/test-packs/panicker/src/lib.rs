//! Hostile test pack `panicker`: `build` of its one template, `panic-now`, panics with
//! the message `panicker: deliberate panic in build`.
//!
//! Packs are built with `panic = "abort"`: the panic hook writes the message to stderr
//! (which the host captures) and the guest traps. The host must turn that into one
//! failed call and keep serving.

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
            "panic-now",
            "Panic Now",
            "Panics in build.",
            vec![prompt_param()],
        )]
    }

    fn build(id: String, _params: Vec<Param>) -> Result<String, BuildError> {
        if id != "panic-now" {
            return Err(BuildError::UnknownTemplate(id));
        }
        if std::hint::black_box(true) {
            panic!("panicker: deliberate panic in build");
        }
        Err(BuildError::Failed("unreachable".to_string()))
    }
}

test_pack_support::export!(Pack);
