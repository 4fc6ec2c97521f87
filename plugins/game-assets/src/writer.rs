//! A ComfyUI API-format graph written straight to JSON text, node by node.
//!
//! The API format is one object of nodes, `{"<id>": {"class_type": "...", "inputs":
//! {...}}}`, where an input is a literal (text, integer, number, boolean) or a link
//! `["<node id>", <output index>]`. Every graph this pack builds is a fixed sequence
//! of such nodes, so it is written in that order into one buffer: no tree of
//! `serde_json::Value`s (a map per node and per input list, each key hashed) is built
//! and serialised per call, which was most of the pack's own time in a build.
//!
//! Invariants: the text is compact JSON exactly as `serde_json::to_string` writes the
//! same nodes (scalars go through serde_json's own serialiser: string escaping, integer
//! and shortest-round-trip float formatting), keys in the order written, so equal
//! calls give byte-identical text. The writer never fails; a non-finite number is
//! written as `null`, as serde_json does (the host only passes finite numbers).

use serde::Serialize;

/// A graph under construction. [`Graph::node`] appends a node; [`Graph::finish`]
/// closes the object and returns its text.
pub struct Graph {
    out: Vec<u8>,
    nodes: usize,
}

/// The `inputs` object of the node being written.
pub struct Inputs<'g> {
    out: &'g mut Vec<u8>,
    count: usize,
}

impl Graph {
    /// An empty graph; `capacity` is a guess of its size in bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        let mut out = Vec::with_capacity(capacity);
        out.push(b'{');
        Self { out, nodes: 0 }
    }

    /// Appends node `id` of class `class_type`, its inputs written by `inputs`.
    /// Ids must be unique within a graph (callers use fixed ids).
    pub fn node(&mut self, id: &str, class_type: &str, inputs: impl FnOnce(&mut Inputs<'_>)) {
        if self.nodes > 0 {
            self.out.push(b',');
        }
        self.nodes += 1;
        scalar(&mut self.out, id);
        self.out.extend_from_slice(br#":{"class_type":"#);
        scalar(&mut self.out, class_type);
        self.out.extend_from_slice(br#","inputs":{"#);
        inputs(&mut Inputs {
            out: &mut self.out,
            count: 0,
        });
        self.out.extend_from_slice(b"}}");
    }

    /// The graph's JSON text.
    pub fn finish(mut self) -> String {
        self.out.push(b'}');
        // Only serde_json's output and ASCII punctuation were written.
        String::from_utf8(self.out).expect("serde_json writes UTF-8")
    }
}

impl Inputs<'_> {
    /// A text input (a prompt, a file name, a combo choice).
    pub fn text(&mut self, name: &str, value: &str) -> &mut Self {
        self.literal(name, value)
    }

    /// A whole-number input.
    pub fn int(&mut self, name: &str, value: impl Into<u64>) -> &mut Self {
        self.literal(name, &value.into())
    }

    /// A real-number input.
    pub fn number(&mut self, name: &str, value: f64) -> &mut Self {
        self.literal(name, &value)
    }

    /// A boolean input.
    pub fn flag(&mut self, name: &str, value: bool) -> &mut Self {
        self.literal(name, &value)
    }

    /// A link to output `output` of node `from`.
    pub fn link(&mut self, name: &str, from: &str, output: u32) -> &mut Self {
        self.key(name);
        self.out.push(b'[');
        scalar(self.out, from);
        self.out.push(b',');
        scalar(self.out, &output);
        self.out.push(b']');
        self
    }

    fn literal(&mut self, name: &str, value: &(impl Serialize + ?Sized)) -> &mut Self {
        self.key(name);
        scalar(self.out, value);
        self
    }

    fn key(&mut self, name: &str) {
        if self.count > 0 {
            self.out.push(b',');
        }
        self.count += 1;
        scalar(self.out, name);
        self.out.push(b':');
    }
}

/// Appends one scalar as serde_json writes it. Writing into a `Vec` cannot fail,
/// and strings, integers, floats and booleans always serialise.
fn scalar(out: &mut Vec<u8>, value: &(impl Serialize + ?Sized)) {
    serde_json::to_writer(out, value).expect("a scalar always serialises into a Vec");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn writes_what_serde_json_writes_for_the_same_nodes() {
        let mut g = Graph::with_capacity(0);
        g.node("1", "A", |i| {
            i.text("text", "a \"quoted\"\nline\u{1}é")
                .int("seed", 9_007_199_254_740_991_u64)
                .number("cfg", 7.0)
                .number("denoise", 0.35)
                .flag("tapered", true)
                .link("clip", "1", 1);
        });
        g.node("10", "B", |_| {});
        let expected = json!({
            "1": {"class_type": "A", "inputs": {
                "text": "a \"quoted\"\nline\u{1}é", "seed": 9_007_199_254_740_991_u64,
                "cfg": 7.0, "denoise": 0.35, "tapered": true, "clip": ["1", 1]}},
            "10": {"class_type": "B", "inputs": {}}
        });
        assert_eq!(g.finish(), serde_json::to_string(&expected).unwrap());
    }

    #[test]
    fn an_empty_graph_is_an_empty_object_and_non_finite_numbers_are_null() {
        assert_eq!(Graph::with_capacity(8).finish(), "{}");
        let mut g = Graph::with_capacity(8);
        g.node("1", "A", |i| {
            i.number("x", f64::NAN);
        });
        assert_eq!(
            g.finish(),
            r#"{"1":{"class_type":"A","inputs":{"x":null}}}"#
        );
    }
}
