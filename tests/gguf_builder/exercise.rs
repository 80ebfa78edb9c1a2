//! What the `gguf_reader` fuzz target does with each input, shared with the test that replays
//! the seeds and past crashers (the fuzz target includes this file by path).

use t5g::gguf::{GgufFile, MetaValue};
use t5g::quant::validate_quantized_scales;

fn touch(value: &MetaValue, sink: &mut u64) {
    *sink = sink.wrapping_add(value.to_string().len() as u64);
    *sink = sink.wrapping_add(value.as_i64().unwrap_or(0) as u64);
    *sink = sink.wrapping_add(value.as_f64().map_or(0, f64::to_bits));
    *sink = sink.wrapping_add(value.as_str().map_or(0, |s| s.len() as u64));
    *sink = sink.wrapping_add(value.value_type() as u64);
    if let Some(items) = value.as_array() {
        for item in items {
            touch(item, sink);
        }
    }
}

/// Parses `data` and, if it is accepted, reads every metadata value through every typed
/// getter and every tensor view, checking the invariants a loader relies on. Returns whether
/// the file was accepted. Panics only on a reader bug.
pub fn exercise_gguf(data: &[u8]) -> bool {
    let Ok(file) = GgufFile::from_bytes(data) else {
        return false;
    };
    let mut sink = 0u64;
    for (key, value) in file.metadata() {
        touch(value, &mut sink);
        // Every typed getter must answer Ok or Err for every key, whatever its type.
        let _ = file.get_usize(key);
        let _ = file.opt_usize(key);
        let _ = file.get_f32(key);
        let _ = file.opt_f32(key);
        let _ = file.get_str(key);
        let _ = file.opt_str(key);
        let _ = file.opt_bool(key);
        let _ = file.get_str_array(key);
        let _ = file.get_f32_array(key);
        let _ = file.get_i64_array(key);
        assert!(file.get(key).is_some());
    }
    assert!(file.data_start() <= file.file_size());
    assert!(file.alignment().is_power_of_two());
    for info in file.tensors() {
        let view = file
            .tensor(&info.name)
            .expect("listed tensors can be viewed");
        assert_eq!(view.data.len(), info.range.len());
        assert!(info.range.start >= file.data_start());
        assert_eq!((info.range.start - file.data_start()) % file.alignment(), 0);
        let rows = info.n_elements() / info.shape[0];
        let row_bytes = info
            .ty
            .row_bytes(info.shape[0])
            .expect("validated row length");
        assert_eq!(view.data.len(), row_bytes * rows);
        sink = sink.wrapping_add(view.data.first().copied().unwrap_or(0) as u64);
        sink = sink.wrapping_add(view.data.last().copied().unwrap_or(0) as u64);
        let _ = validate_quantized_scales(&view);
    }
    std::hint::black_box(sink);
    true
}
