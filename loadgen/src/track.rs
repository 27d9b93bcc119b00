//! Delivery accounting: per receiver and sender, which sequence numbers
//! arrived (so loss and duplicates are exact), and latency histograms.

use hdrhistogram::Histogram;
use std::collections::BTreeSet;

/// What one arrival was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// First time this receiver sees this message.
    New,
    /// Seen before.
    Duplicate,
}

/// The sequence numbers one receiver got from one sender. Messages of one
/// sender normally arrive in order, so this is a counter; only arrivals
/// past a gap are kept in a set until the gap fills.
#[derive(Debug, Default, Clone)]
pub struct SeqTracker {
    /// Every seq below this has arrived.
    next: u32,
    /// Arrived seqs above `next` (only when something before them is
    /// missing; an empty set does not allocate).
    ahead: BTreeSet<u32>,
}

impl SeqTracker {
    /// Records `seq`.
    pub fn record(&mut self, seq: u32) -> Arrival {
        if seq < self.next {
            return Arrival::Duplicate;
        }
        if seq == self.next {
            self.next += 1;
            while self.ahead.remove(&self.next) {
                self.next += 1;
            }
            return Arrival::New;
        }
        if self.ahead.insert(seq) {
            Arrival::New
        } else {
            Arrival::Duplicate
        }
    }

    /// How many distinct seqs arrived.
    pub fn unique(&self) -> u64 {
        u64::from(self.next) + self.ahead.len() as u64
    }

    /// How many of the seqs `0..sent` never arrived.
    pub fn missing(&self, sent: u32) -> u64 {
        let below = self.next.min(sent);
        let ahead = self.ahead.range(..sent).count() as u32;
        u64::from(sent - below - ahead)
    }
}

/// Latency histogram in microseconds, 1 µs to 10 min, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("static histogram bounds")
}

/// Percentiles of a latency histogram, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Latency {
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub count: u64,
}

impl Latency {
    /// Summarises `h`.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            p50_us: h.value_at_quantile(0.5),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            count: h.len(),
        }
    }
}

/// Records a latency, clamping values outside the histogram's range (a
/// negative latency cannot happen with one monotonic clock; 0 becomes 1 µs).
pub fn record(h: &mut Histogram<u64>, micros: u64) {
    h.saturating_record(micros.max(1));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_arrivals_are_counted_without_a_set() {
        let mut t = SeqTracker::default();
        for seq in 0..1000 {
            assert_eq!(t.record(seq), Arrival::New);
        }
        assert!(t.ahead.is_empty());
        assert_eq!(t.unique(), 1000);
        assert_eq!(t.missing(1000), 0);
        assert_eq!(t.missing(1005), 5, "sent but not (yet) arrived");
    }

    #[test]
    fn duplicates_are_detected_before_and_after_a_gap() {
        let mut t = SeqTracker::default();
        assert_eq!(t.record(0), Arrival::New);
        assert_eq!(t.record(0), Arrival::Duplicate);
        assert_eq!(t.record(3), Arrival::New);
        assert_eq!(t.record(3), Arrival::Duplicate);
        assert_eq!(t.unique(), 2);
        assert_eq!(t.missing(4), 2, "1 and 2 lost");
        // The gap fills late: the set drains.
        assert_eq!(t.record(2), Arrival::New);
        assert_eq!(t.record(1), Arrival::New);
        assert!(t.ahead.is_empty());
        assert_eq!(t.unique(), 4);
        assert_eq!(t.missing(4), 0);
        assert_eq!(t.record(2), Arrival::Duplicate);
    }

    #[test]
    fn loss_counts_only_what_was_sent() {
        let mut t = SeqTracker::default();
        for seq in [0, 1, 5, 9] {
            t.record(seq);
        }
        // Sent 0..8: 2, 3, 4, 6, 7 missing; 9 was not counted as sent.
        assert_eq!(t.missing(8), 5);
        assert_eq!(t.missing(10), 6);
    }

    #[test]
    fn latency_percentiles() {
        let mut h = histogram();
        for us in 1..=1000 {
            record(&mut h, us);
        }
        record(&mut h, 0); // clamped to 1 µs
        record(&mut h, u64::MAX); // clamped to the top
        let l = Latency::of(&h);
        assert_eq!(l.count, 1002);
        assert!((495..=505).contains(&l.p50_us), "{l:?}");
        assert!((985..=995).contains(&l.p99_us), "{l:?}");
        assert!(l.max_us >= 599_000_000, "{l:?}");
        assert_eq!(Latency::of(&histogram()), Latency::default());
    }
}
