//! Per-token operations of a decoder, on f32 rows.
//!
//! Numerics follow ggml-cpu (`ops.cpp`, `vec.h`) where the two frameworks we
//! compare against differ:
//! - norms accumulate their sums in f64 (ggml's `ggml_float`), then scale in
//!   f32: `out = (x * (1 / sqrt(mean(x^2) + eps))) * weight` (LayerNorm:
//!   `((x - mean) * scale) * weight + bias`), with ggml's order of roundings;
//! - RoPE angles are `pos as f32 * inv_freq[i]` in f32, as Hugging Face
//!   transformers (`inv_freq` computed once in f32, then `pos * inv_freq`);
//!   ggml's running product `theta *= theta_scale` agrees within a few f32
//!   ulps of the angle. `sin`/`cos` are f32 libm. The caller passes
//!   `inv_freq` with any frequency scaling (Llama-3, YaRN...) already applied;
//! - GELU is the tanh approximation (GPT-2's `gelu_new`, `ggml_gelu`).
//!
//! The reductions ([`dot_f32`], [`softmax`]) use eight fixed lanes, so their
//! results depend only on the length, never on alignment or batch.
//! SiLU takes [`crate::exp::exp`], one polynomial with the same bits on
//! every instruction set.

use crate::matmul::Isa;

/// RMSNorm. `x`, `weight`, `out`: `[d]`.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    assert!(x.len() == weight.len() && x.len() == out.len());
    let scale = rms_scale(x, eps);
    for ((o, &v), &w) in out.iter_mut().zip(x).zip(weight) {
        *o = v * scale * w;
    }
}

/// [`rms_norm`] of `x` into itself (the same float operations).
pub fn rms_norm_in_place(x: &mut [f32], weight: &[f32], eps: f32) {
    assert_eq!(x.len(), weight.len());
    let scale = rms_scale(x, eps);
    for (v, &w) in x.iter_mut().zip(weight) {
        *v = *v * scale * w;
    }
}

/// `1 / sqrt(mean(x²) + eps)`; as ggml: the sum and `mean + eps` in f64, then an f32 square root.
fn rms_scale(x: &[f32], eps: f32) -> f32 {
    let sum: f64 = x.iter().map(|&v| (v * v) as f64).sum();
    1.0 / ((sum / x.len().max(1) as f64 + eps as f64) as f32).sqrt()
}

/// LayerNorm. `x`, `weight`, `bias`, `out`: `[d]`.
pub fn layer_norm(x: &[f32], weight: &[f32], bias: &[f32], eps: f32, out: &mut [f32]) {
    assert!(x.len() == weight.len() && x.len() == bias.len() && x.len() == out.len());
    let (mean, scale) = layer_norm_stats(x, eps);
    for (((o, &v), &w), &b) in out.iter_mut().zip(x).zip(weight).zip(bias) {
        *o = (v - mean) * scale * w + b;
    }
}

/// [`layer_norm`] of `x` into itself (the same float operations).
pub fn layer_norm_in_place(x: &mut [f32], weight: &[f32], bias: &[f32], eps: f32) {
    assert!(x.len() == weight.len() && x.len() == bias.len());
    let (mean, scale) = layer_norm_stats(x, eps);
    for ((v, &w), &b) in x.iter_mut().zip(weight).zip(bias) {
        *v = (*v - mean) * scale * w + b;
    }
}

/// LayerNorm's mean and `1 / sqrt(var + eps)` of `x`.
fn layer_norm_stats(x: &[f32], eps: f32) -> (f32, f32) {
    let n = x.len().max(1) as f64;
    let mean = (x.iter().map(|&v| v as f64).sum::<f64>() / n) as f32;
    let var: f64 = x.iter().map(|&v| ((v - mean) * (v - mean)) as f64).sum::<f64>() / n;
    (mean, 1.0 / (var as f32 + eps).sqrt())
}

/// One position's RoPE rotation, computed once per token and shared by
/// every head and layer: `cs[i] = cos(pos * inv_freq[i])`,
/// `cs[half + i] = sin(pos * inv_freq[i])`, `half = inv_freq.len()`.
///
/// `cs`: `[2 * half]`.
pub fn rope_angles(pos: usize, inv_freq: &[f32], cs: &mut [f32]) {
    let half = inv_freq.len();
    assert_eq!(cs.len(), 2 * half);
    let (cos, sin) = cs.split_at_mut(half);
    for ((c, s), &f) in cos.iter_mut().zip(sin).zip(inv_freq) {
        (*s, *c) = (pos as f32 * f).sin_cos();
    }
}

#[inline]
fn rotate(a: f32, b: f32, cos: f32, sin: f32) -> (f32, f32) {
    (a * cos - b * sin, a * sin + b * cos)
}

/// NeoX-style RoPE (GPT-NeoX, Qwen2, Phi-3 and Hugging Face Llama layouts):
/// rotates pairs `(i, i + rot_dim / 2)` by angle `i` of `cs` ([`rope_angles`]).
///
/// `x`: `[head_dim]`, `cs`: `[rot_dim]`, `rot_dim <= head_dim`;
/// elements from `rot_dim` on are untouched.
pub fn rope_neox(x: &mut [f32], cs: &[f32]) {
    let half = cs.len() / 2;
    assert!(2 * half <= x.len(), "rot_dim {} > head_dim {}", 2 * half, x.len());
    let (cos, sin) = cs.split_at(half);
    for i in 0..half {
        (x[i], x[i + half]) = rotate(x[i], x[i + half], cos[i], sin[i]);
    }
}

/// Interleaved RoPE (ggml's "normal" mode, llama-arch GGUFs): rotates pairs
/// `(2i, 2i + 1)` by angle `i` of `cs`. Shapes as [`rope_neox`].
pub fn rope_interleaved(x: &mut [f32], cs: &[f32]) {
    let half = cs.len() / 2;
    assert!(2 * half <= x.len(), "rot_dim {} > head_dim {}", 2 * half, x.len());
    let (cos, sin) = cs.split_at(half);
    for ((pair, &c), &s) in x.chunks_exact_mut(2).zip(cos).zip(sin) {
        (pair[0], pair[1]) = rotate(pair[0], pair[1], c, s);
    }
}

/// `v · sigmoid(v) = v / (1 + e^-v)` with [`crate::exp::exp`], the
/// operations every variant of [`silu_mul_with`] runs on each lane.
#[inline]
fn silu1(v: f32) -> f32 {
    v / (1.0 + crate::exp::exp(-v))
}

/// In place `x = silu(x) * up` (`up: None`: plain SiLU), on the detected
/// instruction set. `x`, `up`: `[n]`.
pub fn silu_mul(x: &mut [f32], up: Option<&[f32]>) {
    silu_mul_with(Isa::detect(), x, up)
}

/// [`silu_mul`] on a given variant (`isa` must be available): the same
/// float operations on every variant, so the same bits (a decode step's
/// feed-forward ran ~5% of its time in libm's `expf` on the calling thread
/// while the other threads waited).
pub fn silu_mul_with(isa: Isa, x: &mut [f32], up: Option<&[f32]>) {
    assert!(isa.available());
    if let Some(up) = up {
        assert_eq!(up.len(), x.len(), "silu_mul: x and up differ in length");
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX-512 F (detected); lengths checked above.
        Isa::Avx512 => unsafe { x86::silu_mul_avx512(x, up) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX2 and FMA (detected); lengths checked above.
        Isa::Avx2 => unsafe { x86::silu_mul_avx2(x, up) },
        _ => silu_mul_scalar(x, up),
    }
}

fn silu_mul_scalar(x: &mut [f32], up: Option<&[f32]>) {
    match up {
        Some(up) => x.iter_mut().zip(up).for_each(|(v, &u)| *v = silu1(*v) * u),
        None => x.iter_mut().for_each(|v| *v = silu1(*v)),
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use crate::exp::x86::{exp16, exp8};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn silu_mul_avx512(x: &mut [f32], up: Option<&[f32]>) {
        let one = _mm512_set1_ps(1.0);
        for (i, c) in x.chunks_mut(16).enumerate() {
            let mask = ((1u32 << c.len()) - 1) as u16;
            // SAFETY: the masked lanes are the chunk's `c.len()` elements,
            // inside `x` and (same length, checked) `up`.
            unsafe {
                let v = _mm512_maskz_loadu_ps(mask, c.as_ptr());
                let e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), v));
                let mut s = _mm512_div_ps(v, _mm512_add_ps(one, e));
                if let Some(up) = up {
                    s = _mm512_mul_ps(s, _mm512_maskz_loadu_ps(mask, up.as_ptr().add(16 * i)));
                }
                _mm512_mask_storeu_ps(c.as_mut_ptr(), mask, s);
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn silu_mul_avx2(x: &mut [f32], up: Option<&[f32]>) {
        let one = _mm256_set1_ps(1.0);
        let done = x.len() / 8 * 8;
        let mut chunks = x.chunks_exact_mut(8);
        for (i, c) in (&mut chunks).enumerate() {
            // SAFETY: the chunk has 8 elements, as `up` (same length) from `8 i`.
            unsafe {
                let v = _mm256_loadu_ps(c.as_ptr());
                let e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), v));
                let mut s = _mm256_div_ps(v, _mm256_add_ps(one, e));
                if let Some(up) = up {
                    s = _mm256_mul_ps(s, _mm256_loadu_ps(up.as_ptr().add(8 * i)));
                }
                _mm256_storeu_ps(c.as_mut_ptr(), s);
            }
        }
        super::silu_mul_scalar(chunks.into_remainder(), up.map(|u| &u[done..]));
    }
}

/// In place tanh-approximated GELU. `x`: `[n]`.
pub fn gelu(x: &mut [f32]) {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const A: f32 = 0.044_715;
    for v in x {
        let u = *v;
        *v = 0.5 * u * (1.0 + (SQRT_2_OVER_PI * u * (1.0 + A * u * u)).tanh());
    }
}

/// `out = silu(gate) * up` ([`silu_mul`]'s bits). All `[n]`.
pub fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    assert!(gate.len() == up.len() && gate.len() == out.len());
    out.copy_from_slice(gate);
    silu_mul(out, Some(up));
}

/// In place softmax over `x`: `[n]`. `-inf` entries become 0; a row that is
/// all `-inf` becomes all 0 (rather than NaN).
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    if max == f32::NEG_INFINITY {
        x.fill(0.0);
        return;
    }
    let mut sum = 0.0f64;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v as f64;
    }
    let inv = (1.0 / sum) as f32;
    for v in x {
        *v *= inv;
    }
}

/// `sum_i a[i] * b[i]`, accumulated in eight lanes. `a`, `b`: `[n]`.
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac.remainder().iter().zip(bc.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ac.zip(bc) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    s + tail
}

/// `y += a * x`. `x`, `y`: `[n]`.
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), y.len());
    for (y, &x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_of_constant_is_weight() {
        let mut out = [0.0; 4];
        rms_norm(&[2.0; 4], &[1.0, 2.0, 3.0, 4.0], 0.0, &mut out);
        assert_eq!(out, [1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn layer_norm_centres_and_scales() {
        let mut out = [0.0; 4];
        layer_norm(&[1.0, 2.0, 3.0, 4.0], &[1.0; 4], &[0.5; 4], 0.0, &mut out);
        let s = 1.0 / 1.25f32.sqrt();
        for (o, e) in out.iter().zip([-1.5 * s, -0.5 * s, 0.5 * s, 1.5 * s]) {
            assert!((o - (e + 0.5)).abs() < 1e-6);
        }
    }

    #[test]
    fn rope_rotates_pairs_and_leaves_the_rest() {
        let inv = [1.0f32, 0.5];
        let mut cs = [0f32; 4];
        rope_angles(3, &inv, &mut cs);
        let mut a = [1.0, 2.0, 3.0, 4.0, 9.0];
        rope_neox(&mut a, &cs);
        let (s0, c0) = 3.0f32.sin_cos();
        let (s1, c1) = 1.5f32.sin_cos();
        assert_eq!(a[0], 1.0 * c0 - 3.0 * s0);
        assert_eq!(a[2], 1.0 * s0 + 3.0 * c0);
        assert_eq!(a[1], 2.0 * c1 - 4.0 * s1);
        assert_eq!(a[4], 9.0);
        let mut b = [1.0, 3.0, 2.0, 4.0, 9.0];
        rope_interleaved(&mut b, &cs);
        assert_eq!([b[0], b[1], b[2], b[4]], [a[0], a[2], a[1], 9.0]);
        let mut z = [1.0, 2.0];
        rope_angles(0, &[0.3], &mut cs[..2]);
        rope_neox(&mut z, &cs[..2]);
        assert_eq!(z, [1.0, 2.0]);
    }

    #[test]
    fn activations_match_definitions() {
        let mut x = [-2.0f32, 0.0, 1.5];
        silu_mul(&mut x, None);
        assert!((x[0] - (-2.0 / (1.0 + 2f32.exp()))).abs() < 1e-7 && x[1] == 0.0);
        let mut g = [1.0f32, -1.0, 0.0];
        gelu(&mut g);
        assert!((g[0] - 0.841_192).abs() < 1e-5 && (g[1] + 0.158_808).abs() < 1e-5 && g[2] == 0.0);
        let mut o = [0.0; 2];
        swiglu(&[1.0, -1.0], &[2.0, 3.0], &mut o);
        assert!((o[0] - 2.0 * 0.731_058_6).abs() < 1e-6);
    }

    #[test]
    fn silu_mul_is_the_same_bits_on_every_variant_and_near_the_definition() {
        // Odd lengths exercise the masked / scalar tails; the range covers
        // exp's clamps (|x| > 87) and large gates.
        for n in [1, 7, 8, 15, 16, 17, 45, 5632] {
            let x: Vec<f32> = (0..n).map(|i| ((i * 7919) % 2001) as f32 * 0.1 - 100.0).collect();
            let up: Vec<f32> = (0..n).map(|i| ((i * 104_729) % 97) as f32 * 0.05 - 2.4).collect();
            for up in [None, Some(&up[..])] {
                let mut want = x.clone();
                silu_mul_scalar(&mut want, up);
                for (i, (&w, &v)) in want.iter().zip(&x).enumerate() {
                    let v = v as f64;
                    let exact = v / (1.0 + (-v).exp()) * up.map_or(1.0, |u| u[i] as f64);
                    assert!((w as f64 - exact).abs() <= 1e-6 * exact.abs() + 1e-30, "silu({v}) = {w}, want {exact}");
                }
                for isa in Isa::ALL.into_iter().filter(|i| i.available()) {
                    let mut got = x.clone();
                    silu_mul_with(isa, &mut got, up);
                    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&got), bits(&want), "{isa:?}, n = {n}, up: {}", up.is_some());
                }
            }
        }
    }

    #[test]
    fn softmax_sums_to_one_and_handles_masks() {
        let mut x = [1.0, 2.0, f32::NEG_INFINITY, 3.0];
        softmax(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6 && x[2] == 0.0 && x[3] > x[1]);
        let mut m = [f32::NEG_INFINITY; 3];
        softmax(&mut m);
        assert_eq!(m, [0.0; 3]);
    }

    #[test]
    fn dot_and_axpy() {
        let a: Vec<f32> = (0..19).map(|i| i as f32).collect();
        assert_eq!(dot_f32(&a, &a), (0..19).map(|i| (i * i) as f32).sum::<f32>());
        let mut y = vec![1.0; 19];
        axpy(2.0, &a, &mut y);
        assert_eq!(y[18], 37.0);
    }
}
