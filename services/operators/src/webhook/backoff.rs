//! How long a failed delivery waits before its next attempt: exponential, with jitter
//! so the retries of many deliveries that failed together do not arrive together.

use std::time::Duration;

use rand::Rng;

/// The wait after `failures` failed attempts (1 or more): `base * 2^(failures-1)`, capped
/// at `max`, of which a random part up to half is taken off ("equal jitter": never less
/// than half the exponential value, never more than it).
pub(crate) fn delay(failures: u32, base: Duration, max: Duration) -> Duration {
    let exponent = failures.saturating_sub(1).min(30);
    let full = base.saturating_mul(1u32 << exponent).min(max);
    let half = full / 2;
    let jitter = rand::rng().random_range(0.0..=1.0);
    half + half.mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BASE: Duration = Duration::from_millis(200);
    const MAX: Duration = Duration::from_secs(30);

    #[test]
    fn doubles_then_stops_at_the_cap() {
        let bounds = |failures| {
            let full = BASE.saturating_mul(1u32 << (failures - 1)).min(MAX);
            (full / 2, full)
        };
        for failures in 1..=12u32 {
            let (low, high) = bounds(failures);
            for _ in 0..50 {
                let wait = delay(failures, BASE, MAX);
                assert!(low <= wait && wait <= high, "{failures}: {wait:?}");
            }
        }
        assert_eq!(bounds(1), (Duration::from_millis(100), BASE));
        assert_eq!(bounds(12).1, MAX);
    }

    proptest! {
        #[test]
        fn never_exceeds_the_cap_nor_falls_below_half_the_base(
            failures in 0u32..=u32::MAX,
            base_ms in 1u64..=3_600_000,
            max_ms in 1u64..=3_600_000,
        ) {
            let (base, max) = (Duration::from_millis(base_ms), Duration::from_millis(max_ms.max(base_ms)));
            let wait = delay(failures, base, max);
            prop_assert!(wait <= max);
            prop_assert!(wait >= base / 2);
        }
    }
}
