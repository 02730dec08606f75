//! Statistics of one load level, from the records of its requests.
//!
//! Percentiles interpolate linearly between the two nearest ranks (NumPy's
//! default, which vLLM's and SGLang's benchmarks use, so numbers compare):
//! for sorted `x[0..n]`, `p` lands at rank `p/100 × (n − 1)`.
//!
//! Definitions (DESIGN.md's names): TTFT is the first text-bearing chunk;
//! TPOT is per request, `(e2e − TTFT) / (output tokens − 1)`, over requests
//! with at least two tokens; ITL pools every gap between consecutive chunks
//! of every request; throughput divides by the level's wall time, from its
//! first send to its last completion. Goodput (DistServe's term) counts the
//! completed requests whose TTFT and TPOT both met their SLOs — an SLO not
//! given is met by every request — per second of wall time.

use crate::client::{Failure, RequestRecord};
use std::collections::BTreeMap;
use std::time::Duration;

/// Mean and percentiles of one latency, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Summary {
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

impl Summary {
    /// Of `values` (any order); all zero when empty.
    pub fn of(values: &[f64]) -> Summary {
        if values.is_empty() {
            return Summary::default();
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        Summary {
            mean: v.iter().sum::<f64>() / v.len() as f64,
            p50: percentile(&v, 50.0),
            p90: percentile(&v, 90.0),
            p99: percentile(&v, 99.0),
        }
    }
}

/// The `p`-th percentile (0..=100) of ascending `sorted`, interpolated
/// linearly between ranks; `NaN` when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let rank = p.clamp(0.0, 100.0) / 100.0 * (n - 1) as f64;
            let (lo, frac) = (rank.floor() as usize, rank.fract());
            let hi = (lo + 1).min(n - 1);
            sorted[lo] + (sorted[hi] - sorted[lo]) * frac
        }
    }
}

/// Latency targets a request must meet to count towards goodput.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Slo {
    pub ttft: Option<Duration>,
    pub tpot: Option<Duration>,
}

/// Everything measured at one level.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LevelStats {
    pub requests: usize,
    pub completed: usize,
    pub failed: usize,
    /// Failed requests by status code or kind (`"429"`, `"transport"`, ...).
    pub failures: BTreeMap<String, usize>,
    /// Wall time from the first send to the last completion, seconds.
    pub duration_s: f64,
    pub prompt_tokens_mean: f64,
    pub output_tokens: usize,
    pub output_tokens_min: usize,
    pub output_tokens_max: usize,
    pub output_tokens_per_s: f64,
    pub requests_per_s: f64,
    /// Completed requests that met every SLO.
    pub slo_met: usize,
    /// `slo_met` per second.
    pub goodput: f64,
    pub ttft_ms: Summary,
    pub tpot_ms: Summary,
    pub itl_ms: Summary,
    pub e2e_ms: Summary,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl LevelStats {
    /// The statistics of `records`, a level that took `wall` from its first send.
    pub fn of(records: &[RequestRecord], wall: Duration, slo: Slo) -> LevelStats {
        let mut s = LevelStats { requests: records.len(), duration_s: wall.as_secs_f64(), ..LevelStats::default() };
        let (mut ttft, mut tpot, mut itl, mut e2e, mut prompt) = (vec![], vec![], vec![], vec![], vec![]);
        for r in records {
            let t = match &r.outcome {
                Ok(t) => t,
                Err(f) => {
                    s.failed += 1;
                    *s.failures.entry(Failure::key(f)).or_default() += 1;
                    continue;
                }
            };
            s.completed += 1;
            s.output_tokens += t.output_tokens;
            ttft.push(ms(t.ttft()));
            e2e.push(ms(t.e2e));
            itl.extend(t.itls().map(ms));
            if let Some(p) = t.prompt_tokens {
                prompt.push(p as f64);
            }
            if let Some(d) = t.tpot() {
                tpot.push(ms(d));
            }
            let ttft_ok = slo.ttft.is_none_or(|max| t.ttft() <= max);
            let tpot_ok = slo.tpot.is_none_or(|max| t.tpot().is_none_or(|d| d <= max));
            s.slo_met += usize::from(ttft_ok && tpot_ok);
        }
        let outs = records.iter().filter_map(|r| r.outcome.as_ref().ok()).map(|t| t.output_tokens);
        s.output_tokens_min = outs.clone().min().unwrap_or(0);
        s.output_tokens_max = outs.max().unwrap_or(0);
        s.prompt_tokens_mean = if prompt.is_empty() { 0.0 } else { prompt.iter().sum::<f64>() / prompt.len() as f64 };
        let per_s = |x: f64| if s.duration_s > 0.0 { x / s.duration_s } else { 0.0 };
        s.output_tokens_per_s = per_s(s.output_tokens as f64);
        s.requests_per_s = per_s(s.completed as f64);
        s.goodput = per_s(s.slo_met as f64);
        (s.ttft_ms, s.tpot_ms, s.itl_ms, s.e2e_ms) =
            (Summary::of(&ttft), Summary::of(&tpot), Summary::of(&itl), Summary::of(&e2e));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Timing;

    #[test]
    fn percentiles_interpolate_like_numpy() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        // numpy.percentile(range(1, 101), [50, 90, 99]) = [50.5, 90.1, 99.01]
        let s = Summary::of(&v);
        assert_eq!(s.mean, 50.5);
        assert!((s.p50 - 50.5).abs() < 1e-9);
        assert!((s.p90 - 90.1).abs() < 1e-9);
        assert!((s.p99 - 99.01).abs() < 1e-9);
        assert_eq!(percentile(&[3.0], 99.0), 3.0);
        assert_eq!(percentile(&[0.0, 10.0], 25.0), 2.5);
        assert!(percentile(&[], 50.0).is_nan());
        assert_eq!(Summary::of(&[]), Summary::default());
        // Order of the input does not matter.
        assert_eq!(Summary::of(&[4.0, 1.0, 3.0, 2.0]), Summary::of(&[1.0, 2.0, 3.0, 4.0]));
    }

    fn ok(ttft_ms: u64, gap_ms: u64, tokens: usize) -> RequestRecord {
        let chunk_times: Vec<Duration> =
            (0..tokens as u64).map(|i| Duration::from_millis(ttft_ms + i * gap_ms)).collect();
        let e2e = *chunk_times.last().unwrap();
        RequestRecord {
            sent_at: Duration::ZERO,
            outcome: Ok(Timing { chunk_times, e2e, output_tokens: tokens, prompt_tokens: Some(10) }),
        }
    }

    fn failed(f: Failure) -> RequestRecord {
        RequestRecord { sent_at: Duration::ZERO, outcome: Err(f) }
    }

    #[test]
    fn level_counts_throughput_and_goodput() {
        // TTFT 100 / 300 / 600 ms; TPOT 10 / 50 / 20 ms; two failures.
        let records = [
            ok(100, 10, 5),
            ok(300, 50, 3),
            ok(600, 20, 2),
            failed(Failure::Status(429)),
            failed(Failure::Status(429)),
            failed(Failure::Transport),
        ];
        let slo = Slo { ttft: Some(Duration::from_millis(500)), tpot: Some(Duration::from_millis(30)) };
        let s = LevelStats::of(&records, Duration::from_secs(2), slo);
        assert_eq!((s.requests, s.completed, s.failed), (6, 3, 3));
        assert_eq!(s.failures, BTreeMap::from([("429".to_string(), 2), ("transport".to_string(), 1)]));
        assert_eq!((s.output_tokens, s.output_tokens_min, s.output_tokens_max), (10, 2, 5));
        assert_eq!(s.output_tokens_per_s, 5.0);
        assert_eq!(s.requests_per_s, 1.5);
        // Only the first meets both: the second misses TPOT, the third TTFT.
        assert_eq!(s.slo_met, 1);
        assert_eq!(s.goodput, 0.5);
        assert_eq!(s.ttft_ms.p50, 300.0);
        assert_eq!(s.tpot_ms.mean, (10.0 + 50.0 + 20.0) / 3.0);
        // ITL pools every gap: 4 of 10 ms, 2 of 50 ms, 1 of 20 ms.
        assert_eq!(s.itl_ms.p50, 10.0);
        assert_eq!(s.e2e_ms.p99, percentile(&[140.0, 400.0, 620.0], 99.0));
        assert_eq!(s.prompt_tokens_mean, 10.0);
        // Without SLOs every completed request counts.
        assert_eq!(LevelStats::of(&records, Duration::from_secs(2), Slo::default()).goodput, 1.5);
        // Only a TTFT target: the second request now counts.
        let ttft_only = Slo { ttft: Some(Duration::from_millis(500)), tpot: None };
        assert_eq!(LevelStats::of(&records, Duration::from_secs(2), ttft_only).slo_met, 2);
    }

    #[test]
    fn an_all_failed_level_has_zero_rates() {
        let s = LevelStats::of(&[failed(Failure::Timeout)], Duration::from_secs(1), Slo::default());
        assert_eq!((s.completed, s.failed, s.output_tokens_per_s, s.goodput), (0, 1, 0.0, 0.0));
        assert_eq!(s.ttft_ms, Summary::default());
    }
}
