//! Response rate limiting over UDP, as Knot DNS and NSD do it: responses
//! are counted per client prefix (IPv4 /24, IPv6 /56 by default) and answer
//! class in a table of token buckets. Each bucket earns
//! `responses_per_second` credits a second and spends one per full
//! response; it banks at most `window_secs` seconds' worth, so over any
//! window a prefix gets at most the rate on average (BIND's `window`), and
//! a flooding prefix gets the rate, no more: limited responses cost
//! nothing. A limited response is dropped, except every `slip`-th, which
//! goes out truncated (TC=1) so a real client behind a forged flood retries
//! over TCP and is answered (0: drop all; 1: slip all). A new bucket holds
//! one second's worth.
//!
//! Lock-free: each bucket is one atomic word (second and balance) updated
//! by compare-and-swap. Prefixes that hash to one bucket share it; the hash
//! is keyed per process, so a flooder cannot choose whom it collides with.

use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

/// The `[dns.rrl]` settings of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RrlSettings {
    pub responses_per_second: u32,
    pub slip: u32,
    pub window_secs: u32,
    pub ipv4_prefix_len: u8,
    pub ipv6_prefix_len: u8,
}

impl RrlSettings {
    /// The largest rate and window honoured (the config refuses more):
    /// a window's worth of the rate fits the bucket's 32-bit balance.
    pub const RATE_MAX: u32 = 1_000_000;
    pub const WINDOW_MAX: u32 = 600;
}

impl Default for RrlSettings {
    fn default() -> Self {
        RrlSettings { responses_per_second: 0, slip: 2, window_secs: 15, ipv4_prefix_len: 24, ipv6_prefix_len: 56 }
    }
}

/// What the answer was, for the bucket it is counted in: a flood of
/// NXDOMAINs is limited apart from the same client's positive answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum AnswerClass {
    Positive,
    NoData,
    NxDomain,
    Referral,
    Error,
}

/// What to do with one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Send,
    Slip,
    Drop,
}

/// Buckets in the table (a power of two): 3 MiB with the slip counters,
/// allocated only when rate limiting is on.
const BUCKETS: usize = 1 << 18;

pub(crate) struct Rrl {
    settings: RrlSettings,
    /// Per bucket: the second it was last charged (high 32 bits) and its
    /// balance (low 32 bits, an `i32`).
    buckets: Box<[AtomicU64]>,
    /// Per bucket: limited responses, for choosing which ones slip.
    limited: Box<[AtomicU32]>,
    keys: std::collections::hash_map::RandomState,
    epoch: Instant,
}

impl std::fmt::Debug for Rrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rrl").field("settings", &self.settings).finish_non_exhaustive()
    }
}

fn pack(second: u32, balance: i32) -> u64 {
    (u64::from(second) << 32) | u64::from(balance as u32)
}

fn unpack(word: u64) -> (u32, i32) {
    ((word >> 32) as u32, word as u32 as i32)
}

impl Rrl {
    /// A limiter, or `None` when `responses_per_second` is 0 (off).
    pub(crate) fn new(mut settings: RrlSettings) -> Option<Rrl> {
        if settings.responses_per_second == 0 {
            return None;
        }
        // Bounded so that a window's worth fits the balance's 32 bits.
        settings.responses_per_second = settings.responses_per_second.min(RrlSettings::RATE_MAX);
        settings.window_secs = settings.window_secs.clamp(1, RrlSettings::WINDOW_MAX);
        // A new bucket starts with one second's credit.
        let full = pack(0, settings.responses_per_second as i32);
        Some(Rrl {
            settings,
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(full)).collect(),
            limited: (0..BUCKETS).map(|_| AtomicU32::new(0)).collect(),
            keys: std::collections::hash_map::RandomState::new(),
            epoch: Instant::now(),
        })
    }

    fn bucket(&self, ip: IpAddr, class: AnswerClass) -> usize {
        let mut h = self.keys.build_hasher();
        // An IPv4 client on a dual-stack socket is its IPv4 address.
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                let len = u32::from(self.settings.ipv4_prefix_len.min(32));
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                (4u8, u32::from(v4) & mask).hash(&mut h);
            }
            IpAddr::V6(v6) => {
                let len = u32::from(self.settings.ipv6_prefix_len.min(128));
                let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
                (6u8, u128::from(v6) & mask).hash(&mut h);
            }
        }
        class.hash(&mut h);
        (h.finish() as usize) & (BUCKETS - 1)
    }

    /// Charge one response to `ip`'s bucket for `class`.
    pub(crate) fn check(&self, ip: IpAddr, class: AnswerClass) -> Verdict {
        let now = u32::try_from(self.epoch.elapsed().as_secs()).unwrap_or(u32::MAX);
        self.check_at(ip, class, now)
    }

    fn check_at(&self, ip: IpAddr, class: AnswerClass, now: u32) -> Verdict {
        let i = self.bucket(ip, class);
        let rate = i64::from(self.settings.responses_per_second);
        let banked_max = rate * i64::from(self.settings.window_secs);
        let bucket = &self.buckets[i];
        let mut word = bucket.load(Ordering::Relaxed);
        let sent = loop {
            let (second, balance) = unpack(word);
            let elapsed = i64::from(now.saturating_sub(second));
            let earned = (i64::from(balance) + rate.saturating_mul(elapsed)).min(banked_max);
            let (sent, left) = if earned >= 1 { (true, earned - 1) } else { (false, earned) };
            let next = pack(now.max(second), i32::try_from(left).unwrap_or(0));
            match bucket.compare_exchange_weak(word, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break sent,
                Err(seen) => word = seen,
            }
        };
        if sent {
            return Verdict::Send;
        }
        let n = self.limited[i].fetch_add(1, Ordering::Relaxed);
        match self.settings.slip {
            0 => Verdict::Drop,
            slip if n % slip == 0 => Verdict::Slip,
            _ => Verdict::Drop,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rrl(rate: u32, slip: u32, window: u32) -> Rrl {
        Rrl::new(RrlSettings { responses_per_second: rate, slip, window_secs: window, ..RrlSettings::default() }).unwrap()
    }

    fn count(r: &Rrl, ip: &str, class: AnswerClass, n: usize, at: u32) -> [usize; 3] {
        let mut seen = [0; 3];
        for _ in 0..n {
            seen[r.check_at(ip.parse().unwrap(), class, at) as usize] += 1;
        }
        seen
    }

    #[test]
    fn a_prefix_gets_its_rate_then_slips_every_slipth() {
        let r = rrl(10, 2, 5);
        assert_eq!(count(&r, "192.0.2.1", AnswerClass::Positive, 30, 0), [10, 10, 10], "10 sent, then half of the rest slip");
        // The same /24 (also as a v4-mapped address), another class, and another /24.
        assert_eq!(count(&r, "192.0.2.200", AnswerClass::Positive, 1, 0)[0], 0, "same /24: same bucket");
        assert_eq!(count(&r, "::ffff:192.0.2.9", AnswerClass::Positive, 1, 0)[0], 0, "v4-mapped: the same /24");
        assert_eq!(count(&r, "192.0.2.1", AnswerClass::NxDomain, 10, 0), [10, 0, 0], "another class: its own budget");
        assert_eq!(count(&r, "192.0.3.1", AnswerClass::Positive, 10, 0), [10, 0, 0], "another /24: its own budget");
    }

    #[test]
    fn a_flood_gets_the_rate_every_second_and_a_quiet_prefix_banks_a_window() {
        let r = rrl(10, 0, 3);
        for second in 0..5 {
            assert_eq!(count(&r, "2001:db8::1", AnswerClass::Positive, 1000, second)[0], 10, "second {second}: the rate, no more");
        }
        // Quiet for 10 s: three seconds' worth banked (the window), not ten.
        assert_eq!(count(&r, "2001:db8:0:ff::1", AnswerClass::Positive, 1000, 15)[0], 30, "same /56, a window's worth");
        assert_eq!(count(&r, "2001:db8:0:ff::1", AnswerClass::Positive, 1000, 16)[0], 10);
    }

    #[test]
    fn absurd_rates_are_bounded_not_wrapped() {
        let r = rrl(u32::MAX, 0, u32::MAX);
        assert_eq!(count(&r, "192.0.2.1", AnswerClass::Positive, 1000, 100), [1000, 0, 0]);
    }

    #[test]
    fn off_at_zero() {
        assert!(Rrl::new(RrlSettings::default()).is_none());
    }
}
