//! Latency summaries: nearest-rank percentiles over every sample (no
//! sampling, no histogram buckets), in milliseconds.

use serde::Serialize;

/// p50/p95/p99/max/mean of a set of latencies, in ms.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct Summary {
    pub n: usize,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Summary {
    /// Summarises `samples` (ms); all zero when there are none.
    pub fn of(mut samples: Vec<f64>) -> Summary {
        if samples.is_empty() {
            return Summary::default();
        }
        samples.sort_by(f64::total_cmp);
        let rank = |q: f64| {
            let index = (q * samples.len() as f64).ceil() as usize;
            samples[index.clamp(1, samples.len()) - 1]
        };
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        Summary {
            n: samples.len(),
            p50: round(rank(0.50), 3),
            p95: round(rank(0.95), 3),
            p99: round(rank(0.99), 3),
            max: round(samples[samples.len() - 1], 3),
            mean: round(mean, 3),
        }
    }

    /// `p50 / p95 / p99 / max` for tables.
    pub fn line(&self) -> String {
        if self.n == 0 {
            return "-".into();
        }
        format!(
            "{} / {} / {} / {}",
            short(self.p50),
            short(self.p95),
            short(self.p99),
            short(self.max)
        )
    }
}

/// Rounds to `digits` decimals.
pub fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

/// A number for a table: 3 significant digits below 100, whole above.
pub fn short(value: f64) -> String {
    if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// `count / seconds`, whole.
pub fn rate(count: u64, seconds: f64) -> f64 {
    if seconds <= 0.0 {
        0.0
    } else {
        round(count as f64 / seconds, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let summary = Summary::of((1..=100).map(f64::from).collect());
        assert_eq!(summary.n, 100);
        assert_eq!(summary.p50, 50.0);
        assert_eq!(summary.p95, 95.0);
        assert_eq!(summary.p99, 99.0);
        assert_eq!(summary.max, 100.0);
        assert_eq!(summary.mean, 50.5);
    }

    #[test]
    fn one_sample_is_every_percentile() {
        let summary = Summary::of(vec![2.5]);
        assert_eq!((summary.p50, summary.p99, summary.max), (2.5, 2.5, 2.5));
    }

    #[test]
    fn no_samples_print_a_dash() {
        assert_eq!(Summary::of(Vec::new()).line(), "-");
    }
}
