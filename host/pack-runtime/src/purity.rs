//! What makes a pack call a pure function of its parameters: fixed WASI
//! clocks and randomness seeded from the call.
//!
//! Rule (also stated in `wit/workflow.wit`): within one call
//! * `wasi:clocks/wall-clock` always reads [`FIXED_WALL_CLOCK_SECS`]
//!   (2000-01-01T00:00:00Z);
//! * `wasi:clocks/monotonic-clock` starts at 0 and advances by
//!   [`MONOTONIC_STEP_NS`] at every read, so a loop waiting for time to pass
//!   ends, and ends the same way every time;
//! * `wasi:random/random`, `wasi:random/insecure` and
//!   `wasi:random/insecure-seed` are seeded from [`CallSeed`]: SHA-256 of the
//!   template id and the canonical parameters. Equal parameters give equal
//!   bytes, so a pack's graph is byte-identical for equal parameters. The
//!   "secure" random is therefore not secret: packs hold no secrets.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand_010::{SeedableRng, TryRng};
use sha2::{Digest, Sha256};

use crate::spec::ParamValue;

/// Seconds since the Unix epoch that the wall clock always shows (2000-01-01T00:00:00Z).
pub const FIXED_WALL_CLOCK_SECS: u64 = 946_684_800;

/// Nanoseconds the monotonic clock advances at each read (1 ms).
pub const MONOTONIC_STEP_NS: u64 = 1_000_000;

/// The seed of one call's randomness.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct CallSeed([u8; 32]);

impl std::fmt::Debug for CallSeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CallSeed({})", hex::encode(&self.0[..8]))
    }
}

impl CallSeed {
    /// The seed of a `build` call: SHA-256 over a version tag, the template
    /// id and every `(name, value)` in order, each length-prefixed and typed,
    /// so distinct parameter lists never hash alike.
    pub(crate) fn for_build<'a>(
        template_id: &str,
        params: impl IntoIterator<Item = (&'a str, &'a ParamValue)>,
    ) -> Self {
        let mut h = Sha256::new();
        h.update(b"comfyui-mcp/call-seed/v1/build\0");
        put(&mut h, template_id.as_bytes());
        for (name, value) in params {
            put(&mut h, name.as_bytes());
            match value {
                ParamValue::Text(s) => {
                    h.update([b't']);
                    put(&mut h, s.as_bytes());
                }
                ParamValue::Integer(i) => {
                    h.update([b'i']);
                    h.update(i.to_le_bytes());
                }
                ParamValue::Number(n) => {
                    h.update([b'n']);
                    h.update(n.to_bits().to_le_bytes());
                }
                ParamValue::Boolean(b) => {
                    h.update([b'b', u8::from(*b)]);
                }
                // What the pack sees of an upload (its digest stays host-side).
                ParamValue::Image(image) => {
                    h.update([b'm']);
                    put(&mut h, image.name.as_bytes());
                    h.update(image.width.to_le_bytes());
                    h.update(image.height.to_le_bytes());
                    h.update([u8::from(image.has_alpha)]);
                }
            }
        }
        Self(h.finalize().into())
    }

    /// The seed of the metadata calls (`info`, `list`): a constant.
    pub(crate) fn for_describe() -> Self {
        Self(Sha256::digest(b"comfyui-mcp/call-seed/v1/describe").into())
    }

    /// A seed for one consumer of randomness, independent of the others.
    fn derive(&self, purpose: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.0);
        h.update(purpose);
        h.finalize().into()
    }

    /// Generator for `wasi:random/random`.
    pub(crate) fn secure(&self) -> SeededRng {
        SeededRng::new(self.derive(b"secure"))
    }

    /// Generator for `wasi:random/insecure`.
    pub(crate) fn insecure(&self) -> SeededRng {
        SeededRng::new(self.derive(b"insecure"))
    }

    /// The value of `wasi:random/insecure-seed`.
    pub(crate) fn insecure_seed(&self) -> u128 {
        let bytes = self.derive(b"insecure-seed");
        u128::from_le_bytes(bytes[..16].try_into().expect("16 of 32 bytes"))
    }
}

fn put(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

/// A ChaCha12 generator from a fixed seed.
pub(crate) struct SeededRng(rand_010::rngs::StdRng);

impl SeededRng {
    fn new(seed: [u8; 32]) -> Self {
        Self(rand_010::rngs::StdRng::from_seed(seed))
    }
}

impl TryRng for SeededRng {
    type Error = std::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        self.0.try_next_u32()
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        self.0.try_next_u64()
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.0.try_fill_bytes(dst)
    }
}

/// `wasi:clocks/wall-clock`: always [`FIXED_WALL_CLOCK_SECS`].
pub(crate) struct FixedWallClock;

impl wasmtime_wasi::HostWallClock for FixedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::from_secs(FIXED_WALL_CLOCK_SECS)
    }
}

/// `wasi:clocks/monotonic-clock`: 0, then [`MONOTONIC_STEP_NS`] more at each read.
#[derive(Default)]
pub(crate) struct SteppingClock(AtomicU64);

impl wasmtime_wasi::HostMonotonicClock for SteppingClock {
    fn resolution(&self) -> u64 {
        MONOTONIC_STEP_NS
    }
    fn now(&self) -> u64 {
        self.0.fetch_add(MONOTONIC_STEP_NS, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_010::Rng;

    fn bytes(mut rng: SeededRng) -> [u8; 16] {
        let mut out = [0; 16];
        rng.fill_bytes(&mut out);
        out
    }

    #[test]
    fn equal_params_seed_equally_and_any_difference_changes_the_seed() {
        let a = ParamValue::Text("cat".into());
        let b = ParamValue::Integer(1);
        let seed = CallSeed::for_build("t", [("prompt", &a), ("steps", &b)]);
        assert_eq!(
            seed,
            CallSeed::for_build("t", [("prompt", &a), ("steps", &b)])
        );
        assert_eq!(bytes(seed.secure()), bytes(seed.secure()));
        assert_ne!(bytes(seed.secure()), bytes(seed.insecure()));
        let other = [
            CallSeed::for_build("u", [("prompt", &a), ("steps", &b)]),
            CallSeed::for_build("t", [("prompt", &b), ("steps", &a)]),
            CallSeed::for_build("t", [("prompt", &a)]),
            // Length prefixes: moving bytes between id and name changes the seed.
            CallSeed::for_build("tp", [("rompt", &a), ("steps", &b)]),
            CallSeed::for_describe(),
        ];
        for o in other {
            assert_ne!(seed, o);
        }
    }

    #[test]
    fn clocks_are_fixed_and_stepping() {
        use wasmtime_wasi::{HostMonotonicClock, HostWallClock};
        assert_eq!(FixedWallClock.now(), FixedWallClock.now());
        let mono = SteppingClock::default();
        assert_eq!(
            [mono.now(), mono.now(), mono.now()],
            [0, MONOTONIC_STEP_NS, 2 * MONOTONIC_STEP_NS]
        );
    }
}
