//! Every SIMD level against the scalar reference, matmul against an f64 reference, and
//! thread-count independence.
//!
//! Tolerance: integer products and sums are exact at every level; levels differ only in how the
//! integer partial sums are scaled and accumulated in fp32 (the dot kernels, like ggml's, scale
//! each vector lane's partial block sum before the lanes are added; the panel kernels scale
//! whole block sums; the scalar reference scales whole block sums in a different order).
//! Differences are bounded by `TOL · Σ_i |w_i · x_i|` over the dequantized elementwise
//! products, the usual bound for a reordered floating-point dot product, with `TOL = 1e-5`
//! (about 170 × 2^-24: room for the reordering of up to ~2000-element rows, far below any
//! real kernel bug, which shows up at the size of one product).

use super::*;
use crate::quant::{quantize_row_q4_0, quantize_row_q8_0};
use proptest::prelude::*;

const TOL: f64 = 1e-5;

/// Proptest cases: `PROPTEST_CASES` if set, else fewer on aarch64 (tests run under qemu).
fn config() -> ProptestConfig {
    let default = if cfg!(target_arch = "aarch64") {
        24
    } else {
        96
    };
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// SplitMix64: deterministic data from a proptest-chosen seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    /// Values in 32-blocks with scales spread over 1e-3..1e2; about one block in 8 all zero.
    fn blocky(&mut self, n: usize) -> Vec<f32> {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n.div_ceil(QK) {
            let zero = self.next().is_multiple_of(8);
            let scale = 10f32.powf(self.unit() * 2.5 + 0.5);
            for _ in 0..QK {
                v.push(if zero { 0.0 } else { self.unit() * scale });
            }
        }
        v.truncate(n);
        v
    }
}

fn q8(x: &[f32]) -> Vec<BlockQ8_0> {
    let mut b = vec![bytemuck::Zeroable::zeroed(); x.len() / QK];
    quantize_row_q8_0(x, &mut b);
    b
}

fn q4(x: &[f32]) -> Vec<BlockQ4_0> {
    let mut b = vec![bytemuck::Zeroable::zeroed(); x.len() / QK];
    quantize_row_q4_0(x, &mut b);
    b
}

fn abs_terms_q8(w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f64 {
    w.iter()
        .zip(x)
        .map(|(a, b)| {
            let s: i64 =
                a.qs.iter()
                    .zip(&b.qs)
                    .map(|(&p, &q)| (p as i64 * q as i64).abs())
                    .sum();
            (s as f64 * a.d.to_f64() * b.d.to_f64()).abs()
        })
        .sum()
}

fn abs_terms_q4(w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f64 {
    abs_terms_q8(&q8_exact_from_q4(w), x)
}

/// Q4_0 blocks re-expressed as Q8_0 with the same scale (q - 8 fits in i8).
fn q8_exact_from_q4(w: &[BlockQ4_0]) -> Vec<BlockQ8_0> {
    w.iter()
        .map(|b| {
            let mut qs = [0i8; QK];
            for j in 0..QK / 2 {
                qs[j] = (b.qs[j] & 0x0f) as i8 - 8;
                qs[j + QK / 2] = (b.qs[j] >> 4) as i8 - 8;
            }
            BlockQ8_0 { d: b.d, qs }
        })
        .collect()
}

/// Row `r` of quantized `m` against activation blocks `xb` through the scalar reference, in the
/// order a matmul of `n_tokens` tokens follows (decoder-sized calls the 8-lane order,
/// encoder-sized ones the panel's), and whether `got` matches it: the same bits on x86 (its
/// levels scale and add exact block sums in the scalar order and rounding, so greedy output
/// cannot depend on the level), within rounding elsewhere.
fn scalar_row_check(
    m: &MatRef,
    r: usize,
    xb: &[BlockQ8_0],
    n_tokens: usize,
    got: f32,
) -> (f32, bool) {
    let seq = n_tokens >= PANEL_MIN_TOKENS;
    let (want, terms) = if m.ty == GgmlType::Q4_0 {
        let wb: &[BlockQ4_0] = cast(m.row(r));
        let f = if seq {
            scalar::dot_q4_0_q8_0_seq
        } else {
            scalar::dot_q4_0_q8_0
        };
        (f(wb, xb), abs_terms_q4(wb, xb))
    } else {
        let wb: &[BlockQ8_0] = cast(m.row(r));
        let f = if seq {
            scalar::dot_q8_0_q8_0_seq
        } else {
            scalar::dot_q8_0_q8_0
        };
        (f(wb, xb), abs_terms_q8(wb, xb))
    };
    let ok = if cfg!(target_arch = "x86_64") {
        got.to_bits() == want.to_bits()
    } else {
        close(got, want, terms)
    };
    (want, ok)
}

/// Every level's matmul of quantized `m` with `x` (`n_tokens` rows), each (row, token) checked
/// by [`scalar_row_check`]: the first mismatch, described, or `None`.
fn first_level_mismatch(m: &MatRef, x: &[f32], n_tokens: usize) -> Option<String> {
    let nb = m.cols / QK;
    let xq = quantize_activations(x, m.cols);
    for l in supported_levels() {
        let mut y = vec![0.0; m.rows * n_tokens];
        matmul_at(*l, m, x, n_tokens, &mut y).unwrap();
        for t in 0..n_tokens {
            let xb = &xq[t * nb..(t + 1) * nb];
            for r in 0..m.rows {
                let got = y[t * m.rows + r];
                let (want, ok) = scalar_row_check(m, r, xb, n_tokens, got);
                if !ok {
                    let ty = m.ty;
                    return Some(format!("{l} {ty} r{r} t{t}/{n_tokens}: {got} vs {want}"));
                }
            }
        }
    }
    None
}

fn close(got: f32, want: f32, abs_terms: f64) -> bool {
    (got as f64 - want as f64).abs() <= TOL * abs_terms + 1e-30
}

fn simd_levels() -> impl Iterator<Item = KernelLevel> {
    supported_levels()
        .iter()
        .copied()
        .filter(|&l| l != KernelLevel::Scalar)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn dot_q8_0_matches_scalar(nb in 1usize..=67, seed in any::<u64>()) {
        let mut rng = Rng(seed);
        let w = q8(&rng.blocky(nb * QK));
        let x = q8(&rng.blocky(nb * QK));
        let want = scalar::dot_q8_0_q8_0(&w, &x);
        let terms = abs_terms_q8(&w, &x);
        for l in simd_levels() {
            let got = (kernels_for(l).unwrap().dot_q8_0)(&w, &x);
            prop_assert!(close(got, want, terms), "{l}: {got} vs {want} (Σ|t| {terms})");
        }
    }

    #[test]
    fn dot_q4_0_matches_scalar(nb in 1usize..=67, seed in any::<u64>()) {
        let mut rng = Rng(seed);
        let w = q4(&rng.blocky(nb * QK));
        let x = q8(&rng.blocky(nb * QK));
        let want = scalar::dot_q4_0_q8_0(&w, &x);
        let terms = abs_terms_q4(&w, &x);
        for l in simd_levels() {
            let got = (kernels_for(l).unwrap().dot_q4_0)(&w, &x);
            prop_assert!(close(got, want, terms), "{l}: {got} vs {want} (Σ|t| {terms})");
        }
    }

    #[test]
    fn float_dots_match_scalar(n in 1usize..=300, seed in any::<u64>()) {
        let mut rng = Rng(seed);
        let w = rng.blocky(n);
        let x = rng.blocky(n);
        let wh: Vec<f16> = w.iter().map(|&v| quant::f32_to_f16(v)).collect();
        let wb: Vec<bf16> = w.iter().map(|&v| quant::f32_to_bf16(v)).collect();
        let terms = |wf: &dyn Fn(usize) -> f32| -> f64 {
            (0..n).map(|i| (wf(i) as f64 * x[i] as f64).abs()).sum()
        };
        let t32 = terms(&|i| w[i]);
        let t16 = terms(&|i| wh[i].to_f32());
        let tb = terms(&|i| wb[i].to_f32());
        let (r32, r16, rb) = (
            scalar::dot_f32(&w, &x),
            scalar::dot_f16_f32(&wh, &x),
            scalar::dot_bf16_f32(&wb, &x),
        );
        for l in simd_levels() {
            let k = kernels_for(l).unwrap();
            let (g32, g16, gb) = ((k.dot_f32)(&w, &x), (k.dot_f16)(&wh, &x), (k.dot_bf16)(&wb, &x));
            prop_assert!(close(g32, r32, t32), "{l} f32: {g32} vs {r32}");
            prop_assert!(close(g16, r16, t16), "{l} f16: {g16} vs {r16}");
            prop_assert!(close(gb, rb, tb), "{l} bf16: {gb} vs {rb}");
        }
    }

    /// Every level's activation quantizer writes the reference's bytes, including for zero
    /// blocks, ties at .5, NaN, infinities, subnormals and values past the f16 range.
    #[test]
    fn activation_quantizers_match_the_reference(nb in 1usize..=40, seed in any::<u64>()) {
        let mut rng = Rng(seed);
        let mut x = rng.blocky(nb * QK);
        let specials = [
            f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.5, -0.5, 1.5, -2.5, 127.0, -0.0,
            1e-40, -1e-45, 1e30, -3e38, 65504.0 * 127.0, 8.5e6,
        ];
        for _ in 0..(rng.next() % 12) {
            let i = (rng.next() as usize) % x.len();
            x[i] = specials[(rng.next() as usize) % specials.len()];
        }
        let want = q8(&x);
        for l in supported_levels() {
            let mut got = vec![bytemuck::Zeroable::zeroed(); nb];
            (kernels_for(*l).unwrap().quantize_q8_0)(&x, &mut got);
            let (g, w): (&[u8], &[u8]) = (bytemuck::cast_slice(&got), bytemuck::cast_slice(&want));
            prop_assert!(g == w, "{l}: {x:?}");
        }
    }

    /// The panel levels' quantizer writes the reference's blocks plus each block's f32 scale
    /// and `-offset · Σ q`.
    #[test]
    fn panel_quantizers_match_the_reference(nb in 1usize..=40, seed in any::<u64>(), q4 in any::<bool>()) {
        let mut rng = Rng(seed);
        let x = rng.blocky(nb * QK);
        let want = q8(&x);
        let offset = if q4 { 8 } else { 128 };
        for l in supported_levels() {
            let Some(p) = kernels_for(*l).unwrap().panel else { continue };
            let mut got = vec![bytemuck::Zeroable::zeroed(); nb];
            let (mut d, mut sum) = (vec![0.0; nb], vec![0; nb]);
            (p.quantize)(&x, &mut got, &mut d, &mut sum, offset);
            let (g, w): (&[u8], &[u8]) = (bytemuck::cast_slice(&got), bytemuck::cast_slice(&want));
            prop_assert!(g == w, "{l}");
            for (b, blk) in want.iter().enumerate() {
                prop_assert_eq!(d[b].to_bits(), blk.d.to_f32().to_bits(), "{} block {}", l, b);
                let s: i32 = blk.qs.iter().map(|&q| q as i32).sum();
                prop_assert_eq!(sum[b], -offset * s, "{} block {}", l, b);
            }
        }
    }

    /// Each level's panel packers lay out exactly what the generic packer does, for full and
    /// partial panels of both weight types.
    #[test]
    fn level_packers_match_the_generic_one(filled_frac in 0usize..=4, nb in 1usize..=20, seed in any::<u64>()) {
        let mut rng = Rng(seed);
        for l in supported_levels() {
            let Some(p) = kernels_for(*l).unwrap().panel else { continue };
            let filled = (p.rows * filled_frac / 4).max(1);
            let wf = rng.blocky(filled * nb * QK);
            let (w4, w8) = (q4(&wf), q8(&wf));
            let (mut want, mut got) = (Panel::default(), Panel::default());
            want.pack_q4_0(p.rows, nb, &w4);
            (p.pack_q4_0)(&mut got, p.rows, nb, &w4);
            prop_assert!(want.qs == got.qs && want.d == got.d && want.offset == got.offset, "{l} q4_0 {filled} rows");
            want.pack_q8_0(p.rows, nb, &w8);
            (p.pack_q8_0)(&mut got, p.rows, nb, &w8);
            prop_assert!(want.qs == got.qs && want.d == got.d && want.offset == got.offset, "{l} q8_0 {filled} rows");
        }
    }

    /// The matmul paths (dot and panel, ragged rows and tokens) of every level against the
    /// scalar dot of each (row, token): bit-identical on x86, within rounding on aarch64.
    #[test]
    fn quantized_matmul_matches_scalar_dots(
        rows in 1usize..=40,
        n_tokens in 1usize..=11,
        nb in 1usize..=67,
        q4_weights in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let mut rng = Rng(seed);
        let cols = nb * QK;
        let wf = rng.blocky(rows * cols);
        let x = rng.blocky(n_tokens * cols);
        let (ty, data): (GgmlType, Vec<u8>) = if q4_weights {
            (GgmlType::Q4_0, bytemuck::cast_slice(&q4(&wf)).to_vec())
        } else {
            (GgmlType::Q8_0, bytemuck::cast_slice(&q8(&wf)).to_vec())
        };
        let m = MatRef { ty, rows, cols, data: &data };
        let mismatch = first_level_mismatch(&m, &x, n_tokens);
        prop_assert!(mismatch.is_none(), "{}", mismatch.unwrap_or_default());
    }
}

/// Dequantized weights × (quantized, for quantized weights) activations in f64.
fn reference(m: &MatRef, x: &[f32], n_tokens: usize) -> (Vec<f64>, Vec<f64>) {
    let quantized = matches!(m.ty, GgmlType::Q4_0 | GgmlType::Q8_0);
    let xs: Vec<f32> = if quantized {
        let mut v = vec![0.0; x.len()];
        quant::dequantize_row_q8_0(&quantize_activations(x, m.cols), &mut v);
        v
    } else {
        x.to_vec()
    };
    let mut y = vec![0.0; m.rows * n_tokens];
    let mut a = vec![0.0; m.rows * n_tokens];
    let mut row = vec![0.0; m.cols];
    for r in 0..m.rows {
        m.row_to_f32(r, &mut row);
        for t in 0..n_tokens {
            let xt = &xs[t * m.cols..(t + 1) * m.cols];
            y[t * m.rows + r] = row.iter().zip(xt).map(|(&w, &v)| w as f64 * v as f64).sum();
            a[t * m.rows + r] = row
                .iter()
                .zip(xt)
                .map(|(&w, &v)| (w as f64 * v as f64).abs())
                .sum();
        }
    }
    (y, a)
}

fn matrix(ty: GgmlType, rows: usize, cols: usize, rng: &mut Rng) -> Vec<u8> {
    let w = rng.blocky(rows * cols);
    match ty {
        GgmlType::F32 => bytemuck::cast_slice(&w).to_vec(),
        GgmlType::F16 => {
            let v: Vec<f16> = w.iter().map(|&v| quant::f32_to_f16(v)).collect();
            bytemuck::cast_slice(&v).to_vec()
        }
        GgmlType::BF16 => {
            let v: Vec<bf16> = w.iter().map(|&v| quant::f32_to_bf16(v)).collect();
            bytemuck::cast_slice(&v).to_vec()
        }
        GgmlType::Q8_0 => bytemuck::cast_slice(&q8(&w)).to_vec(),
        GgmlType::Q4_0 => bytemuck::cast_slice(&q4(&w)).to_vec(),
        _ => unreachable!(),
    }
}

/// Scales of exactly 1 (a block whose largest |x| is 127) make every half an exact tie: each
/// level's quantizers (plain and panel) must round them away from zero as `roundf` does, and
/// the values on either side of them toward the nearer integer, in every position of a
/// sixteen-block group.
#[test]
fn quantizers_round_ties_away_from_zero() {
    let below = |v: f32| f32::from_bits(v.to_bits() - 1); // toward zero, for v != 0
    let mut values = vec![127.0f32, -127.0];
    for k in [0.5f32, 1.5, 2.5, 63.5, 126.5] {
        values.extend([k, -k, below(k), -below(k), k + f32::EPSILON * k]);
    }
    values.extend([0.0, -0.0, 1e-30, -1e-30, f32::from_bits(1), 126.99999]);
    values.resize(32, 3.25);
    // 37 blocks: two whole groups of sixteen and a tail, each block its own rotation.
    let x: Vec<f32> = (0..37 * QK)
        .map(|i| values[(i + i / QK) % QK] * if i / QK % 3 == 2 { -1.0 } else { 1.0 })
        .collect();
    let want = q8(&x);
    for l in supported_levels() {
        let k = kernels_for(*l).unwrap();
        let mut got = vec![bytemuck::Zeroable::zeroed(); want.len()];
        (k.quantize_q8_0)(&x, &mut got);
        let (g, w): (&[u8], &[u8]) = (bytemuck::cast_slice(&got), bytemuck::cast_slice(&want));
        assert!(g == w, "{l}: plain quantizer");
        if let Some(p) = k.panel {
            let (mut d, mut sum) = (vec![0.0; want.len()], vec![0; want.len()]);
            (p.quantize)(&x, &mut got, &mut d, &mut sum, 8);
            let g: &[u8] = bytemuck::cast_slice(&got);
            assert!(g == w, "{l}: panel quantizer");
            for (b, blk) in want.iter().enumerate() {
                let s: i32 = blk.qs.iter().map(|&q| q as i32).sum();
                assert_eq!(sum[b], -8 * s, "{l} block {b}");
            }
        }
    }
    // The reference itself: ties away from zero, neighbours to the nearer integer.
    let first = &want[0];
    assert_eq!(first.d.to_f32(), 1.0);
    let q = |v: f32| {
        first.qs[values
            .iter()
            .position(|&u| u.to_bits() == v.to_bits())
            .unwrap()]
    };
    assert_eq!((q(0.5), q(-0.5), q(2.5), q(-126.5)), (1, -1, 3, -127));
    assert_eq!(
        (q(below(0.5)), q(below(2.5)), q(-below(126.5))),
        (0, 2, -126)
    );
}

const TYPES: [GgmlType; 5] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q8_0,
    GgmlType::Q4_0,
];

#[test]
fn matmul_matches_f64_reference() {
    let mut rng = Rng(7);
    for ty in TYPES {
        for (rows, cols, n_tokens) in [(37, 96, 1), (70, 640, 1), (33, 160, 9), (16, 64, 4)] {
            let data = matrix(ty, rows, cols, &mut rng);
            let m = MatRef {
                ty,
                rows,
                cols,
                data: &data,
            };
            let x = rng.blocky(n_tokens * cols);
            let (want, terms) = reference(&m, &x, n_tokens);
            for l in supported_levels() {
                let mut y = vec![0.0; rows * n_tokens];
                matmul_at(*l, &m, &x, n_tokens, &mut y).unwrap();
                for i in 0..y.len() {
                    let err = (y[i] as f64 - want[i]).abs();
                    assert!(
                        err <= TOL * terms[i] + 1e-30,
                        "{l} {ty} {rows}x{cols}x{n_tokens} [{i}]: {} vs {}",
                        y[i],
                        want[i]
                    );
                }
            }
        }
    }
}

/// Random matrices of the given types and row counts, `cols` wide.
fn matrices(types: &[GgmlType], shapes: &[usize], cols: usize, rng: &mut Rng) -> Vec<Vec<u8>> {
    types
        .iter()
        .zip(shapes)
        .map(|(&ty, &rows)| matrix(ty, rows, cols, rng))
        .collect()
}

/// Views of [`matrices`]' data.
fn mat_refs<'a>(
    types: &[GgmlType],
    shapes: &[usize],
    cols: usize,
    data: &'a [Vec<u8>],
) -> Vec<MatRef<'a>> {
    types
        .iter()
        .zip(shapes)
        .zip(data)
        .map(|((&ty, &rows), data)| MatRef {
            ty,
            rows,
            cols,
            data,
        })
        .collect()
}

/// A produced input gives the bits of the same input stored, at every level, on the panel
/// path (runs of tokens split over tasks when rows are wide) and on the staged one (decoder-sized
/// calls, mixed types).
#[test]
fn produced_input_matches_stored_input() {
    let mut rng = Rng(11);
    for cols in [96, 4096] {
        for n_tokens in [0, 1, 3, 9, 37] {
            let x = rng.blocky(n_tokens * cols);
            for types in [
                [GgmlType::Q4_0; 2],
                [GgmlType::Q8_0; 2],
                [GgmlType::Q4_0, GgmlType::Q8_0],
            ] {
                let shapes = [40, 17];
                let data = matrices(&types, &shapes, cols, &mut rng);
                let ws = mat_refs(&types, &shapes, cols, &data);
                let produce = |t: Range<usize>, out: &mut [f32]| {
                    out.copy_from_slice(&x[t.start * cols..t.end * cols])
                };
                for l in supported_levels() {
                    let k = kernels_for(*l).unwrap();
                    let run = |produced: bool| {
                        let mut ys: Vec<Vec<f32>> = ws
                            .iter()
                            .map(|w| vec![f32::NAN; w.rows * n_tokens])
                            .collect();
                        let mut outs: Vec<&mut [f32]> =
                            ys.iter_mut().map(|y| y.as_mut_slice()).collect();
                        if produced {
                            let mut staging = Vec::new();
                            let input = (&produce as Producer, n_tokens, cols);
                            matmul_many_produced_with(k, &ws, input, &mut staging, &mut outs);
                        } else {
                            matmul_many_with(k, &ws, &x, n_tokens, &mut outs);
                        }
                        ys.concat()
                            .iter()
                            .map(|v| v.to_bits())
                            .collect::<Vec<u32>>()
                    };
                    assert_eq!(
                        run(true),
                        run(false),
                        "{l} {types:?} {n_tokens} tokens × {cols}"
                    );
                }
            }
        }
    }
}

/// Two products combined in their tiles (a gated MLP's gate and up) give the bits of the two
/// products computed whole and combined after, at every level, on the panel path (partial
/// panels, runs of tokens split over tasks when rows are wide) and the staged one.
#[test]
fn paired_products_match_separate_products() {
    let mut rng = Rng(13);
    for cols in [96, 4096] {
        for n_tokens in [0, 1, 3, 9, 37] {
            let x = rng.blocky(n_tokens * cols);
            for ty in [GgmlType::Q4_0, GgmlType::Q8_0, GgmlType::F16] {
                for rows in [40, 17] {
                    let data = matrices(&[ty; 2], &[rows; 2], cols, &mut rng);
                    let ws = mat_refs(&[ty; 2], &[rows; 2], cols, &data);
                    let produce = |t: Range<usize>, out: &mut [f32]| {
                        out.copy_from_slice(&x[t.start * cols..t.end * cols])
                    };
                    for l in supported_levels() {
                        let k = kernels_for(*l).unwrap();
                        let (mut a, mut b) =
                            (vec![0.0; rows * n_tokens], vec![0.0; rows * n_tokens]);
                        matmul_many_with(k, &ws, &x, n_tokens, &mut [&mut a, &mut b]);
                        vec_f32::gelu_gate(&mut a, &b);
                        let mut y = vec![f32::NAN; rows * n_tokens];
                        let mut b_out = vec![f32::NAN; rows * n_tokens];
                        let input = (&produce as Producer, n_tokens, cols);
                        let pair = [&ws[0], &ws[1]];
                        let mut staging = Vec::new();
                        let gate = vec_f32::gelu_gate;
                        matmul_pair_produced_with(
                            k,
                            pair,
                            input,
                            gate,
                            &mut staging,
                            &mut b_out,
                            &mut y,
                        );
                        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>();
                        assert_eq!(
                            bits(&y),
                            bits(&a),
                            "{l} {ty} {rows}×{cols}, {n_tokens} tokens"
                        );
                    }
                }
            }
        }
    }
}

/// Several weights over one quantized input give each weight's own product, bit for bit, on
/// the decoder and the panel paths, including mixed types (no sharing), a weight without rows
/// and a call without tokens.
#[test]
fn matmul_many_matches_matmul() {
    let mut rng = Rng(5);
    let cols = 96;
    for n_tokens in [0, 1, 3, 9, 37] {
        let x = rng.blocky(n_tokens * cols);
        for types in [
            [GgmlType::Q4_0; 3],
            [GgmlType::Q8_0; 3],
            [GgmlType::Q4_0, GgmlType::Q8_0, GgmlType::F16],
        ] {
            let shapes = [40, 0, 17];
            let data = matrices(&types, &shapes, cols, &mut rng);
            let ws = mat_refs(&types, &shapes, cols, &data);
            for l in supported_levels() {
                let k = kernels_for(*l).unwrap();
                let mut ys: Vec<Vec<f32>> = ws
                    .iter()
                    .map(|w| vec![f32::NAN; w.rows * n_tokens])
                    .collect();
                let mut outs: Vec<&mut [f32]> = ys.iter_mut().map(|y| y.as_mut_slice()).collect();
                matmul_many_with(k, &ws, &x, n_tokens, &mut outs);
                for (w, got) in ws.iter().zip(&ys) {
                    let mut want = vec![0.0f32; w.rows * n_tokens];
                    matmul_at(*l, w, &x, n_tokens, &mut want).unwrap();
                    let (g, e): (Vec<u32>, Vec<u32>) = (
                        got.iter().map(|v| v.to_bits()).collect(),
                        want.iter().map(|v| v.to_bits()).collect(),
                    );
                    assert!(g == e, "{l} {types:?} {} rows x {n_tokens}", w.rows);
                }
            }
        }
    }
}

/// Blocks at the edge of the integer ranges, where a kernel that keeps partial sums in i16
/// (`maddubs` summed over a block, the Q8_0 sign trick) would first overflow: Q4_0 nibbles all
/// 15, all 0 or alternating, Q8_0 weights of ±127 and -128, against activation blocks that all
/// quantize to +127 or -127. Every level, decoder-sized and panel-sized calls, bit for bit
/// against the scalar reference (x86) or within rounding (aarch64).
#[test]
fn extreme_blocks_stay_exact() {
    let (rows, nb) = (40, 6);
    let cols = nb * QK;
    let one = quant::f32_to_f16(1.0);
    let q4_pattern = |r: usize, b: usize| match (r + b) % 3 {
        0 => [0xffu8; 16],
        1 => [0x00; 16],
        _ => [0x0f; 16],
    };
    let q8_pattern = |r: usize, b: usize| match (r + 2 * b) % 3 {
        0 => [127i8; 32],
        1 => [-128; 32],
        _ => std::array::from_fn(|i| if i % 2 == 0 { 127 } else { -127 }),
    };
    let q4_rows: Vec<BlockQ4_0> = (0..rows * nb)
        .map(|i| BlockQ4_0 {
            d: one,
            qs: q4_pattern(i / nb, i % nb),
        })
        .collect();
    let q8_rows: Vec<BlockQ8_0> = (0..rows * nb)
        .map(|i| BlockQ8_0 {
            d: one,
            qs: q8_pattern(i / nb, i % nb),
        })
        .collect();
    for n_tokens in [1, 2, PANEL_MIN_TOKENS, 9] {
        // Token t, block b: all +1 or all -1, so each block quantizes to ±127 throughout.
        let x: Vec<f32> = (0..n_tokens * cols)
            .map(|i| {
                if (i / QK + i / cols).is_multiple_of(2) {
                    1.0
                } else {
                    -1.0
                }
            })
            .collect();
        for (ty, data) in [
            (GgmlType::Q4_0, bytemuck::cast_slice::<_, u8>(&q4_rows)),
            (GgmlType::Q8_0, bytemuck::cast_slice(&q8_rows)),
        ] {
            let m = MatRef {
                ty,
                rows,
                cols,
                data,
            };
            if let Some(mismatch) = first_level_mismatch(&m, &x, n_tokens) {
                panic!("{mismatch}");
            }
        }
    }
}

#[test]
fn results_do_not_depend_on_thread_count() {
    let mut rng = Rng(11);
    let pools: Vec<rayon::ThreadPool> = [1, 3]
        .iter()
        .map(|&n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap()
        })
        .collect();
    for ty in TYPES {
        for (rows, cols, n_tokens) in [(300, 128, 1), (133, 96, 13)] {
            let data = matrix(ty, rows, cols, &mut rng);
            let m = MatRef {
                ty,
                rows,
                cols,
                data: &data,
            };
            let x = rng.blocky(n_tokens * cols);
            for l in supported_levels() {
                let ys: Vec<Vec<u32>> = pools
                    .iter()
                    .map(|p| {
                        let mut y = vec![0.0f32; rows * n_tokens];
                        p.install(|| matmul_at(*l, &m, &x, n_tokens, &mut y).unwrap());
                        y.iter().map(|v| v.to_bits()).collect()
                    })
                    .collect();
                assert!(ys[0] == ys[1], "{l} {ty} {rows}x{cols}x{n_tokens}");
            }
        }
    }
}

#[test]
fn dispatched_level_is_supported() {
    assert!(level().is_supported());
    assert!(kernels_for(level()).is_ok());
    for l in KernelLevel::ALL {
        assert_eq!(kernels_for(l).is_ok(), l.is_supported(), "{l}");
        if let Ok(k) = kernels_for(l) {
            // The 8-row Q4_0 kernel takes block sums that only the panel quantizer makes.
            assert!(k.rows_q4_0.is_none() || k.panel.is_some(), "{l}");
        }
    }
}

#[test]
fn ceilings_are_positive() {
    assert!(ceiling::measure_read_bandwidth_with(1 << 20, 2, 1) > 0.0);
}
