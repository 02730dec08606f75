//! RoPE inverse frequencies, with the scalings memwall supports.
//!
//! `inv_freq[i] = theta^(-2i / rope_dim)` for `i < rope_dim / 2`, computed in
//! f32 as transformers does, then divided by the scaling's per-frequency factor
//! (Llama 3.1's rule, as transformers' `_compute_llama3_parameters`, or the
//! factors a GGUF file stores in `rope_freqs.weight`).

use crate::config::{ModelConfig, RopeScaling};

/// `[rope_dim / 2]` inverse frequencies for `config`, before any factors a
/// GGUF file supplies.
pub fn inv_freq(config: &ModelConfig) -> Vec<f32> {
    let half = config.rope_dim / 2;
    let base: Vec<f32> = (0..half)
        .map(|i| {
            let exponent = (2 * i) as f32 / config.rope_dim as f32;
            1.0 / config.rope_theta.powf(exponent)
        })
        .collect();
    match config.rope_scaling {
        None => base,
        Some(RopeScaling::Linear { factor }) => base.iter().map(|f| f / factor).collect(),
        Some(RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_context }) => {
            let old = original_context as f32;
            let low_wavelen = old / low_freq_factor;
            let high_wavelen = old / high_freq_factor;
            base.iter()
                .map(|&f| {
                    let wavelen = 2.0 * std::f32::consts::PI / f;
                    if wavelen < high_wavelen {
                        f
                    } else if wavelen > low_wavelen {
                        f / factor
                    } else {
                        let smooth = (old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                        (1.0 - smooth) * f / factor + smooth * f
                    }
                })
                .collect()
        }
    }
}
