//! Fuzz target: parse arbitrary bytes as a SentencePiece `tokenizer.model` protobuf, then
//! touch every piece and re-encode it.
//!
//! Any panic, overflow, RSS past `-rss_limit_mb` or run past `-timeout` is a bug. The body is
//! shared with `tests/fuzz_replay.rs`.
#![no_main]

#[path = "../../tests/gguf_builder/exercise_text.rs"]
mod exercise_text;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    exercise_text::exercise_sentencepiece(data);
});
