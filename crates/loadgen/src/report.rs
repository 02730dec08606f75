//! The report of a run: one flat JSON object per level (the field names
//! the issue and the side-by-side script rely on: `concurrency` or
//! `request_rate`, `completed`, `failed`, `output_tokens_per_s`,
//! `ttft_ms_p50`, `ttft_ms_p99`, `tpot_ms_p50`, `tpot_ms_p99`, `goodput`,
//! and the rest), and a markdown table for the terminal.

use crate::load::Level;
use crate::stats::{LevelStats, Summary};
use crate::workload::PromptLength;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// One level's results, as written to `--json`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LevelReport {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_rate: Option<f64>,
    pub requests: usize,
    pub completed: usize,
    pub failed: usize,
    /// Failed requests by HTTP status or kind.
    pub failures: BTreeMap<String, usize>,
    pub duration_s: f64,
    /// Mean prompt tokens per completed request (server's count when it sent one).
    pub prompt_tokens_mean: f64,
    pub prompt_length: PromptLength,
    /// Output tokens requested per request (`max_tokens`), when fixed.
    pub output_tokens_requested: Option<usize>,
    pub output_tokens: usize,
    pub output_tokens_min: usize,
    pub output_tokens_max: usize,
    pub output_tokens_per_s: f64,
    pub requests_per_s: f64,
    /// Completed requests per second that met the SLOs.
    pub goodput: f64,
    pub slo_met: usize,
    pub slo_ttft_ms: Option<f64>,
    pub slo_tpot_ms: Option<f64>,
    #[serde(flatten)]
    pub latencies: Latencies,
}

/// The four latency summaries, flattened into `ttft_ms_mean` … `e2e_ms_p99`.
#[derive(Clone, Debug, PartialEq)]
pub struct Latencies {
    pub ttft_ms: Summary,
    pub tpot_ms: Summary,
    pub itl_ms: Summary,
    pub e2e_ms: Summary,
}

impl Serialize for Latencies {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = Map::new();
        for (name, v) in
            [("ttft_ms", self.ttft_ms), ("tpot_ms", self.tpot_ms), ("itl_ms", self.itl_ms), ("e2e_ms", self.e2e_ms)]
        {
            for (stat, x) in [("mean", v.mean), ("p50", v.p50), ("p90", v.p90), ("p99", v.p99)] {
                m.insert(format!("{name}_{stat}"), Value::from(x));
            }
        }
        m.serialize(s)
    }
}

/// What a report needs besides the statistics.
#[derive(Clone, Copy, Debug)]
pub struct Context {
    pub prompt_length: PromptLength,
    pub output_tokens_requested: Option<usize>,
    pub slo: crate::stats::Slo,
}

impl LevelReport {
    pub fn new(level: Level, s: &LevelStats, cx: Context) -> LevelReport {
        let (concurrency, request_rate) = match level {
            Level::Concurrency(c) => (Some(c), None),
            Level::Rate(r) => (None, Some(r)),
        };
        LevelReport {
            concurrency,
            request_rate,
            requests: s.requests,
            completed: s.completed,
            failed: s.failed,
            failures: s.failures.clone(),
            duration_s: s.duration_s,
            prompt_tokens_mean: s.prompt_tokens_mean,
            prompt_length: cx.prompt_length,
            output_tokens_requested: cx.output_tokens_requested,
            output_tokens: s.output_tokens,
            output_tokens_min: s.output_tokens_min,
            output_tokens_max: s.output_tokens_max,
            output_tokens_per_s: s.output_tokens_per_s,
            requests_per_s: s.requests_per_s,
            goodput: s.goodput,
            slo_met: s.slo_met,
            slo_ttft_ms: cx.slo.ttft.map(|d| d.as_secs_f64() * 1e3),
            slo_tpot_ms: cx.slo.tpot.map(|d| d.as_secs_f64() * 1e3),
            latencies: Latencies { ttft_ms: s.ttft_ms, tpot_ms: s.tpot_ms, itl_ms: s.itl_ms, e2e_ms: s.e2e_ms },
        }
    }

    /// `concurrency` or `request_rate`, as a number for plots.
    pub fn x(&self) -> f64 {
        self.concurrency.map_or_else(|| self.request_rate.unwrap_or(0.0), |c| c as f64)
    }

    /// The level's label in tables: `16` or `2.5/s`.
    pub fn level_label(&self) -> String {
        match (self.concurrency, self.request_rate) {
            (Some(c), _) => c.to_string(),
            (None, Some(r)) => format!("{r}/s"),
            _ => "?".into(),
        }
    }

    fn failures_label(&self) -> String {
        if self.failed == 0 {
            return "0".into();
        }
        let by: Vec<String> = self.failures.iter().map(|(k, n)| format!("{n}×{k}")).collect();
        format!("{} ({})", self.failed, by.join(", "))
    }
}

/// The markdown table header for `rate` (open loop) or concurrency levels.
pub fn table_header(rate: bool) -> String {
    let first = if rate { "rate" } else { "concurrency" };
    format!(
        "| {first} | done | failed | out tok/s | req/s | goodput | TTFT p50 / p90 / p99 ms | TPOT p50 / p99 ms | ITL p50 / p99 ms | e2e p50 / p99 ms |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )
}

/// One markdown table row.
pub fn table_row(r: &LevelReport) -> String {
    let l = &r.latencies;
    format!(
        "| {} | {} | {} | {:.1} | {:.2} | {:.2} | {:.0} / {:.0} / {:.0} | {:.1} / {:.1} | {:.1} / {:.1} | {:.0} / {:.0} |",
        r.level_label(),
        r.completed,
        r.failures_label(),
        r.output_tokens_per_s,
        r.requests_per_s,
        r.goodput,
        l.ttft_ms.p50,
        l.ttft_ms.p90,
        l.ttft_ms.p99,
        l.tpot_ms.p50,
        l.tpot_ms.p99,
        l.itl_ms.p50,
        l.itl_ms.p99,
        l.e2e_ms.p50,
        l.e2e_ms.p99,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Slo;
    use std::time::Duration;

    fn report(level: Level) -> LevelReport {
        let s = LevelStats {
            requests: 4,
            completed: 3,
            failed: 1,
            failures: BTreeMap::from([("503".to_string(), 1)]),
            ttft_ms: Summary { mean: 1.0, p50: 2.0, p90: 3.0, p99: 4.0 },
            ..LevelStats::default()
        };
        let slo = Slo { ttft: Some(Duration::from_millis(500)), tpot: None };
        let cx = Context { prompt_length: PromptLength::Tokenized, output_tokens_requested: Some(8), slo };
        LevelReport::new(level, &s, cx)
    }

    #[test]
    fn json_has_the_fields_the_issue_names() {
        let v = serde_json::to_value(report(Level::Concurrency(16))).unwrap();
        for key in [
            "concurrency",
            "completed",
            "failed",
            "output_tokens_per_s",
            "ttft_ms_p50",
            "ttft_ms_p99",
            "tpot_ms_p50",
            "tpot_ms_p99",
            "goodput",
            "itl_ms_p90",
            "e2e_ms_mean",
        ] {
            assert!(v.get(key).is_some(), "{key} missing from {v}");
        }
        assert_eq!(v["ttft_ms_p99"], 4.0);
        assert_eq!(v["failures"]["503"], 1);
        assert_eq!(v["slo_ttft_ms"], 500.0);
        assert_eq!(v["prompt_length"], "tokenized");
        assert!(v.get("request_rate").is_none());
        let v = serde_json::to_value(report(Level::Rate(2.5))).unwrap();
        assert_eq!((v["request_rate"].as_f64(), v.get("concurrency")), (Some(2.5), None));
    }

    #[test]
    fn table_rows_match_the_header() {
        let r = report(Level::Rate(2.5));
        let cols = |s: &str| s.matches('|').count();
        assert_eq!(cols(&table_row(&r)), cols(table_header(true).lines().next().unwrap()));
        assert!(table_row(&r).starts_with("| 2.5/s | 3 | 1 (1×503) |"));
    }
}
