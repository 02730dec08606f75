//! Budget mode: does each phase fit a latency budget (a 40 ms control
//! loop, a 200 ms chat turn), and what would make it fit?
//!
//! Each remedy is re-planned with the same cost model, so every suggestion
//! comes with its predicted TTFT and TPOT: a smaller weight type, a smaller
//! named model, fewer prompt tokens (larger image patches), and the chips of
//! the hardware table that would meet the budget. Budgets are checked at the
//! smallest requested batch size (the latency one request sees).

use super::{image_tokens, plan, shapes, PlanRequest};
use crate::hardware::{Hardware, HardwareTable};
use crate::synthetic::Shape;
use serde::Serialize;

/// The image part of a prompt.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Image {
    pub width: usize,
    pub height: usize,
    pub patch: usize,
    /// Text tokens beside the image tokens.
    pub text_tokens: usize,
}

impl Image {
    pub fn tokens(&self) -> usize {
        image_tokens(self.width, self.height, self.patch)
    }
}

/// One remedy and its predicted numbers.
#[derive(Clone, Debug, Serialize)]
pub struct Suggestion {
    /// `weights`, `model`, `params`, `image`, `prompt`, `hardware`.
    pub kind: &'static str,
    pub change: String,
    pub ttft_ms: f64,
    pub tpot_ms: f64,
    pub ttft_fits: bool,
    pub tpot_fits: bool,
}

impl Suggestion {
    fn new(kind: &'static str, change: String, (ttft, tpot): (f64, f64), budget_ms: f64) -> Suggestion {
        Suggestion {
            kind,
            change,
            ttft_ms: ttft,
            tpot_ms: tpot,
            ttft_fits: ttft <= budget_ms,
            tpot_fits: tpot <= budget_ms,
        }
    }
}

/// The verdict for a budget.
#[derive(Clone, Debug, Serialize)]
pub struct BudgetCheck {
    pub budget_ms: f64,
    pub batch: usize,
    pub ttft_ms: f64,
    pub tpot_ms: f64,
    pub ttft_fits: bool,
    pub tpot_fits: bool,
    /// Remedies, empty when both phases fit.
    pub suggestions: Vec<Suggestion>,
}

/// TTFT and TPOT (ms) of `req` at its smallest batch on `hw`.
fn latency(req: &PlanRequest, hw: &Hardware) -> (f64, f64) {
    let p = plan(req, hw);
    let b = &p.batches[0];
    (b.ttft_ms, b.tpot_ms)
}

/// Checks `req` (at its smallest batch) against `budget_ms` on `hw`.
pub fn check(
    req: &PlanRequest,
    hw: &Hardware,
    table: &HardwareTable,
    budget_ms: f64,
    image: Option<Image>,
) -> BudgetCheck {
    let batch = req.batches.iter().copied().min().unwrap_or(1).max(1);
    let req = PlanRequest { batches: vec![batch], ..req.clone() };
    let (ttft, tpot) = latency(&req, hw);
    let suggestion = |kind, change, l| Suggestion::new(kind, change, l, budget_ms);
    let mut out = Vec::new();
    if ttft > budget_ms || tpot > budget_ms {
        // Smaller weight types (only for named shapes: a file has its own bytes).
        if req.subject.file_weights.is_none() {
            for w in req.weights.smaller() {
                let r = PlanRequest { weights: w.clone(), ..req.clone() };
                out.push(suggestion("weights", w.name.clone(), latency(&r, hw)));
            }
        }
        // The largest smaller named model that fits both phases, else TPOT.
        let smaller: Vec<_> = shapes::all()
            .filter(|s| s.parameter_count() < req.subject.params)
            .map(|s| (s, latency(&PlanRequest { subject: shapes::subject(s), ..req.clone() }, hw)))
            .collect();
        let size = |x: &&(&Shape, (f64, f64))| x.0.parameter_count();
        let pick = smaller
            .iter()
            .filter(|(_, (t, p))| *t <= budget_ms && *p <= budget_ms)
            .max_by_key(size)
            .or_else(|| smaller.iter().filter(|(_, (_, p))| *p <= budget_ms).max_by_key(size));
        if let Some(&(s, l)) = pick {
            let params = s.parameter_count() as f64 / 1e9;
            out.push(suggestion("model", format!("{} ({params:.2} B params) in {}", s.name, req.weights.name), l));
        }
        // Parameters scale both walls about linearly.
        let params = req.subject.params as f64 / 1e9;
        let mut scales = vec![(budget_ms / ttft).min(budget_ms / tpot)];
        if ttft > budget_ms && tpot > budget_ms && tpot < ttft {
            scales.insert(0, budget_ms / tpot);
        }
        for scale in scales.into_iter().filter(|s| *s < 1.0) {
            let change = format!("at most ~{:.2} B parameters (× {scale:.3})", params * scale);
            out.push(suggestion("params", change, (ttft * scale, tpot * scale)));
        }
        if ttft > budget_ms {
            out.extend(fewer_tokens(&req, hw, budget_ms, image));
        }
        // Other chips of the table: those that fit both phases, else TPOT.
        let chips: Vec<(&Hardware, (f64, f64))> =
            table.entries.iter().filter(|h| !h.probe && h.name != hw.name).map(|h| (h, latency(&req, h))).collect();
        let any_both = chips.iter().any(|(_, (t, p))| *t <= budget_ms && *p <= budget_ms);
        for (h, l) in chips.into_iter().filter(|(_, (t, p))| *p <= budget_ms && (*t <= budget_ms || !any_both)) {
            let peak = h.peak_flops(req.weights.class) / 1e12;
            let class = req.weights.class.name();
            let change = format!("{} ({:.0} GB/s, {peak:.0} T ops/s {class})", h.name, h.bandwidth_gbs);
            out.push(suggestion("hardware", change, l));
        }
        if tpot > budget_ms {
            let p = plan(&req, hw);
            let bw = p.batches[0].decode.bytes / (budget_ms * 1e-3) / 1e9;
            let mut faster = hw.clone();
            faster.bandwidth_gbs = bw;
            out.push(suggestion(
                "hardware",
                format!("memory of at least {bw:.0} GB/s on {}", hw.name),
                latency(&req, &faster),
            ));
        }
    }
    BudgetCheck {
        budget_ms,
        batch,
        ttft_ms: ttft,
        tpot_ms: tpot,
        ttft_fits: ttft <= budget_ms,
        tpot_fits: tpot <= budget_ms,
        suggestions: out,
    }
}

/// Fewer prompt tokens: larger image patches, or the longest prompt whose
/// prefill fits.
fn fewer_tokens(req: &PlanRequest, hw: &Hardware, budget_ms: f64, image: Option<Image>) -> Vec<Suggestion> {
    let mut out = Vec::new();
    if let Some(img) = image {
        for k in [2, 3, 4] {
            let bigger = Image { patch: img.patch * k, ..img };
            let r = PlanRequest { prompt: bigger.tokens() + img.text_tokens, ..req.clone() };
            let change = format!(
                "{0}×{0} patches: {1} image tokens instead of {2}",
                bigger.patch,
                bigger.tokens(),
                img.tokens()
            );
            out.push(Suggestion::new("image", change, latency(&r, hw), budget_ms));
        }
    }
    // Binary search on the prompt length.
    let fits = |n: usize| latency(&PlanRequest { prompt: n, ..req.clone() }, hw).0 <= budget_ms;
    if fits(1) {
        let (mut lo, mut hi) = (1usize, req.prompt);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if fits(mid) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let r = PlanRequest { prompt: lo, ..req.clone() };
        let change = format!("a prompt of at most {lo} tokens (from {})", req.prompt);
        out.push(Suggestion::new("prompt", change, latency(&r, hw), budget_ms));
    }
    out
}
