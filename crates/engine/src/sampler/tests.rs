use super::penalty::apply_penalties;
use super::*;

/// Sampling params with every filter off, at temperature `t`, seeded.
fn plain(t: f32, seed: u64) -> SamplingParams {
    SamplingParams { temperature: t, top_k: 0, top_p: 1.0, min_p: 0.0, seed: Some(seed), ..SamplingParams::default() }
}

fn softmax(logits: &[f32], t: f32) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let w: Vec<f64> = logits.iter().map(|&l| ((l as f64 - max) / t as f64).exp()).collect();
    let z: f64 = w.iter().sum();
    w.iter().map(|x| x / z).collect()
}

/// Frequencies of each token over `n` draws.
fn frequencies(params: SamplingParams, logits: &[f32], n: usize) -> Vec<f64> {
    let mut s = Sampler::new(params);
    let mut counts = vec![0usize; logits.len()];
    for _ in 0..n {
        counts[s.sample(logits, &[], None).token as usize] += 1;
    }
    counts.iter().map(|&c| c as f64 / n as f64).collect()
}

/// Which tokens ever come out of `n` draws.
fn support(params: SamplingParams, logits: &[f32], n: usize) -> Vec<u32> {
    let f = frequencies(params, logits, n);
    (0..logits.len() as u32).filter(|&i| f[i as usize] > 0.0).collect()
}

const LOGITS: [f32; 8] = [1.0, 2.5, -0.5, 3.0, 0.0, 2.9, -2.0, 1.5];

#[test]
fn greedy_picks_argmax_and_lowest_id_on_ties() {
    let mut s = Sampler::new(SamplingParams::greedy());
    assert_eq!(s.sample(&LOGITS, &[], None).token, 3);
    assert_eq!(s.sample(&[1.0, 5.0, 5.0, 2.0], &[], None).token, 1);
    assert_eq!(s.sample(&[0.0, -0.0], &[], None).token, 0);
}

#[test]
fn nan_and_inf_logits_never_panic() {
    let nan = f32::NAN;
    let inf = f32::INFINITY;
    for params in [SamplingParams::greedy(), plain(1.0, 1), SamplingParams::default()] {
        let mut s = Sampler::new(SamplingParams { seed: Some(1), ..params });
        // NaN is never chosen.
        for _ in 0..50 {
            assert_eq!(s.sample(&[nan, 0.0, nan, -inf], &[], Some(2)).token, 1);
        }
        // Everything masked: token 0, logprob as if uniform.
        let all_masked = s.sample(&[nan, -inf, nan, -inf], &[], Some(4));
        assert_eq!(all_masked.token, 0);
        assert!((all_masked.logprobs.unwrap().logprob + 4f32.ln()).abs() < 1e-6);
        // +inf is the maximum and wins.
        let r = s.sample(&[1.0, inf, 2.0], &[0, 1, 2], Some(3));
        assert_eq!(r.token, 1);
        let lp = r.logprobs.unwrap();
        assert!(lp.logprob.is_finite() && lp.top.iter().all(|(_, lp)| !lp.is_nan()));
    }
}

#[test]
fn seeded_sampling_is_reproducible_and_seed_dependent() {
    let draw = |seed| -> Vec<u32> {
        let mut s = Sampler::new(plain(1.0, seed));
        (0..100).map(|_| s.sample(&LOGITS, &[], None).token).collect()
    };
    assert_eq!(draw(7), draw(7));
    assert_ne!(draw(7), draw(8));
    assert_eq!(Sampler::new(plain(1.0, 7)).seed(), 7);
}

/// The stream is pinned: if this changes, every seeded request replays
/// differently, which must be a deliberate, documented break.
#[test]
fn seeded_stream_is_pinned() {
    // SplitMix64's published first output for seed 42.
    let key = expand_seed(42);
    assert_eq!(key[..8], 13679457532755275413u64.to_le_bytes());
    let mut rng = ChaCha8Rng::from_seed(key);
    let raw: Vec<u64> = (0..3).map(|_| rng.next_u64()).collect();
    assert_eq!(
        raw,
        [3536907876931541756, 1681417456739323905, 17856965759995586207],
        "ChaCha8 / seed expansion changed"
    );
    let mut s = Sampler::new(plain(1.0, 42));
    let tokens: Vec<u32> = (0..16).map(|_| s.sample(&LOGITS, &[], None).token).collect();
    assert_eq!(tokens, [1, 1, 7, 5, 0, 2, 5, 5, 7, 1, 3, 4, 5, 5, 5, 3], "seeded token stream changed");
}

#[test]
fn top_k_one_is_greedy_at_any_temperature() {
    for t in [0.1, 1.0, 5.0, 100.0] {
        let params = SamplingParams { top_k: 1, top_p: 1.0, min_p: 0.0, ..plain(t, 3) };
        assert_eq!(support(params, &LOGITS, 500), [3]);
    }
}

#[test]
fn tiny_top_p_is_greedy() {
    for t in [0.5, 1.0, 10.0] {
        let params = SamplingParams { top_p: 1e-6, ..plain(t, 4) };
        assert_eq!(support(params, &LOGITS, 500), [3]);
    }
}

#[test]
fn top_k_keeps_the_k_best() {
    let params = SamplingParams { top_k: 3, ..plain(50.0, 5) };
    assert_eq!(support(params, &LOGITS, 2000), [1, 3, 5]);
}

#[test]
fn top_p_is_measured_after_top_k_and_before_temperature() {
    // p = [0.4, 0.3, 0.2, 0.1].
    let logits = [0.4f32.ln(), 0.3f32.ln(), 0.2f32.ln(), 0.1f32.ln()];
    // Alone, top-p 0.65 needs 0.4 + 0.3.
    let params = SamplingParams { top_p: 0.65, ..plain(1.0, 6) };
    assert_eq!(support(params.clone(), &logits, 2000), [0, 1]);
    // After top-k 2 the mass is renormalised to [4/7, 3/7]: 4/7 >= 0.55.
    let k2 = SamplingParams { top_k: 2, top_p: 0.55, ..params.clone() };
    assert_eq!(support(k2, &logits, 2000), [0]);
    // Temperature is applied last: a hot draw still only sees {0, 1}.
    let hot = SamplingParams { temperature: 20.0, ..params };
    assert_eq!(support(hot, &logits, 2000), [0, 1]);
}

#[test]
fn min_p_keeps_tokens_above_a_fraction_of_the_max() {
    // p relative to the max: 1, 0.5, 0.3, 0.29, 0.01.
    let rel = [1.0f32, 0.5, 0.3, 0.29, 0.01];
    let logits: Vec<f32> = rel.iter().map(|r| r.ln()).collect();
    let params = SamplingParams { min_p: 0.295, ..plain(30.0, 9) };
    assert_eq!(support(params, &logits, 3000), [0, 1, 2]);
    let only_max = SamplingParams { min_p: 1.0, ..plain(30.0, 9) };
    assert_eq!(support(only_max, &logits, 300), [0]);
}

#[test]
fn temperature_one_matches_softmax() {
    let n = 20_000;
    for t in [1.0f32, 2.0] {
        let f = frequencies(plain(t, 2024), &LOGITS, n);
        let p = softmax(&LOGITS, t);
        for (i, (&fi, &pi)) in f.iter().zip(&p).enumerate() {
            // Five standard deviations of a binomial frequency.
            let tol = 5.0 * (pi * (1.0 - pi) / n as f64).sqrt() + 1e-3;
            assert!((fi - pi).abs() < tol, "t={t} token {i}: frequency {fi:.4} vs softmax {pi:.4}");
        }
    }
}

#[test]
fn logprobs_are_the_untruncated_untempered_log_softmax() {
    let params = SamplingParams { temperature: 0.3, top_k: 2, seed: Some(11), ..SamplingParams::default() };
    let mut s = Sampler::new(params);
    let r = s.sample(&LOGITS, &[], Some(3));
    let lp = r.logprobs.unwrap();
    let p = softmax(&LOGITS, 1.0);
    assert!((lp.logprob as f64 - p[r.token as usize].ln()).abs() < 1e-5);
    let ids: Vec<u32> = lp.top.iter().map(|&(id, _)| id).collect();
    assert_eq!(ids, [3, 5, 1]);
    for &(id, lp) in &lp.top {
        assert!((lp as f64 - p[id as usize].ln()).abs() < 1e-5);
    }
    // More than the vocabulary is clamped; zero gives the chosen one only;
    // none asked, none computed.
    assert_eq!(s.sample(&LOGITS, &[], Some(100)).logprobs.unwrap().top.len(), LOGITS.len());
    let only_chosen = s.sample(&LOGITS, &[], Some(0)).logprobs.unwrap();
    assert!(only_chosen.top.is_empty() && only_chosen.logprob < 0.0);
    assert_eq!(s.sample(&LOGITS, &[], None).logprobs, None);
}

#[test]
fn logprobs_ignore_penalties_but_the_draw_does_not() {
    // Token 3 is the argmax; a huge presence penalty on it makes greedy pick 5.
    let penalties = SamplingParams { presence_penalty: 100.0, repetition_penalty: 1.5, ..SamplingParams::greedy() };
    let mut s = Sampler::new(penalties);
    let r = s.sample(&LOGITS, &[3, 1], Some(2));
    assert_eq!(r.token, 5);
    let lp = r.logprobs.unwrap();
    let p = softmax(&LOGITS, 1.0);
    assert!((lp.logprob as f64 - p[5].ln()).abs() < 1e-5, "raw logprob of the chosen token");
    assert_eq!(lp.top.iter().map(|&(id, _)| id).collect::<Vec<_>>(), [3, 5], "raw ranking, not the penalised one");
    assert!((lp.top[0].1 as f64 - p[3].ln()).abs() < 1e-5);
    // Sampling with penalties: the same seed draws the same token with or
    // without logprobs (they never touch the random stream or the draw).
    let params = SamplingParams { presence_penalty: 1.0, seed: Some(5), ..plain(1.0, 5) };
    let (mut a, mut b) = (Sampler::new(params.clone()), Sampler::new(params));
    for i in 0..64u32 {
        let history = [i % 8, (i * 3) % 8];
        let with = a.sample(&LOGITS, &history, Some(3));
        assert_eq!(with.token, b.sample(&LOGITS, &history, None).token);
        let lp = with.logprobs.unwrap().logprob as f64;
        assert!((lp - p[with.token as usize].ln()).abs() < 1e-5);
    }
}

/// Applies penalties to `logits` the way the sampler does.
fn penalised(params: &SamplingParams, history: &[u32], logits: &[f32]) -> Vec<f32> {
    let mut out = logits.to_vec();
    let mut counts = Vec::new();
    apply_penalties(params, history, &mut out, &mut counts);
    assert!(counts.iter().all(|&c| c == 0), "scratch left dirty");
    out
}

#[test]
fn repetition_penalty_divides_positive_and_multiplies_negative() {
    let params = SamplingParams { repetition_penalty: 2.0, ..SamplingParams::greedy() };
    let logits = [4.0, -3.0, 1.0, 0.0];
    // Token 0 twice: penalised once; 9 is out of vocab and ignored.
    assert_eq!(penalised(&params, &[0, 1, 0, 9], &logits), [2.0, -6.0, 1.0, 0.0]);
}

#[test]
fn presence_and_frequency_penalties_follow_openai() {
    let params = SamplingParams { presence_penalty: 0.5, frequency_penalty: 0.25, ..SamplingParams::greedy() };
    let logits = [1.0, 1.0, 1.0];
    // Token 0 three times, token 2 once.
    assert_eq!(penalised(&params, &[0, 2, 0, 0], &logits), [1.0 - 0.5 - 0.75, 1.0, 1.0 - 0.5 - 0.25]);
    // Both, with repetition: repetition first, then the subtraction.
    let all = SamplingParams { repetition_penalty: 2.0, ..params };
    assert_eq!(penalised(&all, &[1], &[0.0, 3.0]), [0.0, 1.5 - 0.25 - 0.5]);
}

#[test]
fn penalty_window_is_the_last_n_tokens() {
    let params = SamplingParams { presence_penalty: 1.0, penalty_last_n: 2, ..SamplingParams::greedy() };
    let logits = [0.0; 4];
    assert_eq!(penalised(&params, &[0, 1, 2, 3], &logits), [0.0, 0.0, -1.0, -1.0]);
    let whole = SamplingParams { penalty_last_n: 0, ..params };
    assert_eq!(penalised(&whole, &[0, 1, 2], &logits), [-1.0, -1.0, -1.0, 0.0]);
}

#[test]
fn penalties_steer_greedy_choice() {
    let params = SamplingParams { repetition_penalty: 1.5, ..SamplingParams::greedy() };
    let mut s = Sampler::new(params);
    // 3.0 / 1.5 = 2.0 < 2.9: token 5 wins once token 3 was seen.
    assert_eq!(s.sample(&LOGITS, &[3], None).token, 5);
}

#[test]
fn defaults_and_greedy_are_valid() {
    let d = SamplingParams::default();
    assert_eq!((d.temperature, d.top_k, d.top_p, d.min_p, d.penalty_last_n), (0.8, 40, 0.95, 0.05, 64));
    assert!(d.validate().is_ok());
    assert!(SamplingParams::greedy().validate().is_ok());
    assert!(SamplingParams::greedy().is_greedy());
}

#[test]
fn validate_names_the_bad_parameter() {
    type Mutate = fn(&mut SamplingParams);
    let bad = |f: Mutate| {
        let mut p = SamplingParams::default();
        f(&mut p);
        p.validate().unwrap_err().to_string()
    };
    let cases: [(Mutate, &str); 10] = [
        (|p| p.temperature = -0.5, "temperature = -0.5: it must be a finite number >= 0"),
        (|p| p.temperature = f32::INFINITY, "temperature = inf"),
        (|p| p.temperature = f32::NAN, "temperature = NaN"),
        (|p| p.top_p = 0.0, "top_p = 0: it must be in (0, 1]"),
        (|p| p.top_p = 1.5, "top_p = 1.5"),
        (|p| p.min_p = -0.1, "min_p = -0.1: it must be in [0, 1]"),
        (|p| p.repetition_penalty = 0.0, "repetition_penalty = 0: it must be a finite number > 0"),
        (|p| p.presence_penalty = f32::NAN, "presence_penalty = NaN"),
        (|p| p.frequency_penalty = f32::NEG_INFINITY, "frequency_penalty = -inf"),
        (|p| p.repetition_penalty = -1.0, "repetition_penalty = -1"),
    ];
    for (f, expected) in cases {
        let msg = bad(f);
        assert!(msg.contains(expected), "{msg:?} lacks {expected:?}");
        assert!(msg.starts_with("invalid sampling parameter"), "{msg}");
    }
}

#[test]
fn invalid_params_degrade_without_panicking() {
    let params = SamplingParams {
        temperature: f32::NAN,
        top_p: f32::NAN,
        min_p: 7.0,
        repetition_penalty: -1.0,
        presence_penalty: f32::NAN,
        ..SamplingParams::default()
    };
    let mut s = Sampler::new(params);
    assert_eq!(s.sample(&LOGITS, &[3], Some(1)).token, 3);
}

#[test]
fn large_vocab_top_p_and_top_k_agree_with_a_full_sort() {
    // A long, flat-ish row: the top-p cut falls deep inside the histogram.
    let logits: Vec<f32> = (0..5000).map(|i| ((i * 7919) % 5000) as f32 / 500.0).collect();
    let mut sorted: Vec<u32> = (0..5000).collect();
    sorted.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]).then(a.cmp(&b)));
    let p = softmax(&logits, 1.0);
    let top_p = 0.9f32;
    let mut mass = 0.0;
    let n = sorted
        .iter()
        .position(|&i| {
            mass += p[i as usize];
            mass >= top_p as f64
        })
        .unwrap()
        + 1;
    let mut expected: Vec<u32> = sorted[..n].to_vec();
    expected.sort_unstable();

    let mut s = Sampler::new(SamplingParams { top_p, ..plain(1.0, 1) });
    let mut exp = Vec::new();
    let dist = Distribution::of(&logits, &mut exp);
    truncate::truncate(&s.params, &logits, &exp, dist.max, dist.z, &mut s.cands);
    let got: Vec<u32> = s.cands.iter().map(|c| c.id).collect();
    assert_eq!(got, expected);

    // Top-k through the heap (small k) and through selection (large k).
    for k in [1, 40, 600, 4999] {
        s.params = SamplingParams { top_k: k, ..plain(1.0, 1) };
        truncate::truncate(&s.params, &logits, &exp, dist.max, dist.z, &mut s.cands);
        let got: Vec<u32> = s.cands.iter().map(|c| c.id).collect();
        let mut expected = sorted[..k].to_vec();
        expected.sort_unstable();
        assert_eq!(got, expected, "top_k = {k}");
    }
}

#[test]
fn each_token_takes_one_draw_whatever_the_filters() {
    let mut narrow = Sampler::new(SamplingParams { top_k: 1, ..plain(1.0, 5) });
    let mut wide = Sampler::new(plain(1.0, 5));
    for _ in 0..10 {
        narrow.sample(&LOGITS, &[], None);
        wide.sample(&LOGITS, &[], None);
    }
    assert_eq!(narrow.rng.get_word_pos(), wide.rng.get_word_pos());
}

/// A logit that is often special: NaN, ±inf, huge, or ordinary.
fn any_logit() -> impl proptest::strategy::Strategy<Value = f32> {
    use proptest::prelude::*;
    prop_oneof![
        4 => -20.0f32..20.0,
        1 => Just(f32::NAN),
        1 => Just(f32::INFINITY),
        1 => Just(f32::NEG_INFINITY),
        1 => Just(f32::MAX),
        1 => Just(-f32::MAX),
    ]
}

proptest::proptest! {
    #[test]
    fn sample_never_panics_and_reports_sane_numbers(
        logits in proptest::collection::vec(any_logit(), 1..40),
        history in proptest::collection::vec(0u32..50, 0..20),
        temperature in proptest::prop_oneof![proptest::strategy::Just(0.0f32), 1e-30f32..10.0],
        top_k in 0usize..6,
        top_p in 1e-6f32..=1.0,
        min_p in 0.0f32..=1.0,
        repetition_penalty in 0.01f32..5.0,
        presence_penalty in -1e30f32..1e30,
        frequency_penalty in -1e30f32..1e30,
        n_top in 0usize..50,
        seed: u64,
    ) {
        let params = SamplingParams {
            temperature, top_k, top_p, min_p, repetition_penalty,
            presence_penalty, frequency_penalty, penalty_last_n: 8, seed: Some(seed),
        };
        proptest::prop_assert!(params.validate().is_ok());
        let r = Sampler::new(params).sample(&logits, &history, Some(n_top));
        proptest::prop_assert!((r.token as usize) < logits.len());
        let lp = r.logprobs.unwrap();
        // Raw logprobs: `-inf` only for a masked token chosen because the
        // penalties masked everything else too.
        proptest::prop_assert!(!lp.logprob.is_nan() && lp.logprob <= 1e-5, "{}", lp.logprob);
        let raw_masked = sanitize(logits[r.token as usize]) == f32::NEG_INFINITY;
        proptest::prop_assert!(lp.logprob.is_finite() || raw_masked, "{}", lp.logprob);
        proptest::prop_assert_eq!(lp.top.len(), n_top.min(logits.len()));
        for w in lp.top.windows(2) {
            proptest::prop_assert!(w[0].1 >= w[1].1 && !w[1].1.is_nan());
        }
    }
}
