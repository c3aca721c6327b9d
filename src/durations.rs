//! Durations bucketed as they are measured: two atomic adds each, nothing
//! allocated. What the metrics render as Prometheus histograms (handler
//! runs, RPC calls); kept where the measuring happens (an agent's cell,
//! the bus), which may not depend on the metrics module above them.

use std::sync::atomic::{AtomicU64, Ordering};

/// The buckets of the duration histograms, in seconds: from half a
/// millisecond (an in-process receiver) to a minute (a long job).
pub(crate) const BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// [`BUCKETS`] in nanoseconds, for the run's hot path.
const BOUNDS_NANOS: [u64; 16] = [
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
    60_000_000_000,
];

/// The durations of one handler's runs, bucketed as they end (two atomic
/// adds per run): what the built-in Prometheus recorder renders as the
/// handler's `microagent_handler_duration_seconds` histogram. A recorder
/// keeping each value costs several times more per run, see
/// docs/observability.md.
#[derive(Debug, Default)]
pub(crate) struct RunHistogram {
    /// Runs by bucket: `le` each bound of [`BUCKETS`], then `+Inf`.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl RunHistogram {
    /// Counts a run that took `took`.
    pub(crate) fn record(&self, took: std::time::Duration) {
        let (bucket, nanos) = bucket_of(took);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Its counts now.
    pub(crate) fn durations(&self) -> Durations {
        Durations {
            buckets: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            sum_nanos: self.sum_nanos.load(Ordering::Relaxed),
        }
    }
}

/// An agent's handlers' run durations, by `(kind, handler)`.
pub(crate) type HandlerDurations = Vec<((&'static str, &'static str), Durations)>;

/// A handler's run durations at one moment: runs per bucket (not
/// cumulative) and their sum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Durations {
    pub(crate) buckets: [u64; BUCKETS.len() + 1],
    pub(crate) sum_nanos: u64,
}

/// The bucket `took` falls in (`le`: at or under its bound), and `took`
/// in nanoseconds.
fn bucket_of(took: std::time::Duration) -> (usize, u64) {
    let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
    (BOUNDS_NANOS.partition_point(|bound| *bound < nanos), nanos)
}

impl Durations {
    /// Counts one more that took `took` (where a lock guards them).
    pub(crate) fn record(&mut self, took: std::time::Duration) {
        let (bucket, nanos) = bucket_of(took);
        self.buckets[bucket] += 1;
        self.sum_nanos = self.sum_nanos.saturating_add(nanos);
    }

    /// Adds `other`'s runs to these.
    pub(crate) fn add(&mut self, other: &Durations) {
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            *mine += theirs;
        }
        self.sum_nanos = self.sum_nanos.saturating_add(other.sum_nanos);
    }
}
