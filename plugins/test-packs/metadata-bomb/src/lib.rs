//! Test pack `metadata-bomb`: describes itself with 300 templates (over the host's
//! default cap of 256), the first with a 512 KiB description and 1000 tags. The host
//! must refuse it at load with a message naming the cap, without serving any of it.
//! Tests raise the caps one by one to reach each further check.

use test_pack_support::{TemplateInfo, numbered_templates, prompt_template, unknown_template};

/// Templates offered: over the default cap.
const TEMPLATES: usize = 300;
/// Bytes of the first template's description.
const HUGE: usize = 512 << 10;
/// Tags of the first template.
const TAGS: usize = 1000;

test_pack_support::pack! { list: list, build: unknown_template }

fn list() -> Vec<TemplateInfo> {
    numbered_templates(TEMPLATES, |i| {
        let mut t = prompt_template(
            &format!("bomb-{i}"),
            "Bomb",
            "A template of the metadata bomb.",
        );
        if i == 0 {
            t.description = "x".repeat(HUGE);
            t.tags = (0..TAGS).map(|j| format!("tag-{j}")).collect();
        }
        t
    })
}
