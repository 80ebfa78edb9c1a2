//! Fuzz target: the tokenizer (tiny BPE vocabulary and Gemma 3's 262k) on arbitrary text and
//! arbitrary ids: `decode(encode(x)) == x`, ids in range, stream decoding equal to decoding,
//! out-of-range ids refused cleanly.
//!
//! Any panic, RSS past `-rss_limit_mb` or run past `-timeout` is a bug. The body is shared
//! with `tests/fuzz_replay.rs`.
#![no_main]

#[path = "../../tests/gguf_builder/exercise_text.rs"]
mod exercise_text;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    exercise_text::exercise_tokenizer(data);
});
