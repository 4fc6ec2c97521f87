//! `GET /queue`, typed: which jobs run, which wait and in what order.
//!
//! ComfyUI answers `{"queue_running": [item…], "queue_pending": [item…]}`, each item
//! `[number, prompt_id, prompt, extra_data, outputs_to_execute]`, and `queue_pending` is a
//! heap (sorted here by `number`, the order the jobs will run in).
//!
//! Invariants:
//! - The answer is read straight from its bytes: a queue of n jobs carries n whole graphs,
//!   and every graph is skipped unread (`IgnoredAny`), never built into a `Value`.
//! - The two lists must be lists (anything else is a decode error, so that a reconciliation
//!   never takes a malformed answer for an empty queue and declares its jobs lost); an item
//!   of another shape (no string id) is skipped.
//! - Every look-up by prompt id is O(1) (`positions`, built once in [`QueueSnapshot::new`]):
//!   a reconciliation of n open jobs against a queue of n entries is O(n), not O(n²).

use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The scalar cases of a visitor whose value of the wrong shape is `$none`.
macro_rules! ignore_scalars {
    ($none:expr) => {
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($none)
        }
    };
}

/// One job in ComfyUI's queue.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueEntry {
    /// Priority: lower runs first (front-queued jobs are negative).
    pub number: f64,
    /// The job.
    pub prompt_id: String,
    /// The submitter's client id, if any.
    pub client_id: Option<String>,
}

/// `GET /queue`, with `pending` in run order.
#[derive(Debug, Clone, Default)]
pub struct QueueSnapshot {
    running: Vec<QueueEntry>,
    pending: Vec<QueueEntry>,
    positions: HashMap<String, u32>,
}

impl PartialEq for QueueSnapshot {
    fn eq(&self, other: &Self) -> bool {
        // `positions` follows from the two lists.
        self.running == other.running && self.pending == other.pending
    }
}

impl QueueSnapshot {
    /// A snapshot of `running` and `pending` (sorted here into run order: by `number`).
    pub fn new(running: Vec<QueueEntry>, mut pending: Vec<QueueEntry>) -> QueueSnapshot {
        pending.sort_by(|a, b| a.number.total_cmp(&b.number));
        let mut positions = HashMap::with_capacity(running.len() + pending.len());
        for entry in &running {
            positions.entry(entry.prompt_id.clone()).or_insert(0);
        }
        for (i, entry) in pending.iter().enumerate() {
            let position = u32::try_from(running.len() + i).unwrap_or(u32::MAX);
            positions.entry(entry.prompt_id.clone()).or_insert(position);
        }
        QueueSnapshot {
            running,
            pending,
            positions,
        }
    }

    /// The running job(s) (at most one on a stock ComfyUI).
    pub fn running(&self) -> &[QueueEntry] {
        &self.running
    }

    /// Pending jobs sorted by `number` (the order they will run).
    pub fn pending(&self) -> &[QueueEntry] {
        &self.pending
    }

    /// True when `prompt_id` is running.
    pub fn is_running(&self, prompt_id: &str) -> bool {
        self.running.iter().any(|e| e.prompt_id == prompt_id)
    }

    /// True when `prompt_id` waits in the queue (not running).
    pub fn is_pending(&self, prompt_id: &str) -> bool {
        self.contains(prompt_id) && !self.is_running(prompt_id)
    }

    /// Jobs ahead of a pending `prompt_id` (running ones included); `Some(0)` when it runs;
    /// `None` when it is not in the queue.
    pub fn position(&self, prompt_id: &str) -> Option<u32> {
        self.positions.get(prompt_id).copied()
    }

    /// True when `prompt_id` is running or pending.
    pub fn contains(&self, prompt_id: &str) -> bool {
        self.positions.contains_key(prompt_id)
    }
}

impl<'de> Deserialize<'de> for QueueSnapshot {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Body {
            queue_running: Items,
            queue_pending: Items,
        }
        let body = Body::deserialize(d)?;
        Ok(QueueSnapshot::new(
            body.queue_running.0,
            body.queue_pending.0,
        ))
    }
}

/// A list of queue items; those of another shape are left out.
struct Items(Vec<QueueEntry>);

impl<'de> Deserialize<'de> for Items {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ItemsVisitor;
        impl<'de> Visitor<'de> for ItemsVisitor {
            type Value = Items;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of queue items")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Items, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
                while let Some(Item(item)) = seq.next_element()? {
                    items.extend(item);
                }
                Ok(Items(items))
            }
        }
        d.deserialize_seq(ItemsVisitor)
    }
}

/// One item, `None` when it has no string id at position 1.
struct Item(Option<QueueEntry>);

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ItemVisitor;
        impl<'de> Visitor<'de> for ItemVisitor {
            type Value = Item;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a queue item")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Item, A::Error> {
                let number = seq.next_element::<Leaf>()?.and_then(Leaf::number);
                let prompt_id = seq.next_element::<Leaf>()?.and_then(Leaf::string);
                let _prompt = seq.next_element::<IgnoredAny>()?;
                let client_id = seq.next_element::<Extra>()?.and_then(|e| e.0);
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Item(prompt_id.map(|prompt_id| QueueEntry {
                    number: number.unwrap_or(0.0),
                    prompt_id,
                    client_id,
                })))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Item, A::Error> {
                drain_map(map).map(|()| Item(None))
            }
            ignore_scalars!(Item(None));
        }
        d.deserialize_any(ItemVisitor)
    }
}

/// `extra_data`: only its `client_id` is read.
struct Extra(Option<String>);

impl<'de> Deserialize<'de> for Extra {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ExtraVisitor;
        impl<'de> Visitor<'de> for ExtraVisitor {
            type Value = Extra;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a queue item's extra data")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Extra, A::Error> {
                let mut client_id = None;
                while let Some(key) = map.next_key::<Leaf>()? {
                    if key.string().as_deref() == Some("client_id") {
                        client_id = map.next_value::<Leaf>()?.string();
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Extra(client_id))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Extra, A::Error> {
                drain_seq(seq).map(|()| Extra(None))
            }
            ignore_scalars!(Extra(None));
        }
        d.deserialize_any(ExtraVisitor)
    }
}

/// Any JSON value, kept only when it is a number or a string.
enum Leaf {
    Number(f64),
    String(String),
    Other,
}

impl Leaf {
    fn number(self) -> Option<f64> {
        match self {
            Leaf::Number(n) => Some(n),
            _ => None,
        }
    }

    fn string(self) -> Option<String> {
        match self {
            Leaf::String(s) => Some(s),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Leaf {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct LeafVisitor;
        impl<'de> Visitor<'de> for LeafVisitor {
            type Value = Leaf;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Leaf, E> {
                Ok(Leaf::Number(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Leaf, E> {
                Ok(Leaf::Number(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Leaf, E> {
                Ok(Leaf::Number(v as f64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Leaf, E> {
                Ok(Leaf::String(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Leaf, E> {
                Ok(Leaf::String(v))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Leaf, E> {
                Ok(Leaf::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Leaf, E> {
                Ok(Leaf::Other)
            }
            fn visit_none<E: de::Error>(self) -> Result<Leaf, E> {
                Ok(Leaf::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Leaf, A::Error> {
                drain_seq(seq).map(|()| Leaf::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Leaf, A::Error> {
                drain_map(map).map(|()| Leaf::Other)
            }
        }
        d.deserialize_any(LeafVisitor)
    }
}

fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(number: f64, id: &str) -> QueueEntry {
        QueueEntry {
            number,
            prompt_id: id.into(),
            client_id: None,
        }
    }

    #[test]
    fn position_counts_running_and_pending() {
        let q = QueueSnapshot::new(
            vec![entry(25.0, "r")],
            vec![entry(26.0, "a"), entry(-30.0, "f")],
        );
        assert_eq!(q.position("r"), Some(0));
        assert_eq!(q.position("f"), Some(1));
        assert_eq!(q.position("a"), Some(2));
        assert_eq!(q.position("zz"), None);
        assert!(q.is_running("r") && !q.is_pending("r"));
        assert!(q.is_pending("f") && !q.is_running("f"));
    }

    #[test]
    fn items_of_another_shape_are_skipped_and_graphs_unread() {
        let body = json!({
            "queue_running": [[1, "r", {"1": {"class_type": "X", "inputs": {}}}, {"client_id": "c"}, ["9"]]],
            "queue_pending": [
                [3, "b", {}, {}, []],
                [2, "a", {"deep": [[[{"x": null}]]]}, {"client_id": 7, "extra_pnginfo": {}}],
                [1],
                "text",
                {"prompt_id": "m"},
                [0.5, {"not": "an id"}],
                [],
            ],
            "other": true,
        });
        let q = QueueSnapshot::deserialize(&body).unwrap();
        assert_eq!(
            q.running(),
            [QueueEntry {
                number: 1.0,
                prompt_id: "r".into(),
                client_id: Some("c".into()),
            }]
        );
        assert_eq!(q.pending(), [entry(2.0, "a"), entry(3.0, "b")]);
        // The same from bytes, as the client reads it.
        let bytes = serde_json::to_vec(&body).unwrap();
        assert_eq!(serde_json::from_slice::<QueueSnapshot>(&bytes).unwrap(), q);
    }

    #[test]
    fn lists_that_are_not_lists_are_an_error_not_an_empty_queue() {
        for body in [
            json!({"queue_running": [[1, "r"]], "queue_pending": "x"}),
            json!({"queue_running": {}, "queue_pending": []}),
            json!({"queue_pending": []}),
            json!([]),
        ] {
            assert!(QueueSnapshot::deserialize(&body).is_err(), "{body}");
        }
    }
}
