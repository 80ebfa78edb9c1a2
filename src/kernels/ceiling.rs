//! The machine's ceilings that kernel figures are compared with: memory read bandwidth and int8
//! multiply-accumulate peak. Used by `t5g bench` and the criterion benches.

use super::KernelLevel;
use std::time::Instant;

/// Streams `bytes` (rounded down to 64) with `threads` threads, summing 64-bit words, and
/// returns the median of `reps` passes in GB/s (10^9 bytes per second). The buffer is written
/// once first so that every page is backed by memory. The median, not the best: on a shared
/// virtual machine single passes were seen 70% above the usual figure.
pub fn measure_read_bandwidth_with(bytes: usize, threads: usize, reps: usize) -> f64 {
    let threads = threads.max(1);
    let words = bytes / 8 / (8 * threads) * (8 * threads);
    let buf: Vec<u64> = (0..words as u64).collect();
    let per = words / threads;
    let mut times = Vec::new();
    let mut sink = 0u64;
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        sink ^= std::thread::scope(|s| {
            let handles: Vec<_> = buf
                .chunks(per)
                .map(|part| s.spawn(move || sum_words(part)))
                .collect();
            handles.into_iter().fold(0, |a, h| a ^ h.join().unwrap())
        });
        times.push(t.elapsed().as_secs_f64());
    }
    std::hint::black_box(sink);
    (words * 8) as f64 / median(&mut times) / 1e9
}

/// The middle value (the upper one of the two middle values for an even count).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Eight independent lanes so the compiler vectorizes and the adds do not serialize.
fn sum_words(part: &[u64]) -> u64 {
    let mut acc = [0u64; 8];
    for c in part.chunks_exact(8) {
        for (a, v) in acc.iter_mut().zip(c) {
            *a = a.wrapping_add(*v);
        }
    }
    acc.iter().fold(0, |a, v| a.wrapping_add(*v))
}

/// Read bandwidth over a 1 GB buffer with `threads` threads, GB/s (median of 5 passes).
pub fn measure_read_bandwidth(threads: usize) -> f64 {
    measure_read_bandwidth_with(1 << 30, threads, 5)
}

/// Peak int8 multiply-accumulates of `level`'s widest int8 instruction (`vpdpbusd`; `maddubs`
/// accumulating its pair sums in i16, as the panel kernels do within a block; `sdot`; `smull`),
/// in GOPS (one multiply-add = 2 operations; median of 5 runs), with `threads` threads each
/// running a register-resident loop.
pub fn measure_int8_peak_at(level: KernelLevel, threads: usize) -> f64 {
    let threads = threads.max(1);
    let iters = 20_000_000u64;
    let mut times = Vec::new();
    let mut macs = 0u64;
    for _ in 0..5 {
        let t = Instant::now();
        macs = std::thread::scope(|s| {
            let hs: Vec<_> = (0..threads)
                .map(|_| s.spawn(move || int8_loop(level, iters)))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        times.push(t.elapsed().as_secs_f64());
    }
    2.0 * macs as f64 / median(&mut times) / 1e9
}

/// [`measure_int8_peak_at`] at the current [`super::level`] with 1 thread.
pub fn measure_int8_peak() -> f64 {
    measure_int8_peak_at(super::level(), 1)
}

/// Runs the register-resident MAC loop; returns the number of MACs done.
fn int8_loop(level: KernelLevel, iters: u64) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if let Some(m) = super::x86::int8_peak_loop(level, iters) {
        return m;
    }
    #[cfg(target_arch = "aarch64")]
    if let Some(m) = super::aarch64::int8_peak_loop(level, iters) {
        return m;
    }
    let _ = level;
    // Scalar: 8 independent i32 MAC chains.
    let n = iters / 16;
    let mut acc = [0i32; 8];
    let a = std::hint::black_box([3i8, -5, 7, 11, -13, 17, 19, -23]);
    for _ in 0..n {
        for (x, &v) in acc.iter_mut().zip(&a) {
            *x = x.wrapping_add(v as i32 * 5);
        }
        std::hint::black_box(&mut acc);
    }
    n * 8
}
