//! A plan as a human reads it (markdown tables) and as a script reads it
//! (JSON: one object per batch size with the fields `batch`, `ttft_ms`,
//! `tpot_ms`, `prefill_bound`, `decode_bound`, `weight_bytes`,
//! `kv_bytes_per_token`, `max_batch` and more).

use super::budget::BudgetCheck;
use super::energy::pj_per_op;
use super::Plan;
use crate::hardware::Hardware;
use serde_json::{json, Value};
use std::fmt::Write;

fn gb(bytes: f64) -> String {
    format!("{:.2} GB", bytes / 1e9)
}

/// A number of milliseconds with sensible precision.
pub fn ms(x: f64) -> String {
    match x {
        x if x >= 100.0 => format!("{x:.0}"),
        x if x >= 10.0 => format!("{x:.1}"),
        x => format!("{x:.2}"),
    }
}

/// The plan as text.
pub fn text(p: &Plan, hw: &Hardware, budget: Option<&BudgetCheck>, notes: &[String]) -> String {
    let mut s = String::new();
    let class = p.weights.class;
    let _ = writeln!(
        s,
        "{} ({:.2} B params) in {} on {}: {}",
        p.model,
        p.params as f64 / 1e9,
        p.weights.name,
        hw.name,
        hw.description
    );
    let _ = writeln!(
        s,
        "  ceilings: {:.1} GB/s, {:.2} T ops/s {} (ridge point {:.0} FLOP/byte); source: {}",
        p.bandwidth / 1e9,
        p.peak_flops / 1e12,
        class.name(),
        p.peak_flops / p.bandwidth,
        hw.source
    );
    if hw.bandwidth_efficiency.is_some() || hw.compute_efficiency.is_some() {
        let _ = writeln!(
            s,
            "  ceilings include calibrated efficiencies: bandwidth × {}, compute × {} (see the hardware table)",
            hw.bandwidth_efficiency.unwrap_or(1.0),
            hw.compute_efficiency.unwrap_or(1.0)
        );
    }
    let _ = writeln!(s, "  prompt {} tokens, output {} tokens, KV {} B/element", p.prompt, p.output, p.kv_elem_bytes);
    for n in notes {
        let _ = writeln!(s, "  note: {n}");
    }
    let _ = writeln!(
        s,
        "memory: weights {}, KV {:.1} KB per token, {:.0} GB on the chip",
        gb(p.weight_bytes),
        p.kv_bytes_per_token / 1e3,
        hw.memory_gb
    );
    if p.weight_bytes > hw.memory_bytes() {
        let _ = writeln!(s, "  the weights alone do not fit in memory");
    } else {
        let _ = writeln!(
            s,
            "  largest batch at {} tokens each: {}; longest context of one sequence: {} tokens (model trained for {})",
            p.prompt + p.output,
            p.max_batch,
            p.max_context,
            p.model_context
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "| batch | TTFT ms | prefill | TPOT ms | decode | e2e ms | tok/s/stream | tok/s total | fits | J/token | board J/token | $/M tokens |"
    );
    let _ = writeln!(
        s,
        "| ----: | ------: | ------- | ------: | ------ | -----: | -----------: | ----------: | ---- | ------: | ------------: | ---------: |"
    );
    for b in &p.batches {
        let opt = |x: Option<f64>, f: &dyn Fn(f64) -> String| x.map_or_else(|| "-".to_string(), f);
        let _ = writeln!(
            s,
            "| {:>5} | {:>7} | {:<7} | {:>7} | {:<6} | {:>6} | {:>12.1} | {:>11.1} | {:<4} | {:>7.3} | {:>13} | {:>10} |",
            b.batch,
            ms(b.ttft_ms),
            b.prefill_bound.name(),
            ms(b.tpot_ms),
            b.decode_bound.name(),
            ms(b.e2e_ms),
            b.tokens_per_s_per_stream,
            b.tokens_per_s_aggregate,
            if b.fits_memory { "yes" } else { "no" },
            b.energy.decode_j_per_token,
            opt(b.energy.board_decode_j_per_token, &|j| format!("{j:.3}")),
            opt(b.usd_per_million_tokens, &|c| format!("{c:.2}")),
        );
    }
    if let Some(b) = p.batches.first() {
        let _ = writeln!(
            s,
            "\nJ/token: decode energy from bytes moved ({:.1} pJ/bit) and operations ({:.3} pJ/{} op), \
             Horowitz ISSCC 2014; {:.1}% of it moves bytes at batch {}. Board J/token: power × time.",
            hw.dram_pj_per_bit(),
            pj_per_op(class),
            class.name(),
            b.energy.decode_memory_share * 100.0,
            b.batch
        );
        let _ = writeln!(
            s,
            "decode floor at batch {}: {} of weights / {:.0} GB/s = {} ms per token",
            b.batch,
            gb(b.decode.weight_bytes),
            p.bandwidth / 1e9,
            ms(b.decode.weights_s * 1e3)
        );
    }
    if let Some(c) = budget {
        s.push_str(&budget_text(c));
    }
    s
}

fn verdict(fits: bool) -> &'static str {
    if fits {
        "fits"
    } else {
        "misses"
    }
}

fn budget_text(c: &BudgetCheck) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\nbudget {} ms at batch {}: TTFT {} ms {}, TPOT {} ms {}",
        ms(c.budget_ms),
        c.batch,
        ms(c.ttft_ms),
        verdict(c.ttft_fits),
        ms(c.tpot_ms),
        verdict(c.tpot_fits)
    );
    if c.suggestions.is_empty() {
        return s;
    }
    let _ = writeln!(s, "what would make it fit (predicted):\n");
    let _ = writeln!(s, "| change | TTFT ms | TPOT ms | TTFT | TPOT |");
    let _ = writeln!(s, "| ------ | ------: | ------: | ---- | ---- |");
    for g in &c.suggestions {
        let _ = writeln!(
            s,
            "| {}: {} | {} | {} | {} | {} |",
            g.kind,
            g.change,
            ms(g.ttft_ms),
            ms(g.tpot_ms),
            verdict(g.ttft_fits),
            verdict(g.tpot_fits)
        );
    }
    s
}

/// The plan as JSON.
pub fn json(p: &Plan, budget: Option<&BudgetCheck>) -> Value {
    let batches: Vec<Value> = p
        .batches
        .iter()
        .map(|b| {
            json!({
                "batch": b.batch,
                "ttft_ms": b.ttft_ms,
                "tpot_ms": b.tpot_ms,
                "e2e_ms": b.e2e_ms,
                "tokens_per_s_per_stream": b.tokens_per_s_per_stream,
                "tokens_per_s_aggregate": b.tokens_per_s_aggregate,
                "prefill_bound": b.prefill_bound,
                "decode_bound": b.decode_bound,
                "weight_bytes": p.weight_bytes,
                "kv_bytes_per_token": p.kv_bytes_per_token,
                "max_batch": p.max_batch,
                "fits_memory": b.fits_memory,
                "prefill": b.prefill,
                "decode": b.decode,
                "energy": b.energy,
                "usd_per_million_tokens": b.usd_per_million_tokens,
            })
        })
        .collect();
    json!({
        "model": p.model,
        "hardware": p.hardware,
        "weights": p.weights,
        "kv_elem_bytes": p.kv_elem_bytes,
        "prompt": p.prompt,
        "output": p.output,
        "params": p.params,
        "weight_bytes": p.weight_bytes,
        "kv_bytes_per_token": p.kv_bytes_per_token,
        "max_batch": p.max_batch,
        "max_context": p.max_context,
        "model_context": p.model_context,
        "peak_flops": p.peak_flops,
        "bandwidth": p.bandwidth,
        "batches": batches,
        "budget": budget,
    })
}
