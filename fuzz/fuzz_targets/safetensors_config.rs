//! Fuzz target: the converter's readers — `config.json` in memory, and (for inputs holding
//! several files) a whole checkpoint directory converted end to end: safetensors headers,
//! the shard index, `generation_config.json`, `tokenizer.model`, `tokenizer_config.json`.
//!
//! Any panic, overflow, RSS past `-rss_limit_mb` or run past `-timeout` is a bug: hostile
//! checkpoints must end in `Err`. The body is shared with `tests/fuzz_replay.rs`.
#![no_main]

#[path = "../../tests/gguf_builder/exercise.rs"]
mod exercise;
#[path = "../../tests/gguf_builder/exercise_convert.rs"]
mod exercise_convert;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    exercise_convert::exercise_convert(data);
});
