//! The one backoff policy for calls that fail because the leader is unknown
//! or changing: the server's write retry (`Node::write`) and the CLI's
//! leader redirect both pace themselves with it.

use std::time::Duration;

use backon::ExponentialBuilder;

/// The first pause after a failed attempt.
pub const PAUSE_FIRST: Duration = Duration::from_millis(20);
/// The longest pause between two attempts; pauses double up to it.
pub const PAUSE_MAX: Duration = Duration::from_millis(500);
/// How long to keep retrying in all (a few election timeouts).
pub const RETRY_FOR: Duration = Duration::from_secs(5);

/// Pauses of 20 ms, doubling, at most 500 ms each, for up to 5 s in total;
/// no jitter (as `Node::write` paced itself before). Use
/// with backon's `Retryable` (`op.retry(policy()).when(..)`), or cap it
/// further with `with_max_times`.
pub fn policy() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(PAUSE_FIRST)
        .with_factor(2.0)
        .with_max_delay(PAUSE_MAX)
        .with_total_delay(Some(RETRY_FOR))
        .without_max_times()
}

#[cfg(test)]
mod tests {
    use backon::BackoffBuilder;

    use super::*;

    #[test]
    fn pauses_double_to_the_cap_within_the_total() {
        let pauses: Vec<Duration> = policy().build().collect();
        // backon doubles in f32: compare to the nearest millisecond.
        let ms: Vec<u128> = pauses.iter().map(|p| (p.as_micros() + 500) / 1000).collect();
        assert_eq!(&ms[..6], &[20, 40, 80, 160, 320, 500]);
        assert!(pauses[6..].iter().all(|p| *p == PAUSE_MAX), "{pauses:?}");
        let total: Duration = pauses.iter().sum();
        assert!(total <= RETRY_FOR && total + PAUSE_MAX > RETRY_FOR, "{total:?}");
    }
}
