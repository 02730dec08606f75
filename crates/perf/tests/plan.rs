//! The planner's worked examples (issue 6), checked on the numbers.

use memwall_perf::hardware::{Hardware, HardwareTable};
use memwall_perf::plan::budget::{self, Image};
use memwall_perf::plan::roofline::Bound;
use memwall_perf::plan::{kv_elem_bytes, plan, report, shapes, PlanRequest, WeightType};

fn request(shape: &str, weights: &str, prompt: usize, output: usize, batches: &[usize]) -> PlanRequest {
    PlanRequest {
        subject: shapes::subject(shapes::by_name(shape).unwrap()),
        weights: WeightType::parse(weights).unwrap(),
        kv_elem_bytes: kv_elem_bytes("f16").unwrap(),
        prompt,
        output,
        batches: batches.to_vec(),
    }
}

fn hw(name: &str) -> Hardware {
    HardwareTable::builtin().get(name).unwrap().clone()
}

fn close(x: f64, want: f64, rel: f64) -> bool {
    (x - want).abs() <= rel * want
}

/// Llama-2-7B in f16 on an A10 (125 TFLOP/s f16, 600 GB/s), 350-token
/// prompt: prefill ≈ 350 × 2 × 7e9 / 125e12 ≈ 39 ms, TPOT ≈ 13.5 GB / 600 GB/s ≈ 23 ms.
#[test]
fn llama2_7b_f16_on_a10() {
    let a10 = hw("a10");
    assert_eq!((a10.tflops_f16, a10.bandwidth_gbs), (125.0, 600.0));
    let p = plan(&request("llama-2-7b", "f16", 350, 128, &[1]), &a10);
    let b = &p.batches[0];
    // The cost model counts the 6.74 B real parameters (the 39 ms rounds
    // them to 7 B) plus causal attention, and the logits of one row only.
    assert!(close(b.ttft_ms, 39.0, 0.10), "TTFT {}", b.ttft_ms);
    assert!(close(b.tpot_ms, 23.0, 0.05), "TPOT {}", b.tpot_ms);
    assert_eq!(b.prefill_bound, Bound::Compute);
    assert_eq!(b.decode_bound, Bound::Memory);
    assert!(close(p.weight_bytes, 13.5e9, 0.01), "{}", p.weight_bytes);
    // 2 · 32 layers · 4096 · 2 B = 512 KiB per token.
    assert_eq!(p.kv_bytes_per_token, 524288.0);
}

/// The automotive example: a 7B INT8 model on a 77 TOPS / 68 GB/s SoC, a
/// 2-megapixel frame in 16×16 patches ≈ 10,000 image tokens.
#[test]
fn automotive_7b_int8_is_memory_bound_at_103_ms_per_token() {
    let soc = hw("automotive-77tops");
    assert_eq!((soc.tops_int8, soc.bandwidth_gbs), (77.0, 68.0));
    // 7e9 weights at one byte each: 7 GB / 68 GB/s = 103 ms per token,
    // not the 10 ms often quoted.
    assert!(close(7e9 / soc.bandwidth(), 0.103, 0.01));
    // Mistral-7B: 7.1 B weights per step (7.24 B with the embedding).
    let p = plan(&request("mistral-7b", "int8", 10_000, 16, &[1]), &soc);
    let b = &p.batches[0];
    assert!(close(b.decode.weights_s, 0.103, 0.03), "weight floor {}", b.decode.weights_s);
    assert_eq!(b.decode_bound, Bound::Memory);
    // 10,000 tokens of f16 KV (128 KB each, 1.3 GB) are read on top of the
    // weights, so the real TPOT is above the floor.
    assert!(close(b.tpot_ms, (7.11e9 + 1.31e9) / 68e9 * 1e3, 0.02), "TPOT {}", b.tpot_ms);
    // Prefill: 10,000 × 2 × 7e9 / 77e12 ≈ 1.8 s of matmuls, plus causal
    // attention over 10,000 positions; compute-bound, and the decode is
    // not multiplied by the input tokens.
    assert_eq!(b.prefill_bound, Bound::Compute);
    let matmul_s = 10_000.0 * 2.0 * 7e9 / 77e12;
    assert!(close(matmul_s, 1.8, 0.05));
    assert!(b.ttft_ms / 1e3 > matmul_s && b.ttft_ms / 1e3 < 1.25 * matmul_s, "TTFT {}", b.ttft_ms);
    let text = report::text(&p, &soc, None, &[]);
    assert!(text.contains("memory"), "{text}");
}

#[test]
fn image_tokens_of_a_two_megapixel_frame() {
    // 1920×1080 in 16×16 patches: 120 × 68 (the last row padded).
    let img = Image { width: 1920, height: 1080, patch: 16, text_tokens: 0 };
    assert_eq!(img.tokens(), 8160);
}

#[test]
fn batching_amortises_the_weights() {
    let p = plan(&request("llama-3-8b", "q4_0", 512, 128, &[1, 8, 32]), &hw("a100-80gb"));
    let (one, eight) = (&p.batches[0], &p.batches[1]);
    assert!(eight.tokens_per_s_aggregate > 6.0 * one.tokens_per_s_aggregate);
    assert!(eight.tpot_ms < 1.3 * one.tpot_ms);
    assert!(p.max_batch > 32 && p.batches.iter().all(|b| b.fits_memory));
    assert!(one.usd_per_million_tokens.unwrap() > eight.usd_per_million_tokens.unwrap());
    // JSON carries the fields scripts rely on.
    let j = report::json(&p, None);
    for key in [
        "batch",
        "ttft_ms",
        "tpot_ms",
        "prefill_bound",
        "decode_bound",
        "weight_bytes",
        "kv_bytes_per_token",
        "max_batch",
    ] {
        assert!(j["batches"][0].get(key).is_some(), "missing {key}");
    }
    assert_eq!(j["batches"][0]["decode_bound"], "memory");
}

#[test]
fn memory_limits_batch_and_context() {
    // 13.5 GB of f16 weights on a 24 GB A10 leave ~10.5 GB: 20,000 tokens of
    // Llama-2-7B KV.
    let p = plan(&request("llama-2-7b", "f16", 512, 512, &[1, 64]), &hw("a10"));
    assert_eq!(p.max_batch, p.max_context / 1024);
    assert!((19_000..21_000).contains(&p.max_context), "{}", p.max_context);
    assert!(!p.batches[1].fits_memory);
    // Weights that do not fit at all.
    let pi = plan(&request("llama-2-7b", "f16", 512, 128, &[1]), &hw("raspberry-pi-5"));
    assert_eq!(pi.max_batch, 0);
}

#[test]
fn budget_mode_suggests_remedies_with_numbers() {
    let soc = hw("automotive-77tops");
    let table = HardwareTable::builtin();
    let img = Image { width: 1920, height: 1080, patch: 16, text_tokens: 32 };
    let req = request("mistral-7b", "int8", img.tokens() + 32, 16, &[1]);
    let c = budget::check(&req, &soc, &table, 40.0, Some(img));
    assert!(!c.ttft_fits && !c.tpot_fits);
    let kinds: Vec<&str> = c.suggestions.iter().map(|s| s.kind).collect();
    for k in ["weights", "params", "image", "hardware"] {
        assert!(kinds.contains(&k), "no {k} suggestion: {kinds:?}");
    }
    // int4 halves the weight bytes (not the KV): TPOT drops by half the floor.
    let floor_ms = plan(&req, &soc).batches[0].decode.weights_s * 1e3;
    let q4 = c.suggestions.iter().find(|s| s.change.ends_with("int4")).unwrap();
    assert!(close(q4.tpot_ms, c.tpot_ms - floor_ms / 2.0, 0.01), "{} vs {}", q4.tpot_ms, c.tpot_ms);
    // Larger patches cut the prefill roughly with the token count.
    let p32 = c.suggestions.iter().find(|s| s.change.starts_with("32×32")).unwrap();
    assert!(p32.ttft_ms < c.ttft_ms / 3.0);
    // A budget that is met needs no remedy.
    let ok = budget::check(&request("smollm2-135m", "q4_0", 64, 16, &[1]), &hw("h100-sxm"), &table, 40.0, None);
    assert!(ok.ttft_fits && ok.tpot_fits && ok.suggestions.is_empty());
}

#[test]
fn every_hardware_entry_plans_every_shape() {
    let table = HardwareTable::builtin();
    for h in &table.entries {
        for s in shapes::all() {
            let req = PlanRequest { subject: shapes::subject(s), ..request("smollm2-135m", "q4_0", 512, 128, &[1, 8]) };
            let p = plan(&req, h);
            for b in &p.batches {
                assert!(b.ttft_ms.is_finite() && b.ttft_ms > 0.0, "{} {}", h.name, s.name);
                assert!(b.tpot_ms.is_finite() && b.tpot_ms > 0.0, "{} {}", h.name, s.name);
                assert!(b.energy.decode_j_per_token > 0.0);
            }
        }
    }
}

#[test]
fn plot_writes_an_svg() {
    let p = plan(&request("llama-2-7b", "q4_0", 512, 128, &[1, 8, 32, 64]), &hw("jetson-agx-orin"));
    let path = std::env::temp_dir().join(format!("memwall-plan-test-{}.svg", std::process::id()));
    memwall_perf::plan::plot::svg(&p, &path).unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).ok();
    assert!(svg.starts_with("<svg") && svg.contains("roofline") && svg.contains("decode"));
}
