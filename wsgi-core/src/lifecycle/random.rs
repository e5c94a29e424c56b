//! The random numbers the recycling jitter draws from.
//!
//! Jitter only has to keep workers from reaching their limits together (gunicorn draws
//! `randint(0, max_requests_jitter)` with Python's `random`, also not cryptographic), so a
//! tiny generator does, and the crate gains no dependency: `rand` is in the lock file only
//! through a dev-dependency. SplitMix64 accepts any seed, zero included, and one generator
//! in the supervisor draws every worker's budget in turn, so two workers never share a
//! draw. Tests inject the seed; the supervisor seeds from the clock and the process id.

use std::time::{SystemTime, UNIX_EPOCH};

/// A SplitMix64 generator (Steele, Lea and Flood, "Fast splittable pseudorandom number
/// generators", OOPSLA 2014): not for secrets.
#[derive(Debug, Clone)]
pub(crate) struct Rng {
    state: u64,
}

impl Rng {
    /// A generator that always produces the same sequence for the same seed (tests).
    pub(crate) const fn with_seed(seed: u64) -> Self {
        Rng { state: seed }
    }

    /// A generator seeded from the wall clock's nanoseconds and the process id, so two
    /// hosts started in the same second still jitter differently.
    pub(crate) fn from_entropy() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let pid = u64::from(std::process::id());
        Rng::with_seed(nanos ^ pid.rotate_left(32))
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..=max`, every value possible, as Python's `randint(0, max)`.
    ///
    /// Multiplies the 64 random bits by the range size and keeps the high half (Lemire's
    /// method without the rejection step): no modulo, and `max == u64::MAX` needs no
    /// special case. The bias is below `range / 2^64`, irrelevant for jitter.
    pub(crate) fn up_to(&mut self, max: u64) -> u64 {
        let range = u128::from(max) + 1;
        ((u128::from(self.next_u64()) * range) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_other_seed_other_sequence() {
        let draw = |seed| {
            let mut rng = Rng::with_seed(seed);
            [rng.next_u64(), rng.next_u64(), rng.next_u64()]
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        // Seed zero is as good as any other (a plain xorshift would be stuck at zero).
        assert!(draw(0).iter().all(|&x| x != 0));
    }

    #[test]
    fn up_to_stays_in_range_and_reaches_both_ends() {
        let mut rng = Rng::with_seed(1);
        let mut seen = [false; 4];
        for _ in 0..1000 {
            let x = rng.up_to(3);
            assert!(x <= 3, "{x}");
            seen[x as usize] = true;
        }
        // 1000 draws miss a value of four with probability about 4 * 0.75^1000: never.
        assert_eq!(seen, [true; 4]);
        assert_eq!(rng.up_to(0), 0);
    }

    #[test]
    fn up_to_the_largest_range_keeps_all_bits() {
        let mut a = Rng::with_seed(42);
        let mut b = Rng::with_seed(42);
        assert_eq!(a.up_to(u64::MAX), b.next_u64());
    }

    #[test]
    fn entropy_seeds_differ_between_generators_made_apart() {
        // The clock moves between the two calls (nanosecond resolution on Linux); the
        // assertion is about the seed reaching the state, not about timing.
        let a = Rng::from_entropy();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = Rng::from_entropy();
        assert_ne!(a.state, b.state);
    }
}
