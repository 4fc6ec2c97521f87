//! The `comfyui://` URIs: built with every path segment percent-encoded and parsed back
//! with the segments decoded, so any template id, prompt id or file name round-trips.
//!
//! Invariant: [`parse_uri`] accepts exactly the shapes the builders produce (and nothing
//! with a malformed escape or an extra segment).

/// The scheme of every resource this server offers.
pub const SCHEME: &str = "comfyui://";
/// The resource listing packs that failed to load and template id clashes.
pub const ERRORS_URI: &str = "comfyui://catalog/errors";
/// The URI of a template resource.
pub fn template_uri(id: &str) -> String {
    format!("{SCHEME}templates/{}", encode(id))
}

/// The URI of a model folder's file list.
pub fn models_uri(folder: &str) -> String {
    format!("{SCHEME}models/{}", encode(folder))
}

/// The URI of a job's status resource.
pub fn job_uri(prompt_id: &str) -> String {
    format!("{SCHEME}jobs/{}", encode(prompt_id))
}

/// The URI of one of a job's images.
pub fn image_uri(prompt_id: &str, filename: &str) -> String {
    format!("{SCHEME}images/{}/{}", encode(prompt_id), encode(filename))
}

/// A parsed `comfyui://` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceRef {
    /// `comfyui://templates/<id>`
    Template(String),
    /// `comfyui://catalog/errors`
    CatalogErrors,
    /// `comfyui://jobs/<prompt_id>`
    Job(String),
    /// `comfyui://models/<folder>`
    Models(String),
    /// `comfyui://images/<prompt_id>/<filename>`
    Image {
        /// The job.
        prompt_id: String,
        /// The local file name.
        filename: String,
    },
}

/// Parses a resource URI; `None` when it is not one of ours.
pub fn parse_uri(uri: &str) -> Option<ResourceRef> {
    let rest = uri.strip_prefix(SCHEME)?;
    if rest == "catalog/errors" {
        return Some(ResourceRef::CatalogErrors);
    }
    let (kind, tail) = rest.split_once('/')?;
    let segments: Vec<&str> = tail.split('/').collect();
    match (kind, segments.as_slice()) {
        ("templates", [id]) if !id.is_empty() => Some(ResourceRef::Template(decode(id)?)),
        ("jobs", [id]) if !id.is_empty() => Some(ResourceRef::Job(decode(id)?)),
        ("models", [folder]) if !folder.is_empty() => Some(ResourceRef::Models(decode(folder)?)),
        ("images", [id, file]) if !id.is_empty() && !file.is_empty() => Some(ResourceRef::Image {
            prompt_id: decode(id)?,
            filename: decode(file)?,
        }),
        _ => None,
    }
}

fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes one percent-encoded path segment; `None` for a malformed escape or non-UTF-8.
pub fn decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_round_trip_including_odd_names() {
        assert_eq!(template_uri("item-icon"), "comfyui://templates/item-icon");
        assert_eq!(
            parse_uri("comfyui://templates/item-icon"),
            Some(ResourceRef::Template("item-icon".into()))
        );
        let uri = image_uri("abc-1", "my image/../x%.png");
        assert_eq!(
            parse_uri(&uri),
            Some(ResourceRef::Image {
                prompt_id: "abc-1".into(),
                filename: "my image/../x%.png".into()
            })
        );
        assert_eq!(parse_uri(&job_uri("j")), Some(ResourceRef::Job("j".into())));
        assert_eq!(parse_uri(ERRORS_URI), Some(ResourceRef::CatalogErrors));
        assert_eq!(
            parse_uri(&models_uri("upscale_models")),
            Some(ResourceRef::Models("upscale_models".into()))
        );
    }

    #[test]
    fn foreign_or_malformed_uris_are_refused() {
        for uri in [
            "file:///etc/passwd",
            "comfyui://images/only-id",
            "comfyui://images/a/b/c",
            "comfyui://jobs/",
            "comfyui://models/",
            "comfyui://models/a/b",
            "comfyui://templates/%zz",
            "comfyui://other/x",
        ] {
            assert_eq!(parse_uri(uri), None, "{uri}");
        }
    }
}
