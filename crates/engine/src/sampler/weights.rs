//! Softmax weights `exp(x)` for `x <= 0`, and their sums, computed the same
//! way on every platform.
//!
//! `f32::exp` calls the platform's libm, whose last bit differs between
//! glibc, musl and macOS; a sampled token depends on these weights, so a seed
//! would not replay identically everywhere. [`exp_neg`] is Cephes' `expf`
//! (range reduction by `ln 2`, degree-6 polynomial, about 1 ulp) written with
//! plain IEEE `+ - * /` only — Rust never fuses them into FMA — so it is
//! bit-identical on every target, and branch-free so loops over it vectorize.
//! Sums run over eight interleaved f64 lanes in a fixed order, for the same
//! two reasons.
//!
//! (A vectorized `exp` would also serve softmax in `memwall-kernels`; it
//! lives here until a second user appears.)

/// `e^x` for `x <= 0` (or `-inf`); 0 below `-87` where f32 would go
/// subnormal. Not for positive `x`.
#[inline]
pub(super) fn exp_neg(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 = LN2_HI + LN2_LO, LN2_HI exact in few bits so `n * LN2_HI` is exact.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    // Selects, not `f32::max`: x is never NaN, and selects vectorize.
    let xc = if x < -87.0 { -87.0 } else { x };
    let k = xc * LOG2E + ROUND;
    let n = k - ROUND;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5; // Cephes: 5.0000001201e-1, which is 0.5 in f32
    let e = p * (r * r) + r + 1.0;
    // n is in [-126, 0] and sits in the low mantissa bits of k: 2^n is
    // built from them without a float-to-int conversion.
    let n_bits = k.to_bits().wrapping_sub(ROUND.to_bits());
    let scale = f32::from_bits(n_bits.wrapping_add(127) << 23);
    if x < -87.0 {
        0.0
    } else {
        e * scale
    }
}

/// `out = exp_neg(logit - max)` for each of `logits`. A plain map over a
/// slice, so that the loop vectorizes.
pub(super) fn exp_shifted(logits: &[f32], max: f32, out: &mut Vec<f32>) {
    out.clear();
    out.resize(logits.len(), 0.0);
    for (o, &l) in out.iter_mut().zip(logits) {
        *o = exp_neg(l - max);
    }
}

/// `Σ w` over eight interleaved f64 lanes, then the lanes in order.
pub(super) fn sum(w: &[f32]) -> f64 {
    let mut lanes = [0.0f64; 8];
    let chunks = w.chunks_exact(8);
    let tail = chunks.remainder();
    for chunk in chunks {
        for j in 0..8 {
            lanes[j] += chunk[j] as f64;
        }
    }
    for (lane, &x) in lanes.iter_mut().zip(tail) {
        *lane += x as f64;
    }
    lanes.iter().sum()
}

/// Index of the first weight where the running sum exceeds `u * Σ w`, for
/// `u` in `[0, 1)`: an inverse-CDF draw. Blocks of 256 are skipped by their
/// sums, which also make up the total, so the scan is O(len / 256 + 256).
/// `None` only if every weight is 0.
pub(super) fn pick(w: &[f32], u: f64) -> Option<usize> {
    const BLOCK: usize = 256;
    let total: f64 = w.chunks(BLOCK).map(sum).sum();
    let target = u * total;
    let mut acc = 0.0;
    for (b, block) in w.chunks(BLOCK).enumerate() {
        let s = sum(block);
        if acc + s <= target {
            acc += s;
            continue;
        }
        for (i, &x) in block.iter().enumerate() {
            acc += x as f64;
            if acc > target {
                return Some(b * BLOCK + i);
            }
        }
    }
    // Rounding kept `acc` at or below `target`: the last drawable one.
    w.iter().rposition(|&x| x > 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_neg_is_within_two_ulp_of_f64_exp() {
        let mut x = 0.0f32;
        while x > -90.0 {
            let want = (x as f64).exp();
            let got = exp_neg(x) as f64;
            if x >= -87.0 {
                let ulp = f32::EPSILON as f64 * want;
                assert!((got - want).abs() <= 2.0 * ulp, "exp({x}) = {got}, want {want}");
            } else {
                assert_eq!(got, 0.0);
            }
            x -= 0.003_7;
        }
        assert_eq!(exp_neg(0.0), 1.0);
        assert_eq!(exp_neg(-0.0), 1.0);
        assert_eq!(exp_neg(f32::NEG_INFINITY), 0.0);
    }

    #[test]
    fn pick_is_an_inverse_cdf() {
        let w: Vec<f32> = (0..1000).map(|i| (i % 7) as f32).collect();
        let total = sum(&w);
        assert_eq!(pick(&w, 0.0), Some(1)); // index 0 has weight 0
        assert_eq!(pick(&w, 0.999_999_999), Some(999));
        // The chosen index's cumulative interval contains u * total.
        for k in 0..100 {
            let u = k as f64 / 100.0;
            let i = pick(&w, u).unwrap();
            let before: f64 = w[..i].iter().map(|&x| x as f64).sum();
            let through = before + w[i] as f64;
            assert!(before <= u * total + 1e-6 && u * total < through + 1e-6);
            assert!(w[i] > 0.0);
        }
        assert_eq!(pick(&[0.0, 0.0], 0.5), None);
    }
}
