//! Fuzz target: parse arbitrary bytes as GGUF, then touch everything a loader would touch.
//!
//! Any panic, overflow, out-of-bounds access, RSS past `-rss_limit_mb` or run past `-timeout`
//! is a bug: hostile files must end in `Err`. The body is shared with the normal test suite
//! (`tests/fuzz_replay.rs`), which replays the seeds and past crashers without libFuzzer.
#![no_main]

#[path = "../../tests/gguf_builder/exercise.rs"]
mod exercise;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    exercise::exercise_gguf(data);
});
