//! Hostile test pack `grudge`: `build` of its one template, `remember`, looks for what
//! an earlier call of the same instance slot left behind, and puts it in the graph:
//! * the count of calls a static counter (in the pack's data segment) has seen;
//! * the first and the last 32-bit word of 8 MiB it grows its memory by, read before
//!   it writes a marker into both (the first word lies within the host's default
//!   keep-resident budget of a pooled memory, the last one beyond it).
//!
//! Graph: EmptyImage -> SaveImage whose `filename_prefix` is
//! `comfyui-mcp/grudge/<calls>-<first word>-<last word>` (words in hex). A host that
//! gives every call a fresh memory always gets `1-0-0`; a pooled slot that was not
//! reset gives a higher count or the marker `5ca1ab1e`.

use std::sync::atomic::{AtomicU32, Ordering};

use test_pack_support::{BuildError, Param, solid_color_graph};

/// Calls this instance has served.
static CALLS: AtomicU32 = AtomicU32::new(0);

/// What each call writes into the memory it grew.
const MARKER: u32 = 0x5ca1_ab1e;

/// Pages of 64 KiB grown per call (8 MiB).
const GROWN_PAGES: usize = 128;

test_pack_support::single_template_pack! {
    template: ("remember", "Remember", "Counts its calls and looks for leftovers of earlier ones."),
    build: build,
}

fn build(_params: Vec<Param>) -> Result<String, BuildError> {
    let calls = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
    let (first, last) = grow_and_mark();
    Ok(solid_color_graph(
        64,
        64,
        0,
        &format!("comfyui-mcp/grudge/{calls}-{first:x}-{last:x}"),
    ))
}

/// Grows the memory by [`GROWN_PAGES`] (outside the allocator: nothing else uses
/// those pages), returns the first and the last word found there and marks both.
fn grow_and_mark() -> (u32, u32) {
    let old = core::arch::wasm32::memory_grow(0, GROWN_PAGES);
    if old == usize::MAX {
        return (u32::MAX, u32::MAX);
    }
    let base = old * 65536;
    let words = [base, base + GROWN_PAGES * 65536 - 4].map(|at| at as *mut u32);
    // SAFETY: both words lie in the pages just grown, which are in bounds, aligned
    // and owned by nothing else in this pack.
    unsafe {
        let seen = words.map(|word| word.read_volatile());
        for word in words {
            word.write_volatile(MARKER);
        }
        (seen[0], seen[1])
    }
}
