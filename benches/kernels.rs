//! Kernel throughput per level, against the machine's ceilings.
//!
//! - matvec (decoder step, 1 token): GB/s of weight bytes read, for 2048×2048 and the
//!   262144×640 LM-head shape, q4_0 and q8_0, with the global pool and with 1 thread.
//! - encoder matmul (512 tokens × 640 → 2048): throughput in elements = 2·M·N·K operations,
//!   so criterion's "Gelem/s" reads as GOPS.
//! - element-wise work of the encoder, on one thread: softmax of attention-score rows, the
//!   GELU gate and activation quantization (elements per second).
//! - ceilings (printed once): memory read bandwidth (1 GB, 1 and 2 threads) and int8 MAC peak
//!   per level, from `t5g::kernels::ceiling`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use half::f16;
use std::time::Duration;
use t5g::gguf::GgmlType;
use t5g::kernels::{ceiling, matmul_at, supported_levels, MatRef};
use t5g::quant::{BlockQ4_0, BlockQ8_0};

fn weights(ty: GgmlType, rows: usize, cols: usize) -> Vec<u8> {
    let nb = rows * cols / 32;
    let mut s = 0x1234_5678_u32;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        s
    };
    let d = f16::from_f32(0.01);
    match ty {
        GgmlType::Q4_0 => {
            let v: Vec<BlockQ4_0> = (0..nb)
                .map(|_| BlockQ4_0 {
                    d,
                    qs: std::array::from_fn(|_| next() as u8),
                })
                .collect();
            bytemuck::cast_slice(&v).to_vec()
        }
        GgmlType::Q8_0 => {
            let v: Vec<BlockQ8_0> = (0..nb)
                .map(|_| BlockQ8_0 {
                    d,
                    qs: std::array::from_fn(|_| (next() % 255) as i8),
                })
                .collect();
            bytemuck::cast_slice(&v).to_vec()
        }
        GgmlType::F16 => {
            let v: Vec<f16> = (0..rows * cols)
                .map(|_| f16::from_f32((next() % 1000) as f32 * 1e-3))
                .collect();
            bytemuck::cast_slice(&v).to_vec()
        }
        _ => unreachable!(),
    }
}

fn activations(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.5)
        .collect()
}

fn ceilings(_c: &mut Criterion) {
    let bw1 = ceiling::measure_read_bandwidth(1);
    let bw2 = ceiling::measure_read_bandwidth(2);
    eprintln!("ceiling: read bandwidth 1 GB: {bw1:.1} GB/s (1 thread), {bw2:.1} GB/s (2 threads)");
    for &l in supported_levels() {
        let p1 = ceiling::measure_int8_peak_at(l, 1);
        let p2 = ceiling::measure_int8_peak_at(l, 2);
        eprintln!("ceiling: int8 peak {l}: {p1:.0} GOPS (1 thread), {p2:.0} GOPS (2 threads)");
    }
}

fn matvec(c: &mut Criterion) {
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let mut g = c.benchmark_group("matvec");
    for (ty, rows, cols) in [
        (GgmlType::Q4_0, 2048, 2048),
        (GgmlType::Q8_0, 2048, 2048),
        (GgmlType::F16, 2048, 2048),
        (GgmlType::Q4_0, 262_144, 640),
        (GgmlType::Q8_0, 262_144, 640),
    ] {
        let data = weights(ty, rows, cols);
        let w = MatRef {
            ty,
            rows,
            cols,
            data: &data,
        };
        let x = activations(cols);
        let mut y = vec![0.0; rows];
        g.throughput(Throughput::Bytes(data.len() as u64));
        for &l in supported_levels() {
            let name = format!("{}_{rows}x{cols}", ty.name());
            g.bench_function(BenchmarkId::new(name.clone(), l.name()), |b| {
                b.iter(|| matmul_at(l, &w, &x, 1, &mut y).unwrap())
            });
            g.bench_function(BenchmarkId::new(name + "_1thread", l.name()), |b| {
                one.install(|| b.iter(|| matmul_at(l, &w, &x, 1, &mut y).unwrap()))
            });
        }
    }
    g.finish();
}

fn encoder(c: &mut Criterion) {
    let (n, k, m) = (512, 640, 2048);
    let mut g = c.benchmark_group("encoder_512x640x2048");
    g.throughput(Throughput::Elements((2 * n * k * m) as u64));
    let x = activations(n * k);
    let mut y = vec![0.0; n * m];
    for ty in [GgmlType::Q4_0, GgmlType::Q8_0] {
        let data = weights(ty, m, k);
        let w = MatRef {
            ty,
            rows: m,
            cols: k,
            data: &data,
        };
        for &l in supported_levels() {
            g.bench_function(BenchmarkId::new(ty.name(), l.name()), |b| {
                b.iter(|| matmul_at(l, &w, &x, n, &mut y).unwrap())
            });
        }
    }
    g.finish();
}

fn elementwise(c: &mut Criterion) {
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let mut g = c.benchmark_group("elementwise");
    // 64 score rows of 415 keys (the 270m encoder's mean visible width), about e^±8 apart.
    let scores: Vec<f32> = activations(64 * 415).iter().map(|v| v * 16.0).collect();
    let mut rows = scores.clone();
    g.throughput(Throughput::Elements(scores.len() as u64));
    g.bench_function("softmax_64x415", |b| {
        b.iter(|| {
            rows.copy_from_slice(&scores);
            rows.chunks_exact_mut(415)
                .for_each(t5g::ops::softmax_inplace);
        })
    });
    let (gate0, up) = (activations(64 * 2048), activations(64 * 2048));
    let mut gate = gate0.clone();
    g.throughput(Throughput::Elements(gate.len() as u64));
    g.bench_function("gelu_gate_64x2048", |b| {
        one.install(|| {
            b.iter(|| {
                gate.copy_from_slice(&gate0);
                t5g::ops::gelu_gate_inplace(&mut gate, &up);
            })
        })
    });
    let x = activations(64 * 2048);
    g.bench_function("quantize_q8_0_64x2048", |b| {
        one.install(|| b.iter(|| t5g::kernels::quantize_activations(&x, 2048)))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(10);
    targets = ceilings, matvec, encoder, elementwise
}
criterion_main!(benches);
