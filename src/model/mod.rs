//! Models: configuration from GGUF metadata, weights viewed in place, and the forward passes.
//!
//! One file per family ([`t5gemma`], [`t5gemma2`]) holds its weights and its encoder and
//! decoder passes, reading top to bottom; `blocks.rs` holds the sublayers they share.

mod blocks;
pub mod config;
pub mod t5gemma;
pub mod t5gemma2;

pub use config::{Family, LayerKind, ModelConfig, RopeParams, StackConfig};

use crate::error::{Error, Result};
use crate::gguf::{GgmlType, GgufFile};
use crate::kernels::MatRef;
use crate::tokenizer::Tokenizer;
use blocks::StepScratch;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Longest encoder input accepted, in tokens. Real checkpoints are trained on a few thousand;
/// a million is far past any of them and already needs gigabytes of activations.
pub const MAX_INPUT_TOKENS: usize = 1 << 20;

/// The most decoder positions [`generate`](crate::generate::generate) reserves cache room for
/// ahead ([`DecoderState::reserve`]); a longer generation grows its caches as it goes.
pub const MAX_RESERVED_POSITIONS: usize = 1024;

/// How the encoder's attention computes its two matrix products (scores, and the weighted sum
/// of values). The decoder always attends in f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionPrecision {
    /// f32 throughout, as the reference computes.
    F32,
    /// Queries, keys, probabilities and values quantized to int8 per block of 32 (Q8_0) and
    /// multiplied in int8 with f32 block scales — what the linear layers of a quantized file do
    /// with their activations. Masks, soft-caps and the softmax stay f32.
    Int8,
}

impl AttentionPrecision {
    /// The spelling used by `T5G_ATTENTION`, `t5g info` and `bench --json`.
    pub fn name(self) -> &'static str {
        match self {
            AttentionPrecision::F32 => "f32",
            AttentionPrecision::Int8 => "int8",
        }
    }

    /// What a model loads with: `T5G_ATTENTION` (`f32` or `int8`) if set; otherwise int8 for
    /// Q4_0 encoder weights on a CPU whose best kernel level multiplies int8 matrices with a
    /// panel kernel measured faster (AVX-512 VNNI, where it is ~2× faster than f32); f32
    /// otherwise. (Its error is small beside Q4_0's own, but a sizeable share of Q8_0's:
    /// README, Correctness.)
    pub fn for_weights(ty: GgmlType) -> Result<Self> {
        if let Some(chosen) = Self::from_env()? {
            return Ok(chosen);
        }
        Ok(
            if ty == GgmlType::Q4_0 && crate::kernels::q8_products::fast_on_this_cpu() {
                AttentionPrecision::Int8
            } else {
                AttentionPrecision::F32
            },
        )
    }

    /// `T5G_ATTENTION`, if set; an unknown value is an error naming the variable.
    pub fn from_env() -> Result<Option<Self>> {
        match std::env::var("T5G_ATTENTION") {
            Ok(v) if !v.trim().is_empty() => match v.trim() {
                "f32" => Ok(Some(AttentionPrecision::F32)),
                "int8" => Ok(Some(AttentionPrecision::Int8)),
                _ => Err(Error::invalid(format!(
                    "T5G_ATTENTION={v}: unknown attention precision (expected f32 or int8)"
                ))),
            },
            _ => Ok(None),
        }
    }
}

/// Runs `f` on a worker thread of the current rayon pool (at once if this is one). A forward
/// pass runs ~10 parallel loops per layer; started from a thread outside the pool, each of them
/// would wake the pool and then sleep on a futex until it finished — two context switches per
/// matrix product, a fifth of a 270m decode step. Started on a worker, they cost a steal.
fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return f();
    }
    // `join` called from outside the pool runs both closures on a worker and blocks once.
    rayon::join(f, || ()).0
}

/// Runs `f` (on a worker) while every other worker of the pool looks for work without pause.
///
/// Between two parallel loops a rayon worker that finds nothing to steal yields a few dozen
/// times and then sleeps on a futex; the next loop must wake it, which on a virtual machine
/// takes tens of microseconds, and a 270m encode runs ~300 loops. Here each other worker runs a
/// job that steals pending work (`rayon::yield_now`) until `f` returns, as OpenMP runtimes
/// spin-wait between parallel regions: 2–3% of a two-thread encode, measured. The jobs are
/// broadcast without waiting for them, so a worker busy elsewhere delays nothing; one that
/// reaches its job after `f` returned finds the flag set and leaves at once. A spinning job
/// that finds no work for 2 ms returns too: one may start on a thread that is waiting inside
/// another call's pass (concurrent sessions share the pool), which must get its thread back:
/// without the bound, `tests/capi.rs` (four threads on one model) once hung with a session's
/// pass waiting under such a job. The spinning costs
/// the other cores for the duration of `f` only, and a spinning worker yields its core to the
/// OS now and then; pools with one worker or more workers than cores run `f` plainly. The
/// encoder runs under it; decoder steps do not (a step allocates nothing, and the caller's
/// work between steps would run beside spinning cores).
fn with_spinning_workers<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    /// How long a spinning worker looks for work in vain before it goes back to rayon's own
    /// idling: far longer than the gaps between the parallel loops of a pass (microseconds).
    const MAX_IDLE_SPIN: std::time::Duration = std::time::Duration::from_millis(2);
    let threads = rayon::current_num_threads();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // More workers than cores would take turns on them: spinning would only steal the turns.
    if threads < 2 || threads > cores {
        return f();
    }
    let caller = rayon::current_thread_index();
    let finished = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&finished);
    rayon::spawn_broadcast(move |ctx| {
        // The caller's own copy runs when it next looks for work (possibly while `f` waits on
        // a join): spinning there would never end, so it returns.
        if Some(ctx.index()) == caller {
            return;
        }
        let mut idle_rounds = 0u32;
        let mut last_work = std::time::Instant::now();
        while !flag.load(Ordering::Acquire) {
            if rayon::yield_now() == Some(rayon::Yield::Executed) {
                idle_rounds = 0;
                last_work = std::time::Instant::now();
                continue;
            }
            idle_rounds += 1;
            if !idle_rounds.is_multiple_of(256) {
                std::hint::spin_loop();
                continue;
            }
            // A job like this one can start inside a wait of a thread with work of its own
            // (a join of another session's pass): idle that long, it hands the thread back.
            if last_work.elapsed() > MAX_IDLE_SPIN {
                break;
            }
            // Lets another process's thread run on this core if one is waiting (a system
            // call of well under a microsecond when none is).
            std::thread::yield_now();
        }
    });
    /// Stops the spinning when `f` returns or unwinds.
    struct Finish(Arc<AtomicBool>);
    impl Drop for Finish {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Release);
        }
    }
    let _finish = Finish(finished);
    f()
}

/// Refuses an encoder input longer than [`MAX_INPUT_TOKENS`].
pub fn check_input_length(n_input: usize) -> Result<()> {
    if n_input > MAX_INPUT_TOKENS {
        return Err(Error::invalid(format!(
            "the encoder input has {n_input} tokens; at most {MAX_INPUT_TOKENS} are accepted \
             (use fewer input tokens or --max-input-tokens)"
        )));
    }
    Ok(())
}

/// What the system can still give us: `MemAvailable` from `/proc/meminfo`, in bytes. `None`
/// where that is not known (not Linux, or an unreadable file); the check is then skipped.
/// `T5G_MEM_AVAILABLE` (bytes) overrides it, for tests.
pub fn available_memory() -> Option<u64> {
    if let Some(v) = std::env::var_os("T5G_MEM_AVAILABLE") {
        return v.to_str().and_then(|s| s.trim().parse().ok());
    }
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_available(&text)
}

/// `MemAvailable:  123456 kB` → bytes.
fn parse_mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

fn too_big_message(needed: u128, available: u64) -> String {
    let gib = |b: f64| b / (1u64 << 30) as f64;
    format!(
        "this request needs ~{:.2} GiB for activations and caches, {:.2} GiB available; \
         use fewer input tokens, --max-input-tokens, fewer beams or -n",
        gib(needed as f64),
        gib(available as f64)
    )
}

/// A loaded model: the mapped file, its configuration, and handles to every weight.
///
/// `Model` is `Send + Sync`: one instance serves any number of concurrent [`DecoderState`]s.
pub struct Model {
    file: GgufFile,
    config: ModelConfig,
    /// Rebuilt from the file's tokenizer metadata; `None` for ids-only files.
    tokenizer: Option<Tokenizer>,
    weights: FamilyWeights,
    cross_kv_computations: AtomicUsize,
    /// Bytes of decoder weights copied to huge pages at load (0: read from the file map).
    huge_page_bytes: usize,
    encoder_attention: AttentionPrecision,
    /// The last encoder pass's activation buffers, for the next one (see [`Model::encode`]).
    encoder_scratch: Mutex<Option<blocks::Scratch>>,
}

/// The most bytes of encoder activation buffers a model keeps between passes (a 512-token
/// pass of the 2b-2b model uses ~70 MB; a longer input's buffers are freed after it).
const KEEP_ENCODER_SCRATCH_BYTES: usize = 96 << 20;

enum FamilyWeights {
    T5Gemma(t5gemma::Weights),
    T5Gemma2(t5gemma2::Weights),
}

impl FamilyWeights {
    /// The weights one decoder step reads.
    fn decode_weights(&self) -> Vec<&blocks::Linear> {
        match self {
            FamilyWeights::T5Gemma(w) => w.decode_weights(),
            FamilyWeights::T5Gemma2(w) => w.decode_weights(),
        }
    }
}

/// The encoder's final hidden states for one input.
#[derive(Clone, Debug)]
pub struct EncoderOutput {
    /// `n_tokens × width` rows, after the encoder's final norm.
    pub hidden: Vec<f32>,
    /// Input tokens.
    pub n_tokens: usize,
    /// Encoder width.
    pub width: usize,
}

/// Per-request decoder state: position, self-attention caches, and the cross-attention keys
/// and values computed once from the encoder output.
#[derive(Clone, Debug)]
pub struct DecoderState {
    pos: usize,
    layers: Vec<LayerCache>,
    /// The step's buffers, reused by the next step.
    scratch: StepScratch,
}

impl DecoderState {
    /// Decoder tokens consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Makes room in the self-attention caches for `positions` more decoder tokens (at most
    /// what a sliding layer ever holds), so that the steps that fill it allocate nothing.
    /// [`generate`](crate::generate::generate) reserves its token budget, up to
    /// [`MAX_RESERVED_POSITIONS`].
    pub fn reserve(&mut self, positions: usize) {
        for layer in &mut self.layers {
            layer.reserve(positions);
        }
    }

    /// Bytes held by the caches (cross-attention keys and values counted in full, though
    /// clones of a state share them).
    pub fn cache_bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|l| 4 * (l.k.capacity() + l.v.capacity() + l.cross_k.len() + l.cross_v.len()))
            .sum()
    }
}

/// One decoder layer's caches.
#[derive(Clone, Debug)]
pub(crate) struct LayerCache {
    /// `Some(W)` on sliding layers: only keys with `pos - key_pos < W` are ever read.
    window: Option<usize>,
    /// Position of the first key kept.
    start: usize,
    kv_dim: usize,
    k: Vec<f32>,
    v: Vec<f32>,
    /// Shared between clones of a state (beam search), never recomputed. (`Arc<Vec>`, not
    /// `Arc<[f32]>`: converting would copy every layer's keys and values into new pages.)
    cross_k: Arc<Vec<f32>>,
    cross_v: Arc<Vec<f32>>,
    n_cross: usize,
}

impl LayerCache {
    pub(crate) fn new(
        window: Option<usize>,
        kv_dim: usize,
        cross_k: Vec<f32>,
        cross_v: Vec<f32>,
        n_cross: usize,
    ) -> Self {
        LayerCache {
            window,
            start: 0,
            kv_dim,
            k: Vec::new(),
            v: Vec::new(),
            cross_k: Arc::new(cross_k),
            cross_v: Arc::new(cross_v),
            n_cross,
        }
    }

    /// Keys held.
    pub(crate) fn len(&self) -> usize {
        self.k.len() / self.kv_dim
    }

    /// See [`DecoderState::reserve`]. A sliding layer trims once it holds more than twice its
    /// window, so it never needs room for more than `2W + 1` keys before a call's own.
    fn reserve(&mut self, positions: usize) {
        let held = self.len();
        let most = match self.window {
            Some(w) => (held + positions).min(2 * w + 1),
            None => held + positions,
        };
        let more = most.saturating_sub(held) * self.kv_dim;
        self.k.reserve(more);
        self.v.reserve(more);
    }

    /// Appends the keys and values of new positions.
    pub(crate) fn append(&mut self, k: &[f32], v: &[f32]) {
        self.k.extend_from_slice(k);
        self.v.extend_from_slice(v);
    }

    /// The cached keys a query at `q_pos` may read: causal, and within the window on sliding
    /// layers (`q_pos - key_pos < W`).
    pub(crate) fn visible(&self, q_pos: usize) -> Range<usize> {
        let first = match self.window {
            Some(w) => (q_pos + 1).saturating_sub(w).max(self.start),
            None => self.start,
        };
        (first - self.start)..(q_pos + 1 - self.start).min(self.len())
    }

    /// Drops keys no future query can see. Trimming waits until twice the window is held, so
    /// the copy it costs is amortized to O(1) per token.
    pub(crate) fn trim(&mut self, next_pos: usize) {
        let Some(w) = self.window else { return };
        if self.len() <= 2 * w {
            return;
        }
        let first_needed = (next_pos + 1).saturating_sub(w);
        let drop = first_needed - self.start;
        self.k.drain(..drop * self.kv_dim);
        self.v.drain(..drop * self.kv_dim);
        self.start = first_needed;
    }
}

impl Model {
    /// Memory-maps and validates a model file; see [`from_gguf`](Self::from_gguf) for the one
    /// copy it may make.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Self::from_gguf(GgufFile::open(path)?)
    }

    /// Builds a model over an already opened file. The weights every decoder step reads are
    /// copied to huge pages where the system has them and at least twice the file's size is
    /// available (see [`GgufFile::copy_to_huge_pages`]); everything else stays in the file map.
    pub fn from_gguf(mut file: GgufFile) -> Result<Self> {
        let config = ModelConfig::from_gguf(&file)?;
        let weights = match config.family {
            Family::T5Gemma => FamilyWeights::T5Gemma(t5gemma::Weights::load(&file, &config)?),
            Family::T5Gemma2 => FamilyWeights::T5Gemma2(t5gemma2::Weights::load(&file, &config)?),
        };
        let tokenizer = match file.get("tokenizer.ggml.tokens") {
            Some(_) => {
                let tokenizer = Tokenizer::from_gguf(&file)?;
                if tokenizer.vocab_size() > config.vocab_size {
                    return Err(Error::metadata(
                        "tokenizer.ggml.tokens",
                        format!(
                            "{} pieces for an embedding of {} rows",
                            tokenizer.vocab_size(),
                            config.vocab_size
                        ),
                    ));
                }
                Some(tokenizer)
            }
            None => None,
        };
        // Only with room to spare: the copy is anonymous memory, which unlike file pages the
        // system cannot drop and re-read under memory pressure.
        let room = available_memory().is_some_and(|a| a / 2 >= file.file_size() as u64);
        let ranges: Vec<_> = weights.decode_weights().iter().map(|l| l.range()).collect();
        let huge_page_bytes = if room {
            file.copy_to_huge_pages(&ranges)
        } else {
            0
        };
        let mut model = Model {
            file,
            config,
            tokenizer,
            weights,
            cross_kv_computations: AtomicUsize::new(0),
            huge_page_bytes,
            encoder_attention: AttentionPrecision::F32,
            encoder_scratch: Mutex::new(None),
        };
        // The first layer's query projection stands for the encoder's weights.
        let matmuls = model.encoder_matmuls();
        let encoder_ty = matmuls.first().and_then(|g| g.first()).map(|m| m.ty);
        let encoder_ty = encoder_ty.unwrap_or(GgmlType::F32);
        model.encoder_attention = AttentionPrecision::for_weights(encoder_ty)?;
        Ok(model)
    }

    /// How the encoder computes attention (see [`AttentionPrecision::for_weights`] for the
    /// default).
    pub fn encoder_attention(&self) -> AttentionPrecision {
        self.encoder_attention
    }

    /// Chooses how the encoder computes attention from now on.
    pub fn set_encoder_attention(&mut self, precision: AttentionPrecision) {
        self.encoder_attention = precision;
    }

    /// Hyperparameters.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The tokenizer stored in the file, if it has one.
    pub fn tokenizer(&self) -> Option<&Tokenizer> {
        self.tokenizer.as_ref()
    }

    /// The tokenizer, or an error saying the file was converted without one.
    pub fn require_tokenizer(&self) -> Result<&Tokenizer> {
        self.tokenizer.as_ref().ok_or_else(|| {
            Error::invalid(format!(
                "{} has no tokenizer (it was converted without tokenizer.model); pass token ids instead",
                self.file.path().display()
            ))
        })
    }

    /// The underlying file (metadata, tokenizer keys, tensor list).
    pub fn file(&self) -> &GgufFile {
        &self.file
    }

    /// Bytes of activations and caches one request needs: encoder activations for
    /// `n_input` tokens (hidden, q/k/v and FFN widths, plus one row of attention scores per
    /// worker thread), the cross-attention keys and values of every decoder layer, and the
    /// self-attention caches of `beams` hypotheses of `max_new_tokens` (sliding layers keep at
    /// most `2 × window` positions), with their logits. An estimate, not an exact count.
    pub fn request_bytes(&self, n_input: usize, max_new_tokens: usize, beams: usize) -> u128 {
        let (enc, dec) = (&self.config.encoder, &self.config.decoder);
        let n = n_input as u128;
        let threads = rayon::current_num_threads().max(1) as u128;
        let enc_width = 2 * enc.hidden + enc.q_dim() + 2 * enc.kv_dim() + 2 * enc.ffn;
        let encoder = n * enc_width as u128 * 4 + threads * n * 4;
        let cross = dec.n_layers as u128 * n * dec.kv_dim() as u128 * 2 * 4;
        let positions = max_new_tokens as u128 + 1;
        let self_kv: u128 = (0..dec.n_layers)
            .map(|l| {
                let kept = match dec.layer_kinds.get(l) {
                    Some(LayerKind::Sliding) => positions.min(2 * dec.sliding_window as u128),
                    _ => positions,
                };
                kept * dec.kv_dim() as u128 * 2 * 4
            })
            .fold(0u128, u128::saturating_add);
        let logits = self.config.vocab_size as u128 * 4;
        // Saturating: absurd requests must give a huge figure, not an overflow.
        (beams.max(1) as u128)
            .saturating_mul(self_kv.saturating_add(logits))
            .saturating_add(encoder + cross)
    }

    /// Refuses, before any work, a request whose [`request_bytes`](Self::request_bytes)
    /// exceed the memory the system has available (`MemAvailable` on Linux; elsewhere no
    /// check), naming both figures and what to reduce.
    pub fn check_request(&self, n_input: usize, max_new_tokens: usize, beams: usize) -> Result<()> {
        check_input_length(n_input)?;
        let needed = self.request_bytes(n_input, max_new_tokens, beams);
        match available_memory() {
            Some(available) if needed > u128::from(available) => {
                Err(Error::invalid(too_big_message(needed, available)))
            }
            _ => Ok(()),
        }
    }

    /// Runs the encoder over a whole input at once.
    pub fn encode(&self, ids: &[u32]) -> Result<EncoderOutput> {
        if ids.is_empty() {
            return Err(Error::invalid("the encoder input is empty"));
        }
        self.check_request(ids.len(), 0, 0)?;
        // The previous pass's buffers, if no other pass holds them: a fresh pass faults its
        // megabytes in again as zeroed pages (half the page faults of a 20-pass `t5g bench`,
        // ~1.5% of its profile), which repeated inputs (map-reduce summaries, servers) need
        // not pay.
        let mut scratch = self
            .encoder_scratch
            .lock()
            .ok()
            .and_then(|mut kept| kept.take())
            .unwrap_or_default();
        let (file, cfg, precision) = (&self.file, &self.config, self.encoder_attention);
        let hidden = on_pool(|| {
            with_spinning_workers(|| match &self.weights {
                FamilyWeights::T5Gemma(w) => {
                    t5gemma::encode(file, cfg, w, ids, precision, &mut scratch)
                }
                FamilyWeights::T5Gemma2(w) => {
                    t5gemma2::encode(file, cfg, w, ids, precision, &mut scratch)
                }
            })
        });
        if scratch.heap_bytes() <= KEEP_ENCODER_SCRATCH_BYTES {
            if let Ok(mut kept) = self.encoder_scratch.lock() {
                *kept = Some(scratch);
            }
        }
        let hidden = hidden?;
        Ok(EncoderOutput {
            hidden,
            n_tokens: ids.len(),
            width: self.config.encoder.hidden,
        })
    }

    /// Prepares a decoder for one encoded input: computes every layer's cross-attention keys
    /// and values once; they are reused by every step.
    pub fn start_decoder(&self, encoded: &EncoderOutput) -> Result<DecoderState> {
        if encoded.width != self.config.encoder.hidden
            || encoded.hidden.len() != encoded.n_tokens * encoded.width
        {
            return Err(Error::invalid("encoder output does not match this model"));
        }
        self.cross_kv_computations.fetch_add(1, Ordering::Relaxed);
        let layers = on_pool(|| match &self.weights {
            FamilyWeights::T5Gemma(w) => {
                t5gemma::cross_caches(&self.file, &self.config, w, encoded)
            }
            FamilyWeights::T5Gemma2(w) => {
                t5gemma2::cross_caches(&self.file, &self.config, w, encoded)
            }
        });
        Ok(DecoderState {
            pos: 0,
            layers,
            scratch: StepScratch::default(),
        })
    }

    /// Feeds `tokens` to the decoder (one at a time when generating, or a whole teacher-forced
    /// sequence at once) and returns their logits, `tokens.len() × vocab`.
    pub fn decode(&self, state: &mut DecoderState, tokens: &[u32]) -> Result<Vec<f32>> {
        let mut logits = Vec::new();
        self.decode_into(state, tokens, &mut logits)?;
        Ok(logits)
    }

    /// [`decode`](Self::decode) into `logits` (resized to `tokens.len() × vocab`), reusing its
    /// allocation: a generation loop then does not fault in a fresh megabyte of logits per token.
    pub fn decode_into(
        &self,
        state: &mut DecoderState,
        tokens: &[u32],
        logits: &mut Vec<f32>,
    ) -> Result<()> {
        if tokens.is_empty() {
            logits.clear();
            return Ok(());
        }
        on_pool(|| match &self.weights {
            FamilyWeights::T5Gemma(w) => {
                t5gemma::decode(&self.file, &self.config, w, state, tokens, logits)
            }
            FamilyWeights::T5Gemma2(w) => {
                t5gemma2::decode(&self.file, &self.config, w, state, tokens, logits)
            }
        })?;
        // A fold rather than `any`, so the check vectorizes (no early exit).
        if logits.iter().fold(false, |nan, x| nan | x.is_nan()) {
            // NaN/Inf weights (a corrupt or hostile file) poison every later step; say so
            // instead of printing garbage.
            return Err(Error::format(
                self.file.path(),
                "the model produced NaN logits: its weights are corrupt (check with `t5g info --verify`)",
            ));
        }
        state.pos += tokens.len();
        for layer in &mut state.layers {
            layer.trim(state.pos);
        }
        Ok(())
    }

    /// How many times cross-attention keys/values were computed (once per [`start_decoder`](Self::start_decoder)).
    pub fn cross_kv_computations(&self) -> usize {
        self.cross_kv_computations.load(Ordering::Relaxed)
    }

    /// Bytes of weights read for one decoder step (every decoder matrix and the LM head).
    pub fn decode_weight_bytes_per_token(&self) -> usize {
        let weights = self.weights.decode_weights();
        weights.iter().map(|l| l.n_bytes()).sum()
    }

    /// Bytes of the decoder's weights that were copied to huge pages at load (0 where they
    /// are read from the file map: in-memory files, no transparent huge pages, less available
    /// memory than twice the file, or `T5G_HUGE_PAGES=0`).
    pub fn huge_page_bytes(&self) -> usize {
        self.huge_page_bytes
    }

    /// The encoder's matrix products, grouped as the forward pass calls them (q/k/v, output,
    /// gate/up, down per layer): `t5g bench` times them apart from attention.
    pub fn encoder_matmuls(&self) -> Vec<Vec<MatRef<'_>>> {
        match &self.weights {
            FamilyWeights::T5Gemma(w) => w.encoder_matmuls(&self.file),
            FamilyWeights::T5Gemma2(w) => w.encoder_matmuls(&self.file),
        }
    }

    /// Scans every quantized block scale for NaN/Inf (reads the whole file once).
    pub fn verify_weights(&self) -> Result<()> {
        crate::quant::validate_all_quantized_scales(&self.file)
    }

    /// Count of tensors per storage type.
    pub fn tensor_types(&self) -> Vec<(GgmlType, usize)> {
        let mut counts: Vec<(GgmlType, usize)> = Vec::new();
        for t in self.file.tensors() {
            match counts.iter_mut().find(|(ty, _)| *ty == t.ty) {
                Some(c) => c.1 += 1,
                None => counts.push((t.ty, 1)),
            }
        }
        counts
    }
}

#[cfg(test)]
mod resource_tests {
    use super::*;

    #[test]
    fn mem_available_is_read_in_bytes() {
        let text = "MemTotal:       16000000 kB\nMemFree: 1 kB\nMemAvailable:    2048 kB\n";
        assert_eq!(parse_mem_available(text), Some(2 << 20));
        assert_eq!(parse_mem_available("MemTotal: 5 kB\n"), None);
    }

    #[test]
    fn inputs_past_a_million_tokens_are_refused() {
        assert!(check_input_length(MAX_INPUT_TOKENS).is_ok());
        let err = check_input_length(MAX_INPUT_TOKENS + 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("1048577 tokens"), "{err}");
    }

    #[test]
    fn the_message_names_both_figures() {
        let msg = too_big_message(3 << 30, 1 << 30);
        assert!(
            msg.contains("~3.00 GiB") && msg.contains("1.00 GiB available"),
            "{msg}"
        );
        assert!(msg.contains("fewer beams or -n"), "{msg}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CPU time this thread has used, in clock ticks (utime + stime of /proc/thread-self/stat).
    #[cfg(target_os = "linux")]
    fn thread_cpu_ticks() -> u64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("procfs");
        // The command name (field 2) may hold spaces; the fields after its ')' are fixed.
        let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
        let fields: Vec<&str> = rest.split(' ').collect();
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    #[test]
    fn spinning_workers_help_run_concurrently_and_stop_even_when_the_work_panics() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let sum = pool.install(|| {
            with_spinning_workers(|| {
                use rayon::prelude::*;
                (0..10_000u64).into_par_iter().map(|i| i * i).sum::<u64>()
            })
        });
        assert_eq!(sum, (0..10_000u64).map(|i| i * i).sum::<u64>());
        // Several callers at once, each with its own spinning jobs: all finish, all right.
        let sums: Vec<u64> = std::thread::scope(|scope| {
            let calls: Vec<_> = (0..4u64)
                .map(|c| {
                    let pool = &pool;
                    scope.spawn(move || {
                        pool.install(|| {
                            with_spinning_workers(|| {
                                use rayon::prelude::*;
                                (0..100_000u64).into_par_iter().map(|i| i ^ c).sum::<u64>()
                            })
                        })
                    })
                })
                .collect();
            calls.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (c, s) in (0..4u64).zip(sums) {
            assert_eq!(s, (0..100_000u64).map(|i| i ^ c).sum::<u64>());
        }
        let unwound = pool.install(|| {
            std::panic::catch_unwind(|| with_spinning_workers(|| panic!("a failing forward pass")))
        });
        assert!(unwound.is_err());
        // Whichever worker did not run the closures must now be idle, not spinning.
        #[cfg(target_os = "linux")]
        {
            let ticks = || {
                let t = std::sync::Mutex::new(Vec::new());
                pool.broadcast(|_| t.lock().unwrap().push(thread_cpu_ticks()));
                t.into_inner().unwrap().iter().sum::<u64>()
            };
            let before = ticks();
            std::thread::sleep(std::time::Duration::from_millis(400));
            let spent = ticks() - before;
            // A spinning worker would use ~40 ticks (100 per second) in that time.
            assert!(spent < 15, "workers used {spent} ticks while idle");
        }
    }
}
