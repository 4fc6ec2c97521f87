//! Test pack `template-cap`: exactly 256 valid templates, the host's default cap
//! (`MetadataLimits::DEFAULT.max_templates_per_pack`; a host test keeps the two equal).
//! It loads with the defaults and is refused with a cap of 255; the load benchmark
//! measures it.

use test_pack_support::{
    BuildError, Param, TemplateInfo, int_param, int_value, numbered_templates, prompt_param,
    solid_color_graph, template,
};

/// Templates offered: the default cap.
const TEMPLATES: usize = 256;

test_pack_support::pack! { list: list, build: build }

fn list() -> Vec<TemplateInfo> {
    numbered_templates(TEMPLATES, |i| {
        template(
            &format!("cap-{i:03}"),
            &format!("Template {i}"),
            "A flat colour image; one of many identical templates.",
            vec![
                prompt_param(),
                int_param("color", "RGB colour as an integer.", 0, 0, 0xFF_FFFF),
            ],
        )
    })
}

fn build(id: String, params: Vec<Param>) -> Result<String, BuildError> {
    if !id.starts_with("cap-") {
        return Err(BuildError::UnknownTemplate(id));
    }
    let color = int_value(&params, "color", 0, 0, 0xFF_FFFF);
    Ok(solid_color_graph(64, 64, color, &id))
}
