//! Quantizers for the k-quant block formats (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K),
//! following ggml's reference quantizers `quantize_row_q*_K_ref`
//! (`ggml-quants.c`, the path `llama-quantize` takes without an importance
//! matrix). Byte layouts are those [`crate::kquant`] decodes.
//!
//! Each super-block of 256 elements is split into groups (16 elements for
//! Q2_K, Q3_K and Q6_K, 32 for Q4_K and Q5_K); a per-group scale (and for
//! Q2_K / Q4_K / Q5_K a per-group minimum) is searched in f32, the group
//! scales are then themselves quantized to 4, 6 or 8 bits against one f16
//! super-block scale, and finally every element is re-quantized against its
//! group's *stored* scale so the quants fit what the decoder will see:
//!
//! - Q2_K: `make_qkx2_quants` (weighted least squares of scale and min over
//!   16 trial scales, error measured as weighted absolute deviation, weights
//!   `|x|`), 4-bit scales and mins;
//! - Q3_K: `make_q3_quants` (RMSE-weighted scale, then up to 5 rounds of
//!   coordinate descent on single quants), 6-bit signed scales;
//! - Q4_K / Q5_K: `make_qkx2_quants` with weights `sqrt(mean(x^2)) + |x|`
//!   and squared error, 6-bit scales and mins;
//! - Q6_K: `make_qx_quants` with weights `x^2` (19 trial scales), 8-bit
//!   signed scales.
//!
//! Every float operation is done in f32 in the same order as the C code
//! (which ggml builds without fused multiply-add in its base library), and
//! the f16 stores round to nearest even, so the output is byte-identical to
//! ggml's; `tests/kquant_quantize.rs` checks that against bytes from
//! libggml (`tools/kquant_fixtures.py`).
//!
//! Any input is accepted without panicking: NaN and infinities give
//! deterministic (meaningless) bytes, as in ggml.

use crate::dtype::DType;
use crate::kquant::{scale_min_k4, QK_K};
use half::f16;

/// ggml's `GROUP_MAX_EPS`: groups whose largest magnitude is below this are zero.
const GROUP_MAX_EPS: f32 = 1e-15;

/// ggml's `nearest_int`: round to nearest (ties to even) by adding
/// 1.5 * 2^23 and reading the mantissa. Exact for |v| <= 2^22 - 1; beyond
/// that (and for NaN) it returns the same wrapped value as the C code.
#[inline]
fn nearest_int(v: f32) -> i32 {
    let bits = (v + 12_582_912.0).to_bits() as i32;
    (bits & 0x007f_ffff) - 0x0040_0000
}

#[inline]
fn f16_round(v: f32) -> (u16, f32) {
    let h = f16::from_f32(v);
    (h.to_bits(), h.to_f32())
}

#[inline]
fn put_u16(b: &mut [u8], i: usize, v: u16) {
    b[i..i + 2].copy_from_slice(&v.to_le_bytes());
}

/// The value of largest magnitude (the first one on ties) and that magnitude.
fn signed_max(x: &[f32]) -> (f32, f32) {
    let (mut max, mut amax) = (0.0f32, 0.0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    (max, amax)
}

/// ggml's `make_qx_quants` with `rmse_type = 1` and no importance weights
/// (the only form Q6_K's reference quantizer uses): weights `x^2`, the
/// least-squares scale for the rounding at `-nmax / max`, then 18 more
/// trial scales `-(nmax + 0.1 is) / max`, keeping the best weighted fit.
///
/// `x`: `[n]`; `l`: `[n]` receives `q + nmax` in `0..2 nmax`. Returns the scale.
fn make_qx_quants(nmax: i32, x: &[f32], l: &mut [i8]) -> f32 {
    let (max, amax) = signed_max(x);
    if amax < GROUP_MAX_EPS {
        l.fill(0);
        return 0.0;
    }
    let round_all = |iscale: f32, l: Option<&mut [i8]>| {
        let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
        let mut out = l;
        for (i, &v) in x.iter().enumerate() {
            let q = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
            if let Some(out) = out.as_deref_mut() {
                out[i] = (q + nmax) as i8;
            }
            let w = v * v;
            let qf = q as f32;
            sumlx += w * v * qf;
            suml2 += w * qf * qf;
        }
        (sumlx, suml2)
    };
    let (sumlx, suml2) = round_all(-(nmax as f32) / max, Some(&mut *l));
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in (-9..=9).filter(|&is| is != 0) {
        let iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        let (sumlx, suml2) = round_all(iscale, None);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            round_all(iscale, Some(&mut *l));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// ggml's `make_q3_quants` with `do_rmse = true`: the `x^2`-weighted
/// least-squares scale of the rounding at `-nmax / max`, improved by up to 5
/// passes that move single quants while the weighted fit gets better.
///
/// `x`: `[n]`; `l`: `[n]` receives `q + nmax` in `0..2 nmax`. Returns the scale.
fn make_q3_quants(nmax: i32, x: &[f32], l: &mut [i8]) -> f32 {
    let (max, amax) = signed_max(x);
    if amax < GROUP_MAX_EPS {
        l.fill(0);
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for (q, &v) in l.iter_mut().zip(x) {
        let li = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
        *q = li as i8;
        let w = v * v;
        sumlx += w * v * li as f32;
        suml2 += w * li as f32 * li as f32;
    }
    for _ in 0..5 {
        let mut changed = false;
        for (q, &v) in l.iter_mut().zip(x) {
            let w = v * v;
            let old = *q as f32;
            let mut slx = sumlx - w * v * old;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * old * old;
                let new = nearest_int(v * sl2 / slx).clamp(-nmax, nmax - 1);
                if new != *q as i32 {
                    let nf = new as f32;
                    slx += w * v * nf;
                    sl2 += w * nf * nf;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        *q = new as i8;
                        sumlx = slx;
                        suml2 = sl2;
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    for q in l.iter_mut() {
        *q += nmax as i8;
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

/// The trial-scale search of ggml's `make_qkx2_quants`: `iscale = (rmin +
/// rdelta * is + nmax) / (max - min)` for `is` in `0..=nstep`.
struct ScaleSearch {
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    /// Measure the error as `|diff|` (true) or `diff^2`.
    use_mad: bool,
}

/// ggml's `make_qkx2_quants`: an asymmetric fit `x ≈ scale * q - min_out`
/// with `q` in `0..=nmax`, `min_out >= 0` (the minimum is never above 0).
/// Starts from the rounding of `(x - min) / (max - min) * nmax`, then for
/// each trial scale solves the weighted least-squares scale and minimum for
/// that rounding and keeps the one with the smallest weighted error.
///
/// `x`, `weights`: `[n]`, `n <= 32`; `l`: `[n]` receives `q`.
/// Returns `(scale, min_out)`.
fn make_qkx2_quants(nmax: i32, x: &[f32], weights: &[f32], l: &mut [u8], search: &ScaleSearch) -> (f32, f32) {
    let n = x.len();
    let (mut min, mut max) = (x[0], x[0]);
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l.fill(0);
        return (0.0, -min);
    }
    let err = |d: f32| if search.use_mad { d.abs() } else { d * d };
    let nmaxf = nmax as f32;
    let mut iscale = nmaxf / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..n {
        let q = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        l[i] = q as u8;
        let diff = scale * q as f32 + min - x[i];
        best_error += weights[i] * err(diff);
    }
    if search.nstep < 1 {
        return (scale, -min);
    }
    let mut laux = [0u8; 32];
    for is in 0..=search.nstep {
        iscale = (search.rmin + search.rdelta * is as f32 + nmaxf) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            let q = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            laux[i] = q as u8;
            let (w, qf) = (weights[i], q as f32);
            sum_l += w * qf;
            sum_l2 += w * qf * qf;
            sum_xl += w * qf * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..n {
                let diff = this_scale * laux[i] as f32 + this_min - x[i];
                cur_error += weights[i] * err(diff);
            }
            if cur_error < best_error {
                l.copy_from_slice(&laux[..n]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// Pack 2-bit quants `l: [256]` (values 0..=3) as Q2_K / Q3_K's `qs: [64]`:
/// byte `32 h + i` holds elements `128 h + i + 32 k` in bits `2k..2k+2`.
fn pack_2bit(l: &[u8; QK_K], qs: &mut [u8]) {
    for half in 0..2 {
        for i in 0..32 {
            let j = 128 * half + i;
            qs[32 * half + i] = l[j] | (l[j + 32] << 2) | (l[j + 64] << 4) | (l[j + 96] << 6);
        }
    }
}

/// Q2_K: `scales[16]`, `qs[64]`, `d`, `dmin` (84 bytes).
fn quantize_q2_k(x: &[f32; QK_K], b: &mut [u8]) {
    let mut l = [0u8; QK_K];
    let (mut scales, mut mins) = ([0f32; 16], [0f32; 16]);
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    let search = ScaleSearch { rmin: -0.5, rdelta: 0.1, nstep: 15, use_mad: true };
    for j in 0..16 {
        let xg = &x[16 * j..16 * j + 16];
        let weights: [f32; 16] = std::array::from_fn(|i| xg[i].abs());
        (scales[j], mins[j]) = make_qkx2_quants(3, xg, &weights, &mut l[16 * j..16 * j + 16], &search);
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }
    let mut sb = [0u8; 16];
    let d_bits = if max_scale > 0.0 {
        let iscale = 15.0 / max_scale;
        for (s, &v) in sb.iter_mut().zip(&scales) {
            *s = nearest_int(iscale * v) as u8;
        }
        f16_round(max_scale / 15.0).0
    } else {
        f16_round(0.0).0
    };
    let dmin_bits = if max_min > 0.0 {
        let iscale = 15.0 / max_min;
        for (s, &v) in sb.iter_mut().zip(&mins) {
            *s |= (nearest_int(iscale * v) << 4) as u8;
        }
        f16_round(max_min / 15.0).0
    } else {
        f16_round(0.0).0
    };
    let (d, dmin) = (f16::from_bits(d_bits).to_f32(), f16::from_bits(dmin_bits).to_f32());
    for (j, &s) in sb.iter().enumerate() {
        let dl = d * (s & 0x0f) as f32;
        if dl == 0.0 {
            continue;
        }
        let ml = dmin * (s >> 4) as f32;
        for i in 16 * j..16 * j + 16 {
            l[i] = nearest_int((x[i] + ml) / dl).clamp(0, 3) as u8;
        }
    }
    b[..16].copy_from_slice(&sb);
    pack_2bit(&l, &mut b[16..80]);
    put_u16(b, 80, d_bits);
    put_u16(b, 82, dmin_bits);
}

/// Q3_K: `hmask[32]`, `qs[64]`, `scales[12]`, `d` (110 bytes).
fn quantize_q3_k(x: &[f32; QK_K], b: &mut [u8]) {
    let mut l = [0i8; QK_K];
    let mut scales = [0f32; 16];
    let (mut max_scale, mut amax) = (0.0f32, 0.0f32);
    for j in 0..16 {
        scales[j] = make_q3_quants(4, &x[16 * j..16 * j + 16], &mut l[16 * j..16 * j + 16]);
        if scales[j].abs() > amax {
            amax = scales[j].abs();
            max_scale = scales[j];
        }
    }
    // 16 six-bit scales (+32): low nibbles in bytes 0..8 (groups 8.. in the
    // high nibble), the 2 high bits of group g in byte 8 + g % 4 at bit 2 (g / 4).
    let mut sb = [0u8; 12];
    let d_bits = if max_scale != 0.0 {
        let iscale = -32.0 / max_scale;
        for (j, &v) in scales.iter().enumerate() {
            let q = ((nearest_int(iscale * v) as i8).clamp(-32, 31) + 32) as u8;
            if j < 8 {
                sb[j] = q & 0x0f;
            } else {
                sb[j - 8] |= (q & 0x0f) << 4;
            }
            sb[8 + j % 4] |= (q >> 4) << (2 * (j / 4));
        }
        f16_round(1.0 / iscale).0
    } else {
        f16_round(0.0).0
    };
    let d_all = f16::from_bits(d_bits).to_f32();
    for j in 0..16 {
        let lo = if j < 8 { sb[j] & 0x0f } else { sb[j - 8] >> 4 };
        let sc = (lo | (((sb[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) as i32 - 32;
        let dl = d_all * sc as f32;
        if dl == 0.0 {
            continue;
        }
        for i in 16 * j..16 * j + 16 {
            l[i] = (nearest_int(x[i] / dl).clamp(-4, 3) + 4) as i8;
        }
    }
    // Bit 2 of element j goes to hmask[j % 32] bit j / 32; the low 2 bits to qs.
    let mut hmask = [0u8; 32];
    let mut low = [0u8; QK_K];
    for (j, (&q, lo)) in l.iter().zip(low.iter_mut()).enumerate() {
        let q = q as u8;
        if q > 3 {
            hmask[j % 32] |= 1 << (j / 32);
        }
        *lo = q & 3;
    }
    b[..32].copy_from_slice(&hmask);
    pack_2bit(&low, &mut b[32..96]);
    b[96..108].copy_from_slice(&sb);
    put_u16(b, 108, d_bits);
}

/// The part shared by Q4_K and Q5_K: 8 groups of 32 fitted by
/// `make_qkx2_quants` (weights `sqrt(mean(x^2)) + |x|`), 6-bit scales and
/// mins packed as `get_scale_min_k4` reads them into `b[4..16]`, `d` and
/// `dmin` into `b[0..4]`, and the quants `l: [256]` (0..=nmax) re-fitted to
/// the stored scales.
fn quantize_q45_k_scales(x: &[f32; QK_K], nmax: i32, search: &ScaleSearch, b: &mut [u8], l: &mut [u8; QK_K]) {
    let (mut scales, mut mins) = ([0f32; 8], [0f32; 8]);
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for j in 0..8 {
        let xg = &x[32 * j..32 * j + 32];
        let mut sum_x2 = 0.0f32;
        for &v in xg {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        let weights: [f32; 32] = std::array::from_fn(|i| av_x + xg[i].abs());
        (scales[j], mins[j]) = make_qkx2_quants(nmax, xg, &weights, &mut l[32 * j..32 * j + 32], search);
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }
    let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut sb = [0u8; 12];
    for j in 0..8 {
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            sb[j] = ls;
            sb[j + 4] = lm;
        } else {
            sb[j + 4] = (ls & 0x0f) | ((lm & 0x0f) << 4);
            sb[j - 4] |= (ls >> 4) << 6;
            sb[j] |= (lm >> 4) << 6;
        }
    }
    let (d_bits, d) = f16_round(max_scale / 63.0);
    let (dmin_bits, dmin) = f16_round(max_min / 63.0);
    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, &sb);
        let dl = d * sc as f32;
        if dl == 0.0 {
            continue;
        }
        let ml = dmin * m as f32;
        for i in 32 * j..32 * j + 32 {
            l[i] = nearest_int((x[i] + ml) / dl).clamp(0, nmax) as u8;
        }
    }
    put_u16(b, 0, d_bits);
    put_u16(b, 2, dmin_bits);
    b[4..16].copy_from_slice(&sb);
}

/// Q4_K: `d`, `dmin`, `scales[12]`, `qs[128]` (144 bytes).
fn quantize_q4_k(x: &[f32; QK_K], b: &mut [u8]) {
    let mut l = [0u8; QK_K];
    let search = ScaleSearch { rmin: -1.0, rdelta: 0.1, nstep: 20, use_mad: false };
    quantize_q45_k_scales(x, 15, &search, b, &mut l);
    // Byte 32 c + i: element 64 c + i in the low nibble, 64 c + 32 + i in the high.
    let qs = &mut b[16..144];
    for c in 0..4 {
        for i in 0..32 {
            qs[32 * c + i] = l[64 * c + i] | (l[64 * c + 32 + i] << 4);
        }
    }
}

/// Q5_K: `d`, `dmin`, `scales[12]`, `qh[32]`, `qs[128]` (176 bytes).
fn quantize_q5_k(x: &[f32; QK_K], b: &mut [u8]) {
    let mut l = [0u8; QK_K];
    let search = ScaleSearch { rmin: -0.5, rdelta: 0.1, nstep: 15, use_mad: false };
    quantize_q45_k_scales(x, 31, &search, b, &mut l);
    // As Q4_K for the low nibbles; bit 4 of element 64 c + i goes to qh[i]
    // bit 2c, of element 64 c + 32 + i to qh[i] bit 2c + 1.
    let mut qh = [0u8; 32];
    for c in 0..4 {
        for i in 0..32 {
            let (lo, hi) = (l[64 * c + i], l[64 * c + 32 + i]);
            qh[i] |= ((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1));
            b[48 + 32 * c + i] = (lo & 0x0f) | ((hi & 0x0f) << 4);
        }
    }
    b[16..48].copy_from_slice(&qh);
}

/// Q6_K: `ql[128]`, `qh[64]`, `scales[16]` (i8), `d` (210 bytes).
fn quantize_q6_k(x: &[f32; QK_K], b: &mut [u8]) {
    let mut l = [0i8; QK_K];
    let mut scales = [0f32; 16];
    let (mut max_scale, mut max_abs_scale) = (0.0f32, 0.0f32);
    for j in 0..16 {
        scales[j] = make_qx_quants(32, &x[16 * j..16 * j + 16], &mut l[16 * j..16 * j + 16]);
        if scales[j].abs() > max_abs_scale {
            max_abs_scale = scales[j].abs();
            max_scale = scales[j];
        }
    }
    if max_abs_scale < GROUP_MAX_EPS {
        b.fill(0);
        return;
    }
    let iscale = -128.0 / max_scale;
    let (d_bits, d) = f16_round(1.0 / iscale);
    let mut sb = [0i8; 16];
    for (s, &v) in sb.iter_mut().zip(&scales) {
        *s = nearest_int(iscale * v).min(127) as i8;
    }
    for (j, &s) in sb.iter().enumerate() {
        let dl = d * s as f32;
        if dl == 0.0 {
            continue;
        }
        for i in 16 * j..16 * j + 16 {
            l[i] = (nearest_int(x[i] / dl).clamp(-32, 31) + 32) as i8;
        }
    }
    // For each half h and i < 32, elements e = 128 h + i + 32 k (k = 0..4):
    // low nibbles in ql[64 h + i] (k = 0, 2) and ql[64 h + 32 + i] (k = 1, 3),
    // the 2 high bits in qh[32 h + i] at bit 2k.
    for half in 0..2 {
        for i in 0..32 {
            let e = 128 * half + i;
            let q: [u8; 4] = std::array::from_fn(|k| l[e + 32 * k] as u8);
            b[64 * half + i] = (q[0] & 0x0f) | ((q[2] & 0x0f) << 4);
            b[64 * half + 32 + i] = (q[1] & 0x0f) | ((q[3] & 0x0f) << 4);
            b[128 + 32 * half + i] = (q[0] >> 4) | ((q[1] >> 4) << 2) | ((q[2] >> 4) << 4) | ((q[3] >> 4) << 6);
        }
    }
    for (o, &s) in b[192..208].iter_mut().zip(&sb) {
        *o = s as u8;
    }
    put_u16(b, 208, d_bits);
}

/// Quantize one super-block `x: [256]` of k-quant `dtype` into
/// `b: [dtype.block_bytes()]`, byte-identical to ggml's `quantize_row_q*_K_ref`.
pub fn quantize_kblock(dtype: DType, x: &[f32; QK_K], b: &mut [u8]) {
    assert_eq!(b.len(), dtype.block_bytes(), "{dtype}: block buffer size");
    match dtype {
        DType::Q2_K => quantize_q2_k(x, b),
        DType::Q3_K => quantize_q3_k(x, b),
        DType::Q4_K => quantize_q4_k(x, b),
        DType::Q5_K => quantize_q5_k(x, b),
        DType::Q6_K => quantize_q6_k(x, b),
        _ => panic!("{dtype} is not a k-quant"),
    }
}

/// Quantize a row `src: [n]` (`n` a multiple of 256) of k-quant `dtype`
/// into `dst: [dtype.row_bytes(n)]`. Panics only if `dtype` is not a
/// k-quant or the lengths disagree.
pub fn quantize_row_kquant(dtype: DType, src: &[f32], dst: &mut [u8]) {
    assert!(dtype.is_kquant(), "{dtype} is not a k-quant");
    assert!(
        dtype.row_bytes(src.len()) == Some(dst.len()),
        "{dtype}: a row of {} elements does not fit {} bytes",
        src.len(),
        dst.len()
    );
    for (x, b) in src.chunks_exact(QK_K).zip(dst.chunks_exact_mut(dtype.block_bytes())) {
        let x: &[f32; QK_K] = x.try_into().expect("chunks_exact gives whole blocks");
        quantize_kblock(dtype, x, b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_rounds_ties_to_even() {
        assert_eq!(nearest_int(0.5), 0);
        assert_eq!(nearest_int(1.5), 2);
        assert_eq!(nearest_int(-2.5), -2);
        assert_eq!(nearest_int(-0.4), 0);
        assert_eq!(nearest_int(31.6), 32);
        assert_eq!(nearest_int(-4_194_303.0), -4_194_303);
    }

    #[test]
    fn zero_block_decodes_to_zero() {
        for dtype in DType::K_QUANTS {
            let mut b = vec![0xa5u8; dtype.block_bytes()];
            quantize_kblock(dtype, &[0.0; QK_K], &mut b);
            let mut y = [1f32; QK_K];
            crate::kquant::dequantize_kblock(dtype, &b, &mut y);
            assert!(y.iter().all(|&v| v == 0.0), "{dtype}");
        }
    }

    #[test]
    fn non_finite_input_does_not_panic() {
        let mut x = [1.0f32; QK_K];
        x[3] = f32::NAN;
        x[100] = f32::INFINITY;
        x[200] = f32::NEG_INFINITY;
        x[201] = 1e30;
        for dtype in DType::K_QUANTS {
            let mut b = vec![0u8; dtype.block_bytes()];
            quantize_kblock(dtype, &x, &mut b);
        }
    }
}
