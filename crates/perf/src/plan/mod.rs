//! The planner: latency, throughput, memory, energy and cost of a model on a
//! chip, from the roofline of that chip and memwall's one cost model.
//!
//! For every step the planner asks [`memwall_model::cost::CostModel`] for the
//! FLOPs and bytes moved (the same numbers the benchmark's MBU / MFU and the
//! engine's live metrics use) and takes the slower of the two walls:
//!
//! ```text
//! step time = max(FLOPs / peak FLOP/s, bytes moved / memory bandwidth)
//!           + overhead (element-wise kernels, barriers: see [`roofline`])
//! TTFT      = one prefill step over the batch's prompts
//! TPOT      = mean decode step over the output (context grows from the prompt)
//! e2e       = TTFT + TPOT · (output − 1)
//! ```
//!
//! Without the overhead term this is the analysis of LLM-Viewer and
//! llm-analysis, and like theirs a bound. The overhead term is what a small
//! model on a CPU pays on top of it (per-layer barriers, single-threaded
//! element-wise work, attention below the matmul peak); chips whose entry
//! states no overhead rates get the pure roofline. What makes memwall's
//! different is [`validate`]: it runs the offline benchmark on this machine
//! and reports predicted against measured.
//!
//! Modules: [`shapes`] (named model shapes), [`roofline`] (phase times),
//! [`subject`] (what `--model` names), [`energy`] (joules from bytes and
//! operations), [`budget`] (what would fit a
//! latency budget), [`report`] (text and JSON), [`plot`] (SVG), [`validate`].

pub mod budget;
pub mod energy;
pub mod parallel;
pub mod plot;
pub mod report;
pub mod roofline;
pub mod shapes;
pub mod subject;
pub mod validate;

use crate::hardware::{ComputeClass, Hardware};
use memwall_kernels::DType;
use memwall_model::cost::{CostModel, WeightBytes};
use memwall_model::ModelConfig;
use roofline::{decode_phase, prefill_phase, Bound, Phase};
use serde::Serialize;

/// What can go wrong while planning.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("unknown weight type '{0}' (known: f32, f16, bf16, fp8, int8, int4, q8_0, q5_0, q5_1, q4_0, q4_1)")]
    UnknownWeightType(String),
    #[error("unknown KV type '{0}' (known: f32, f16, bf16, fp8, int8, q8_0)")]
    UnknownKvType(String),
    #[error("bad {what} '{value}': {expected}")]
    BadValue { what: &'static str, value: String, expected: &'static str },
}

/// How the weight matrices are stored: bytes per weight and the arithmetic
/// they run on.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WeightType {
    pub name: String,
    pub bytes_per_weight: f64,
    pub class: ComputeClass,
}

impl WeightType {
    /// `f32`, `f16`, `bf16`, `fp8`, `int8`, `int4` (one byte / half a byte
    /// per weight, scales ignored) or a GGUF block type (`q4_0`: 18 bytes per
    /// 32 weights, run on int4 throughput where the chip has it).
    pub fn parse(s: &str) -> Result<WeightType, PlanError> {
        let lower = s.to_ascii_lowercase();
        let (bytes, class) = match lower.as_str() {
            "int8" | "i8" | "fp8" => (1.0, ComputeClass::Int8),
            "int4" | "i4" | "fp4" => (0.5, ComputeClass::Int4),
            _ => {
                let d = DType::from_name(&lower).ok_or_else(|| PlanError::UnknownWeightType(s.to_string()))?;
                let bytes = d.block_bytes() as f64 / d.block_len() as f64;
                (bytes, WeightType::class_of(d))
            }
        };
        Ok(WeightType { name: lower, bytes_per_weight: bytes, class })
    }

    /// Floats run on their own peak; GGUF block types of up to 4 bits on
    /// the int4 peak (int8 where the chip has no int4 path), the others on
    /// int8 (llama.cpp and memwall multiply them as int8 dot products).
    fn class_of(d: DType) -> ComputeClass {
        match d.name() {
            "f32" => ComputeClass::F32,
            "f16" | "bf16" => ComputeClass::F16,
            n if ["q2", "q3", "q4"].iter().any(|p| n.starts_with(p)) => ComputeClass::Int4,
            _ => ComputeClass::Int8,
        }
    }

    /// Smaller types to try when a budget is missed, smallest last.
    pub fn smaller(&self) -> Vec<WeightType> {
        ["f16", "int8", "q8_0", "q4_0", "int4"]
            .iter()
            .filter_map(|n| WeightType::parse(n).ok())
            .filter(|w| w.bytes_per_weight < self.bytes_per_weight)
            .collect()
    }
}

/// Bytes of one cached K or V element.
pub fn kv_elem_bytes(s: &str) -> Result<f64, PlanError> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "f32" => 4.0,
        "f16" | "bf16" => 2.0,
        "fp8" | "int8" | "i8" => 1.0,
        "q8_0" => 34.0 / 32.0,
        _ => return Err(PlanError::UnknownKvType(s.to_string())),
    })
}

/// Prompt tokens of an image cut into `patch × patch` patches (one token per
/// patch, partial patches padded): `1920x1080` at 16 → 120 × 68 = 8160.
pub fn image_tokens(width: usize, height: usize, patch: usize) -> usize {
    let patch = patch.max(1);
    width.div_ceil(patch) * height.div_ceil(patch)
}

/// Parses `WIDTHxHEIGHT`.
pub fn parse_image(s: &str) -> Result<(usize, usize), PlanError> {
    let bad =
        || PlanError::BadValue { what: "image size", value: s.to_string(), expected: "WIDTHxHEIGHT, e.g. 1920x1080" };
    let (w, h) = s.to_ascii_lowercase().split_once('x').map(|(w, h)| (w.to_string(), h.to_string())).ok_or_else(bad)?;
    Ok((w.trim().parse().map_err(|_| bad())?, h.trim().parse().map_err(|_| bad())?))
}

/// Parses a duration: `40ms`, `1.5s`, `250us`, or bare milliseconds.
pub fn parse_millis(s: &str) -> Result<f64, PlanError> {
    let t = s.trim().to_ascii_lowercase();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix("us") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1e3)
    } else {
        (t.as_str(), 1.0)
    };
    match num.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v * scale),
        _ => Err(PlanError::BadValue {
            what: "budget",
            value: s.to_string(),
            expected: "a duration such as 40ms or 1.5s",
        }),
    }
}

/// The model being planned: its shape and, for a file, its real tensor sizes.
#[derive(Clone, Debug)]
pub struct Subject {
    pub name: String,
    pub config: ModelConfig,
    /// The output projection is the token embedding (stored once).
    pub tied_embeddings: bool,
    pub params: u64,
    /// Exact per-role bytes (from a GGUF file); `None`: from the weight type.
    pub file_weights: Option<WeightBytes>,
}

/// Everything a plan is asked.
#[derive(Clone, Debug)]
pub struct PlanRequest {
    pub subject: Subject,
    pub weights: WeightType,
    /// Bytes of one cached K or V element.
    pub kv_elem_bytes: f64,
    /// Prompt tokens (text plus image tokens).
    pub prompt: usize,
    /// Output tokens per request (≥ 1).
    pub output: usize,
    pub batches: Vec<usize>,
}

impl PlanRequest {
    /// The per-role weight bytes: the file's, or every matrix in the weight
    /// type (norms in f32).
    pub fn weight_bytes(&self) -> WeightBytes {
        if let Some(w) = self.subject.file_weights {
            return w;
        }
        let f32_bytes = WeightBytes::uniform(&self.subject.config, DType::F32);
        let s = self.weights.bytes_per_weight / 4.0;
        WeightBytes {
            attn_per_layer: f32_bytes.attn_per_layer * s,
            mlp_per_layer: f32_bytes.mlp_per_layer * s,
            norms_per_layer: f32_bytes.norms_per_layer,
            output: f32_bytes.output * s,
            embedding_row: f32_bytes.embedding_row * s,
        }
    }

    pub fn cost_model(&self) -> CostModel {
        CostModel::new(self.subject.config.clone(), self.weight_bytes(), self.kv_elem_bytes)
    }

    /// Bytes the weights occupy in memory (embedding stored once when tied).
    pub fn weight_memory(&self) -> f64 {
        let w = self.weight_bytes();
        let c = &self.subject.config;
        let embedding = if self.subject.tied_embeddings { 0.0 } else { w.embedding_row * c.vocab as f64 };
        w.per_step(c.n_layers) + embedding
    }

    /// KV cache bytes per token of context: 2 · layers · kv_heads · head_dim · elem.
    pub fn kv_bytes_per_token(&self) -> f64 {
        let c = &self.subject.config;
        2.0 * c.n_layers as f64 * c.kv_dim() as f64 * self.kv_elem_bytes
    }
}

/// One batch size's predictions.
#[derive(Clone, Debug, Serialize)]
pub struct BatchPlan {
    pub batch: usize,
    pub ttft_ms: f64,
    pub tpot_ms: f64,
    pub e2e_ms: f64,
    pub tokens_per_s_per_stream: f64,
    pub tokens_per_s_aggregate: f64,
    pub prefill_bound: Bound,
    pub decode_bound: Bound,
    pub prefill: Phase,
    pub decode: Phase,
    /// Weights + KV of the whole batch at full context fit in memory.
    pub fits_memory: bool,
    pub energy: energy::Energy,
    /// USD per million generated tokens at the chip's price (aggregate rate).
    pub usd_per_million_tokens: Option<f64>,
}

/// A whole plan.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub model: String,
    pub hardware: String,
    pub weights: WeightType,
    pub kv_elem_bytes: f64,
    pub prompt: usize,
    pub output: usize,
    pub params: u64,
    pub weight_bytes: f64,
    pub kv_bytes_per_token: f64,
    /// Largest batch whose weights + KV (prompt + output each) fit.
    pub max_batch: usize,
    /// Longest context one sequence can have in the memory left by the weights.
    pub max_context: usize,
    /// The model's trained context length.
    pub model_context: usize,
    pub peak_flops: f64,
    pub bandwidth: f64,
    pub batches: Vec<BatchPlan>,
}

/// Plans `req` on `hw`.
pub fn plan(req: &PlanRequest, hw: &Hardware) -> Plan {
    let cost = req.cost_model();
    let weight_bytes = req.weight_memory();
    let kv_per_token = req.kv_bytes_per_token();
    let free = (hw.memory_bytes() - weight_bytes).max(0.0);
    let seq_len = (req.prompt + req.output) as f64;
    let max_batch = (free / (kv_per_token * seq_len).max(1.0)).floor() as usize;
    let max_context = (free / kv_per_token.max(1.0)).floor() as usize;
    let peak = hw.peak_flops(req.weights.class);
    let batches = req
        .batches
        .iter()
        .map(|&b| {
            let b = b.max(1);
            let prefill = prefill_phase(&cost, hw, req.weights.class, b, req.prompt);
            let decode = decode_phase(&cost, hw, req.weights.class, b, req.prompt, req.output);
            let tpot = decode.time_s;
            let aggregate = b as f64 / tpot;
            BatchPlan {
                batch: b,
                ttft_ms: prefill.time_s * 1e3,
                tpot_ms: tpot * 1e3,
                e2e_ms: (prefill.time_s + tpot * (req.output.max(1) - 1) as f64) * 1e3,
                tokens_per_s_per_stream: 1.0 / tpot,
                tokens_per_s_aggregate: aggregate,
                prefill_bound: prefill.bound,
                decode_bound: decode.bound,
                fits_memory: b <= max_batch,
                energy: energy::Energy::of(hw, req.weights.class, &prefill, &decode, b, req.prompt),
                usd_per_million_tokens: hw.price_per_hour.map(|p| p / 3600.0 / aggregate * 1e6),
                prefill,
                decode,
            }
        })
        .collect();
    Plan {
        model: req.subject.name.clone(),
        hardware: hw.name.clone(),
        weights: req.weights.clone(),
        kv_elem_bytes: req.kv_elem_bytes,
        prompt: req.prompt,
        output: req.output,
        params: req.subject.params,
        weight_bytes,
        kv_bytes_per_token: kv_per_token,
        max_batch,
        max_context,
        model_context: req.subject.config.context_len,
        peak_flops: peak,
        bandwidth: hw.bandwidth(),
        batches,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_types_parse() {
        let q4 = WeightType::parse("Q4_0").unwrap();
        assert_eq!((q4.bytes_per_weight, q4.class), (18.0 / 32.0, ComputeClass::Int4));
        assert_eq!(WeightType::parse("int8").unwrap().bytes_per_weight, 1.0);
        assert_eq!(WeightType::parse("bf16").unwrap().class, ComputeClass::F16);
        assert!(WeightType::parse("q3_xs").is_err());
        let names: Vec<String> = WeightType::parse("f16").unwrap().smaller().into_iter().map(|w| w.name).collect();
        assert_eq!(names, ["int8", "q8_0", "q4_0", "int4"]);
    }

    #[test]
    fn values_parse() {
        assert_eq!(parse_millis("40ms").unwrap(), 40.0);
        assert_eq!(parse_millis("1.5s").unwrap(), 1500.0);
        assert_eq!(parse_millis("25").unwrap(), 25.0);
        assert!(parse_millis("-3ms").is_err());
        assert_eq!(parse_image("1920x1080").unwrap(), (1920, 1080));
        assert!(parse_image("1920").is_err());
        assert_eq!(image_tokens(1920, 1080, 16), 120 * 68);
        assert_eq!(kv_elem_bytes("f16").unwrap(), 2.0);
        assert!(kv_elem_bytes("q2").is_err());
    }
}
