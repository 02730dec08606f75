//! The hardware table: memory bandwidth, peak throughput per element type,
//! capacity, power and price of the chips `memwall plan` predicts for.
//!
//! The table is data, not code: `data/hardware.toml` is embedded in the
//! binary and every entry names its source; a user adds or overrides entries
//! with a TOML file of the same form (`--hardware-file`). The entry
//! `this-machine` is special: its ceilings are measured at run time by
//! [`crate::probe`] (the same numbers `memwall bench --probe` prints), so a
//! plan for this machine is checked against this machine's own ceilings.

use crate::probe::Ceilings;
use serde::{Deserialize, Serialize};

/// The built-in table.
pub const BUILTIN_TOML: &str = include_str!("../data/hardware.toml");

/// Energy of moving one bit from DRAM, pJ: Horowitz (ISSCC 2014) gives
/// 640 pJ per 32-bit DRAM read at 45 nm.
pub const DEFAULT_DRAM_PJ_PER_BIT: f64 = 640.0 / 32.0;

/// The arithmetic a weight type runs on: which peak applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ComputeClass {
    F32,
    F16,
    Int8,
    Int4,
}

impl ComputeClass {
    pub fn name(self) -> &'static str {
        match self {
            ComputeClass::F32 => "f32",
            ComputeClass::F16 => "f16",
            ComputeClass::Int8 => "int8",
            ComputeClass::Int4 => "int4",
        }
    }
}

/// One chip.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hardware {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Memory bandwidth, GB/s.
    pub bandwidth_gbs: f64,
    /// Memory capacity, GB.
    pub memory_gb: f64,
    /// Dense peaks: TFLOP/s (f32, f16) and TOP/s (int8, int4).
    pub tflops_f32: f64,
    pub tflops_f16: f64,
    pub tops_int8: f64,
    #[serde(default)]
    pub tops_int4: Option<f64>,
    /// Power at load, W.
    #[serde(default)]
    pub power_w: Option<f64>,
    /// On-demand price, USD per hour.
    #[serde(default)]
    pub price_per_hour: Option<f64>,
    /// Energy per bit moved from memory, pJ.
    #[serde(default)]
    pub dram_pj_per_bit: Option<f64>,
    /// Ceilings are measured on this machine at run time.
    #[serde(default)]
    pub probe: bool,
    /// Fraction of the bandwidth a decode step achieves (default 1: the
    /// pure roofline). Set only where calibrated, and say so in `source`.
    #[serde(default)]
    pub bandwidth_efficiency: Option<f64>,
    /// Fraction of the peak a prefill step achieves (default 1).
    #[serde(default)]
    pub compute_efficiency: Option<f64>,
    /// Latency of one thread-pool dispatch / kernel launch and the barrier
    /// that ends it, µs: paid per [`memwall_model::cost::Overhead::barriers`]
    /// (default 0: hidden, as the pure roofline assumes).
    #[serde(default)]
    pub barrier_us: Option<f64>,
    /// Activation quantization on one thread, 10⁹ elements/s (default: free,
    /// i.e. fused into the matmul or overlapped).
    #[serde(default)]
    pub quantize_gelems: Option<f64>,
    /// The other element-wise kernels (norms, RoPE, SwiGLU, residual adds,
    /// KV writes) on one thread, 10⁹ elements/s (default: free).
    #[serde(default)]
    pub elementwise_gelems: Option<f64>,
    /// Threads the quantization and element-wise work of a large step is
    /// spread over (memwall's pool; the probe's thread count; default 1).
    #[serde(default)]
    pub threads: Option<usize>,
    /// Attention over the KV cache, TFLOP/s (default: the weight type's
    /// peak, as the matmuls).
    #[serde(default)]
    pub attention_tflops: Option<f64>,
    pub source: String,
}

impl Hardware {
    /// Achievable bytes per second: the bandwidth times its efficiency.
    pub fn bandwidth(&self) -> f64 {
        self.bandwidth_gbs * 1e9 * self.bandwidth_efficiency.unwrap_or(1.0)
    }

    /// Bytes.
    pub fn memory_bytes(&self) -> f64 {
        self.memory_gb * 1e9
    }

    /// Achievable operations per second for `class`: the peak times its
    /// efficiency (int4 falls back to int8 when the chip has no int4 path).
    pub fn peak_flops(&self, class: ComputeClass) -> f64 {
        1e12 * self.compute_efficiency.unwrap_or(1.0)
            * match class {
                ComputeClass::F32 => self.tflops_f32,
                ComputeClass::F16 => self.tflops_f16,
                ComputeClass::Int8 => self.tops_int8,
                ComputeClass::Int4 => self.tops_int4.unwrap_or(self.tops_int8),
            }
    }

    /// Seconds per barrier (0 when the entry states none).
    pub fn barrier_s(&self) -> f64 {
        self.barrier_us.unwrap_or(0.0) * 1e-6
    }

    /// Activation elements quantized per second, if the entry states it.
    pub fn quantize_rate(&self) -> Option<f64> {
        self.quantize_gelems.map(|g| g * 1e9)
    }

    /// Other element-wise elements per second, if the entry states it.
    pub fn elementwise_rate(&self) -> Option<f64> {
        self.elementwise_gelems.map(|g| g * 1e9)
    }

    /// Attention FLOP/s, if the entry states its own (no efficiency applies:
    /// it is measured on the attention kernel itself).
    pub fn attention_flops(&self) -> Option<f64> {
        self.attention_tflops.map(|t| t * 1e12)
    }

    pub fn dram_pj_per_bit(&self) -> f64 {
        self.dram_pj_per_bit.unwrap_or(DEFAULT_DRAM_PJ_PER_BIT)
    }

    /// This entry with the ceilings the probe measured: bandwidth, the f32
    /// peak (also used for f16, which memwall's CPU kernels compute in f32)
    /// and the int8 peak (also used for int4: Q4 weights run int8 dot
    /// products on CPUs), and the overheads the probe measured (the entry's
    /// own where the probe has none: an old probe file).
    pub fn with_probe(&self, c: &Ceilings, cpu: &str) -> Hardware {
        let measured = |v: f64, scale: f64, own: Option<f64>| if v > 0.0 { Some(v / scale) } else { own };
        Hardware {
            description: format!(
                "{} ({} thread(s), probed)",
                if cpu.is_empty() { "this machine" } else { cpu },
                c.threads
            ),
            bandwidth_gbs: c.bandwidth / 1e9,
            tflops_f32: c.f32_flops / 1e12,
            tflops_f16: c.f32_flops / 1e12,
            tops_int8: c.int8_flops / 1e12,
            tops_int4: None,
            memory_gb: memory_gb().unwrap_or(self.memory_gb),
            barrier_us: measured(c.barrier_s, 1e-6, self.barrier_us),
            quantize_gelems: measured(c.quantize_rate, 1e9, self.quantize_gelems),
            elementwise_gelems: measured(c.elementwise_rate, 1e9, self.elementwise_gelems),
            attention_tflops: measured(c.attention_flops, 1e12, self.attention_tflops),
            threads: Some(c.threads.max(1)),
            ..self.clone()
        }
    }
}

impl Hardware {
    /// The pure roofline of this entry: efficiencies reset to 1.
    pub fn uncalibrated(&self) -> Hardware {
        Hardware { bandwidth_efficiency: None, compute_efficiency: None, ..self.clone() }
    }
}

/// Physical memory of this machine from `/proc/meminfo`, GB.
fn memory_gb() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0 / 1e9)
}

/// What can go wrong reading a hardware table.
#[derive(Debug, thiserror::Error)]
pub enum HardwareError {
    #[error("{origin}: not a hardware table: {message}")]
    Parse { origin: String, message: String },
    #[error("{origin}: entry '{name}': {problem}")]
    Invalid { origin: String, name: String, problem: String },
    #[error("unknown hardware '{name}' (known: {known})")]
    Unknown { name: String, known: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TableFile {
    #[serde(default)]
    hardware: Vec<Hardware>,
}

/// An ordered list of chips.
#[derive(Clone, Debug, PartialEq)]
pub struct HardwareTable {
    pub entries: Vec<Hardware>,
}

impl HardwareTable {
    /// The built-in table.
    pub fn builtin() -> HardwareTable {
        HardwareTable::parse(BUILTIN_TOML, "built-in hardware.toml").expect("the built-in table parses")
    }

    /// Parses a table; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<HardwareTable, HardwareError> {
        let file: TableFile = toml::from_str(text)
            .map_err(|e| HardwareError::Parse { origin: origin.to_string(), message: e.to_string() })?;
        for h in &file.hardware {
            for (field, v) in
                [("bandwidth_efficiency", h.bandwidth_efficiency), ("compute_efficiency", h.compute_efficiency)]
            {
                if let Some(v) = v.filter(|v| !(*v > 0.0 && *v <= 1.0)) {
                    return Err(HardwareError::Invalid {
                        origin: origin.to_string(),
                        name: h.name.clone(),
                        problem: format!("{field} must be in (0, 1], got {v}"),
                    });
                }
            }
            let positive = [
                ("bandwidth_gbs", h.bandwidth_gbs),
                ("memory_gb", h.memory_gb),
                ("tflops_f32", h.tflops_f32),
                ("tflops_f16", h.tflops_f16),
                ("tops_int8", h.tops_int8),
            ];
            if let Some((field, v)) = positive.iter().find(|(_, v)| !(v.is_finite() && *v > 0.0)) {
                return Err(HardwareError::Invalid {
                    origin: origin.to_string(),
                    name: h.name.clone(),
                    problem: format!("{field} must be a positive number, got {v}"),
                });
            }
            let rates = [
                ("quantize_gelems", h.quantize_gelems),
                ("elementwise_gelems", h.elementwise_gelems),
                ("attention_tflops", h.attention_tflops),
            ];
            if let Some((field, Some(v))) = rates.iter().find(|(_, v)| v.is_some_and(|v| !(v.is_finite() && v > 0.0))) {
                return Err(HardwareError::Invalid {
                    origin: origin.to_string(),
                    name: h.name.clone(),
                    problem: format!("{field} must be a positive number, got {v}"),
                });
            }
            if let Some(v) = h.barrier_us.filter(|v| !(v.is_finite() && *v >= 0.0)) {
                return Err(HardwareError::Invalid {
                    origin: origin.to_string(),
                    name: h.name.clone(),
                    problem: format!("barrier_us must be a number >= 0, got {v}"),
                });
            }
        }
        Ok(HardwareTable { entries: file.hardware })
    }

    /// Adds `other`'s entries, replacing those with the same name.
    pub fn extend(&mut self, other: HardwareTable) {
        for h in other.entries {
            match self.entries.iter_mut().find(|e| e.name.eq_ignore_ascii_case(&h.name)) {
                Some(e) => *e = h,
                None => self.entries.push(h),
            }
        }
    }

    pub fn get(&self, name: &str) -> Result<&Hardware, HardwareError> {
        self.entries.iter().find(|h| h.name.eq_ignore_ascii_case(name)).ok_or_else(|| HardwareError::Unknown {
            name: name.to_string(),
            known: self.entries.iter().map(|h| h.name.as_str()).collect::<Vec<_>>().join(", "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_table_has_every_required_entry() {
        let t = HardwareTable::builtin();
        for name in [
            "this-machine",
            "automotive-77tops",
            "jetson-agx-orin",
            "drive-thor",
            "a10",
            "a100-80gb",
            "h100-sxm",
            "h200",
            "m2-ultra",
            "raspberry-pi-5",
            "desktop-ddr5",
        ] {
            let h = t.get(name).unwrap();
            assert!(!h.source.is_empty(), "{name} has no source");
        }
        assert!(t.get("this-machine").unwrap().probe);
        let a10 = t.get("A10").unwrap();
        assert_eq!(a10.peak_flops(ComputeClass::F16), 125e12);
        assert_eq!(a10.bandwidth(), 600e9);
    }

    #[test]
    fn user_entries_extend_and_override() {
        let mut t = HardwareTable::builtin();
        let n = t.entries.len();
        let user = r#"
            [[hardware]]
            name = "a10"
            bandwidth_gbs = 1.0
            memory_gb = 1.0
            tflops_f32 = 1.0
            tflops_f16 = 1.0
            tops_int8 = 1.0
            source = "test"
            [[hardware]]
            name = "my-board"
            bandwidth_gbs = 10.0
            memory_gb = 4.0
            tflops_f32 = 0.1
            tflops_f16 = 0.2
            tops_int8 = 0.4
            source = "test"
        "#;
        t.extend(HardwareTable::parse(user, "user").unwrap());
        assert_eq!(t.entries.len(), n + 1);
        assert_eq!(t.get("a10").unwrap().bandwidth_gbs, 1.0);
        assert_eq!(t.get("my-board").unwrap().peak_flops(ComputeClass::Int4), 0.4e12);
    }

    #[test]
    fn bad_tables_are_errors() {
        assert!(matches!(HardwareTable::parse("[[hardware]]\nname = 3", "x"), Err(HardwareError::Parse { .. })));
        let zero = "[[hardware]]\nname='z'\nbandwidth_gbs=0.0\nmemory_gb=1.0\ntflops_f32=1.0\ntflops_f16=1.0\ntops_int8=1.0\nsource='s'";
        assert!(matches!(HardwareTable::parse(zero, "x"), Err(HardwareError::Invalid { .. })));
        assert!(matches!(HardwareTable::builtin().get("tpu-v9"), Err(HardwareError::Unknown { .. })));
        let over = zero.replace("bandwidth_gbs=0.0", "bandwidth_gbs=1.0\nbandwidth_efficiency=1.5");
        assert!(matches!(HardwareTable::parse(&over, "x"), Err(HardwareError::Invalid { .. })));
    }

    #[test]
    fn efficiencies_scale_the_ceilings_and_only_this_machine_has_them() {
        let t = HardwareTable::builtin();
        let this = t.get("this-machine").unwrap();
        let c = Ceilings { threads: 2, bandwidth: 10e9, f32_flops: 1e11, int8_flops: 2e11, ..Default::default() };
        let probed = this.with_probe(&c, "cpu");
        assert!((probed.bandwidth() - 10e9 * this.bandwidth_efficiency.unwrap()).abs() < 1.0);
        assert!((probed.uncalibrated().peak_flops(ComputeClass::Int4) - 2e11).abs() < 1.0);
        assert!(t.entries.iter().filter(|h| !h.probe).all(|h| h.bandwidth_efficiency.is_none()));
    }

    #[test]
    fn probed_overheads_replace_the_fallback_and_others_cost_nothing() {
        let t = HardwareTable::builtin();
        let this = t.get("this-machine").unwrap();
        let old_file =
            Ceilings { threads: 2, bandwidth: 10e9, f32_flops: 1e11, int8_flops: 2e11, ..Default::default() };
        let fallback = this.with_probe(&old_file, "");
        assert_eq!(fallback.barrier_us, this.barrier_us);
        assert!(fallback.barrier_s() > 0.0 && fallback.attention_flops().is_some());
        let c =
            Ceilings { barrier_s: 4e-6, quantize_rate: 5e8, elementwise_rate: 2e9, attention_flops: 8e9, ..old_file };
        let probed = this.with_probe(&c, "");
        assert!((probed.barrier_s() - 4e-6).abs() < 1e-12);
        assert_eq!(probed.quantize_rate().map(f64::round), Some(5e8));
        assert_eq!(probed.elementwise_rate().map(f64::round), Some(2e9));
        assert_eq!(probed.uncalibrated().attention_flops().map(f64::round), Some(8e9));
        let a10 = t.get("a10").unwrap();
        assert_eq!((a10.barrier_s(), a10.quantize_rate(), a10.attention_flops()), (0.0, None, None));
        let neg = "[[hardware]]\nname='z'\nbandwidth_gbs=1.0\nmemory_gb=1.0\ntflops_f32=1.0\ntflops_f16=1.0\ntops_int8=1.0\nbarrier_us=-1.0\nsource='s'";
        assert!(matches!(HardwareTable::parse(neg, "x"), Err(HardwareError::Invalid { .. })));
        let zero_rate = neg.replace("barrier_us=-1.0", "attention_tflops=0.0");
        assert!(matches!(HardwareTable::parse(&zero_rate, "x"), Err(HardwareError::Invalid { .. })));
    }
}
