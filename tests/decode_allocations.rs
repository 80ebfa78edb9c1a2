//! A decoder step allocates nothing once its buffers exist: every buffer a step needs (layer
//! activations, attention scores, RoPE angles, quantized activations, key/value room reserved
//! ahead) is kept in the decoder state or the worker threads and reused. Counted by a global
//! allocator over many steps of both families, with 1 and 2 threads and every kernel level.
//! One test in its own binary, so that no other test's allocations are counted.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use t5g::bench::synthetic::SyntheticModel;
use t5g::gguf::GgmlType;
use t5g::kernels;
use t5g::Model;

/// Counts allocations (and growing reallocations) while `COUNTING` is set.
struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `steps` decoder steps after `warm` warm-up steps, the state having
/// reserved room for all of them.
fn allocations_per_run(model: &Model, input: &[u32], warm: usize, steps: usize) -> usize {
    let encoded = model.encode(input).unwrap();
    let mut state = model.start_decoder(&encoded).unwrap();
    state.reserve(warm + steps);
    let mut logits = Vec::new();
    let mut token = model.config().decoder_start_token_id;
    for _ in 0..warm {
        model
            .decode_into(&mut state, &[token], &mut logits)
            .unwrap();
        token = t5g::generate::argmax(&logits);
    }
    ALLOCATIONS.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    for _ in 0..steps {
        model
            .decode_into(&mut state, &[token], &mut logits)
            .unwrap();
        token = t5g::generate::argmax(&logits);
    }
    COUNTING.store(false, Ordering::Relaxed);
    ALLOCATIONS.load(Ordering::Relaxed)
}

#[test]
fn decoder_steps_allocate_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (preset, ty) in [
        ("t5gemma2-270m-270m", GgmlType::Q4_0),
        ("t5gemma-s-s", GgmlType::Q8_0),
    ] {
        let path = dir.path().join(format!("{preset}.gguf"));
        SyntheticModel::new(preset, ty)
            .unwrap()
            .with_layers(2, 3)
            .with_vocab(4096)
            .write(&path)
            .unwrap();
        let model = Model::load(&path).unwrap();
        let input: Vec<u32> = (0..40).map(|i| 7 + (i * 37) % 4000).collect();
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            for level in kernels::supported_levels() {
                kernels::set_level(*level).unwrap();
                let n = pool.install(|| allocations_per_run(&model, &input, 3, 24));
                if n != 0 {
                    failures.push(format!("{preset} {threads} threads {level:?}: {n}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "allocations during 24 decoder steps: {failures:?}"
    );
}
