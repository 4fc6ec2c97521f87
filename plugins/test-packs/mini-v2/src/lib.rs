//! Test pack `mini-v2` (pack name `mini-pack`, version 2.0.0): the `mini` pack's
//! `solid-color` template plus `gradient` (SolidMask -> FeatherMask -> MaskToImage ->
//! SaveImage, a black-to-white horizontal ramp). Used by hot-reload tests as the
//! "new version" of `mini`.

use test_pack_support::{
    BuildError, Param, TemplateInfo, gradient_graph, int_param, int_value, prompt_param,
    solid_color_build, solid_color_template, template,
};

test_pack_support::pack! { name: "mini-pack", list: list, build: build }

fn list() -> Vec<TemplateInfo> {
    vec![
        solid_color_template("A flat colour image (mini-pack v2)."),
        template(
            "gradient",
            "Gradient",
            "A black-to-white horizontal ramp (mini-pack v2).",
            vec![
                prompt_param(),
                int_param("width", "Image width in pixels.", 64, 8, 1024),
                int_param("height", "Image height in pixels.", 64, 8, 1024),
            ],
        ),
    ]
}

fn build(id: String, params: Vec<Param>) -> Result<String, BuildError> {
    match id.as_str() {
        "solid-color" => Ok(solid_color_build(&params)),
        "gradient" => Ok(gradient_graph(
            int_value(&params, "width", 64, 8, 1024),
            int_value(&params, "height", 64, 8, 1024),
            "comfyui-mcp/gradient",
        )),
        _ => Err(BuildError::UnknownTemplate(id)),
    }
}
