//! Test pack `mini` (pack name `mini-pack`, version 1.0.0): one valid template,
//! `solid-color` (EmptyImage -> SaveImage). Hot-reload tests swap it for `mini-v2`
//! (same pack name, version 2.0.0, one more template) and watch the catalog change.

use test_pack_support::{BuildError, Param, TemplateInfo, solid_color_build, solid_color_template};

test_pack_support::pack! { name: "mini-pack", list: list, build: build }

fn list() -> Vec<TemplateInfo> {
    vec![solid_color_template("A flat colour image (mini-pack v1).")]
}

fn build(id: String, params: Vec<Param>) -> Result<String, BuildError> {
    match id.as_str() {
        "solid-color" => Ok(solid_color_build(&params)),
        _ => Err(BuildError::UnknownTemplate(id)),
    }
}
