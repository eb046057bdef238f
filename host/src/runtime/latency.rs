//! A lock-free latency histogram with fixed buckets, in the Prometheus shape.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds (the last, `+Inf`, is implicit).
pub const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 1.0, 5.0,
];

/// Counts of observations per bucket (not cumulative), their sum and count.
#[derive(Default)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; BUCKETS.len()],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

/// A consistent-enough reading for rendering.
pub struct HistogramReading {
    /// Cumulative counts, one per bound in [`BUCKETS`].
    pub cumulative: [u64; BUCKETS.len()],
    pub sum_seconds: f64,
    pub count: u64,
}

impl LatencyHistogram {
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if let Some(index) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.buckets[index].fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn read(&self) -> HistogramReading {
        let mut cumulative = [0u64; BUCKETS.len()];
        let mut running = 0;
        for (slot, bucket) in cumulative.iter_mut().zip(&self.buckets) {
            running += bucket.load(Ordering::Relaxed);
            *slot = running;
        }
        HistogramReading {
            cumulative,
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            count: self.count.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_the_slowest_only_count() {
        let histogram = LatencyHistogram::default();
        histogram.observe(Duration::from_micros(50));
        histogram.observe(Duration::from_millis(3));
        histogram.observe(Duration::from_secs(9));
        let reading = histogram.read();
        assert_eq!(reading.cumulative[0], 1);
        assert_eq!(
            reading.cumulative[5], 2,
            "5 ms bucket holds both fast calls"
        );
        assert_eq!(
            reading.cumulative[BUCKETS.len() - 1],
            2,
            "9 s is only in +Inf"
        );
        assert_eq!(reading.count, 3);
        assert!((reading.sum_seconds - 9.00305).abs() < 1e-6);
    }
}
