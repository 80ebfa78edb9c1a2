//! Hostile GGUF files: every malformed input must end in a clean `Err` that says what is wrong
//! and where — never a panic, never a large allocation.
//!
//! Files are built with the writer and then corrupted byte by byte at positions found with the
//! locators in `gguf_builder`. A counting allocator measures the peak heap each parse reaches on its
//! thread, so "never a huge allocation" is checked, not hoped for.

mod gguf_builder;

use gguf_builder::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use t5g::gguf::{GgmlType, GgufFile, MetaValue, ValueType, HEADER_MEMORY_LIMIT, MAX_ARRAY_DEPTH};
use t5g::quant::{validate_all_quantized_scales, validate_quantized_scales};

/// Counts live heap bytes per thread (tests run on many threads) and their peak.
struct CountingAlloc;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn account(delta: isize) {
    // `try_with`: the allocator also runs while a thread's locals are being torn down.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; the bookkeeping only
// touches const-initialised thread-locals of `Cell<isize>`, which never allocate.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        account(layout.size() as isize);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        account(-(layout.size() as isize));
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Runs `f` and returns its result and the most heap it had live at once, in bytes.
fn peak_heap<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(|l| l.get());
    PEAK.with(|p| p.set(base));
    let out = f();
    let peak = PEAK.with(|p| p.get()) - base;
    (out, peak.max(0) as usize)
}

/// Parses `bytes`, checks that it fails cleanly without allocating more than the in-memory
/// copy plus a little, and returns the error message.
fn parse_err(bytes: &[u8]) -> String {
    let (result, peak) = peak_heap(|| GgufFile::from_bytes(bytes));
    let err = match result {
        Ok(_) => panic!("a hostile file of {} bytes was accepted", bytes.len()),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert!(
        matches!(err, t5g::Error::Format { .. }) && msg.starts_with("<memory>: "),
        "not a format error naming the file: {msg}"
    );
    // The aligned copy of the input, the header's small tables, and a 32x amplification of
    // whatever metadata was read before the failure.
    let limit = 2 * bytes.len() + 32 * bytes.len().min(1 << 16) + (64 << 10);
    assert!(
        peak <= limit,
        "parse allocated {peak} bytes (limit {limit}) before: {msg}"
    );
    msg
}

/// Asserts that `bytes` fail to parse with a message containing every one of `needles`.
#[track_caller]
fn expect_err(bytes: &[u8], needles: &[&str]) -> String {
    let msg = parse_err(bytes);
    for needle in needles {
        assert!(
            msg.contains(needle),
            "error `{msg}` does not mention `{needle}`"
        );
    }
    msg
}

fn u32le(v: u32) -> [u8; 4] {
    v.to_le_bytes()
}
fn u64le(v: u64) -> [u8; 8] {
    v.to_le_bytes()
}

/// End of the last tensor's data: every shorter prefix is truncated.
fn needed_len(bytes: &[u8]) -> usize {
    let f = GgufFile::from_bytes(bytes).expect("the sample file is valid");
    f.tensors()
        .iter()
        .map(|t| t.range.end)
        .max()
        .unwrap_or(f.data_start())
}

fn is_truncation(msg: &str) -> bool {
    ["truncated", "past the end"]
        .iter()
        .any(|n| msg.contains(n))
}

// ---- truncation ---------------------------------------------------------------------------

#[test]
fn sample_file_is_valid_and_reads_back() {
    let bytes = all_types_file();
    let f = GgufFile::from_bytes(&bytes).unwrap();
    assert_eq!(f.get_str("general.architecture").unwrap(), "t5gemma");
    assert_eq!(f.get("v.u64"), Some(&MetaValue::U64(u64::MAX)));
    assert_eq!(f.get_str("v.string").unwrap(), "héllo ▁world");
    assert_eq!(f.opt_bool("v.bool_false").unwrap(), Some(false));
    assert_eq!(
        f.get_str_array("v.strings").unwrap(),
        ["<pad>", "<eos>", "▁a"]
    );
    let nested = f.get("v.nested").unwrap().as_array().unwrap();
    assert_eq!(
        nested[2].as_array().unwrap()[0].as_array().unwrap(),
        [MetaValue::F32(0.5)]
    );
    assert_eq!(f.tensors().len(), 3);
    assert_eq!(f.tensor("tensor.beta").unwrap().data.len(), 2 * 2 * 34);
    validate_all_quantized_scales(&f).unwrap();
}

#[test]
fn truncation_at_every_byte_is_an_error() {
    let full = all_types_file();
    let needed = needed_len(&full);
    let first_info = tensor_at(&full, "tensor.alpha").name;
    let last_info_end = tensor_at(&full, "tensor.gamma").end;
    for len in 0..full.len() {
        let prefix = &full[..len];
        if len >= needed {
            // Only the zero padding after the last tensor is missing: still a whole file.
            let f = GgufFile::from_bytes(prefix).unwrap();
            assert_eq!(f.tensors().len(), 3);
            continue;
        }
        let msg = parse_err(prefix);
        assert!(
            is_truncation(&msg),
            "prefix {len}: `{msg}` does not say truncated"
        );
        let (needle, what): (&[&str], _) = if (24..first_info).contains(&len) {
            (&["metadata"], "the metadata")
        } else if (first_info..last_info_end).contains(&len) {
            (&["tensor #", "tensor `"], "the tensor info")
        } else if len >= last_info_end {
            (
                &["tensor data section", "(data section is"],
                "the data section",
            )
        } else {
            (&[""], "the header")
        };
        assert!(
            needle.iter().any(|n| msg.contains(n)),
            "prefix {len} cuts {what}, but `{msg}` does not say so"
        );
    }
}

#[test]
fn a_file_without_tensors_may_end_unpadded() {
    let full = Builder::new().bytes();
    let end = kv_at(&full, "general.alignment").value + 4;
    assert!(end < full.len(), "the writer pads the header");
    assert!(GgufFile::from_bytes(&full[..end])
        .unwrap()
        .tensors()
        .is_empty());
    expect_err(
        &full[..end - 1],
        &["metadata `general.alignment`", "truncated"],
    );
}

#[test]
fn truncation_inside_a_value_names_the_key() {
    let full = all_types_file();
    for key in ["v.string", "v.strings", "v.nested", "v.u64", "v.f64"] {
        let at = kv_at(&full, key);
        expect_err(&full[..at.value + 3], &[key, "truncated"]);
    }
    let at = tensor_at(&full, "tensor.beta");
    expect_err(
        &full[..at.offset + 2],
        &["tensor `tensor.beta`", "truncated"],
    );
}

#[test]
fn truncation_at_section_boundaries_of_a_larger_file() {
    let full = larger_file();
    let needed = needed_len(&full);
    let f = GgufFile::from_bytes(&full).unwrap();
    let mut cuts = vec![0, 3, 4, 8, 16, 24, f.data_start(), needed - 1];
    for key in f.metadata().iter().map(|(k, _)| k.as_str()) {
        let at = kv_at(&full, key);
        cuts.extend([
            at.key,
            at.key + 8,
            at.ty,
            at.value,
            at.value + 4,
            at.value + 12,
        ]);
    }
    for t in f.tensors() {
        let at = tensor_at(&full, &t.name);
        cuts.extend([at.name, at.n_dims, at.dims, at.ty, at.offset, at.end]);
        cuts.extend([t.range.start, t.range.start + 1, t.range.end - 1]);
    }
    let cuts: Vec<usize> = cuts
        .into_iter()
        .flat_map(|c| [c.saturating_sub(1), c, c + 1])
        .filter(|&c| c < needed)
        .collect();
    for len in cuts {
        let msg = parse_err(&full[..len]);
        assert!(is_truncation(&msg), "prefix {len}: `{msg}`");
    }
}

// ---- header -------------------------------------------------------------------------------

#[test]
fn bad_magic_and_tiny_files() {
    expect_err(b"", &["too short"]);
    expect_err(b"GGU", &["too short"]);
    expect_err(b"GGUF", &["GGUF version", "truncated"]);
    let mut bytes = all_types_file();
    patch(&mut bytes, 0, b"GGUG");
    expect_err(&bytes, &["bad magic"]);
    patch(&mut bytes, 0, b"FUGG");
    expect_err(&bytes, &["bad magic"]);
    expect_err(b"\x89PNG\r\n\x1a\n", &["bad magic"]);
}

#[test]
fn unsupported_versions() {
    let mut bytes = all_types_file();
    patch(&mut bytes, 4, &u32le(1));
    expect_err(&bytes, &["version 1"]);
    patch(&mut bytes, 4, &u32le(4));
    expect_err(&bytes, &["version 4"]);
    patch(&mut bytes, 4, &u32le(0));
    expect_err(&bytes, &["version 0"]);
    patch(&mut bytes, 4, &3u32.to_be_bytes());
    expect_err(&bytes, &["big-endian"]);
    patch(&mut bytes, 4, &u32le(2));
    GgufFile::from_bytes(&bytes).expect("version 2 has the same layout as 3");
}

#[test]
fn huge_tensor_and_key_counts() {
    let full = all_types_file();
    let f = GgufFile::from_bytes(&full).unwrap();
    let n_kv = f.metadata().len() as u64;
    for count in [u64::MAX, 1 << 40, (1 << 16) + 1] {
        let mut bytes = full.clone();
        patch(&mut bytes, 8, &u64le(count));
        expect_err(&bytes, &["tensor count", &count.to_string()]);
        let mut bytes = full.clone();
        patch(&mut bytes, 16, &u64le(count));
        expect_err(&bytes, &["metadata key count", &count.to_string()]);
    }
    // Plausible counts whose entries cannot fit in the file.
    let mut bytes = full.clone();
    patch(&mut bytes, 16, &u64le(1 << 16));
    parse_err(&bytes);
    let mut bytes = full.clone();
    patch(&mut bytes, 8, &u64le(1 << 15));
    expect_err(&bytes, &["tensor"]);
    // One more than there are: the reader runs into the next section and must notice.
    let mut bytes = full.clone();
    patch(&mut bytes, 16, &u64le(n_kv + 1));
    parse_err(&bytes);
    let mut bytes = full.clone();
    patch(&mut bytes, 8, &u64le(4));
    // The fourth "tensor info" is the zero padding: an empty name with no dimensions.
    expect_err(&bytes, &["tensor ``", "0 dimensions"]);
}

// ---- metadata -----------------------------------------------------------------------------

#[test]
fn huge_array_lengths() {
    let full = all_types_file();
    for (key, elem) in [
        ("v.u8s", "U8"),
        ("v.strings", "String"),
        ("v.nested", "Array"),
    ] {
        let count_at = kv_at(&full, key).value + 4;
        let left = (full.len() - count_at - 8) as u64;
        for count in [u64::MAX, u64::MAX / 8 + 1, 1 << 40, left + 1] {
            let mut bytes = full.clone();
            patch(&mut bytes, count_at, &u64le(count));
            expect_err(&bytes, &[key, "array of", elem, "past the end"]);
        }
        // One more element than written: the next key's bytes are read as an element.
        let mut bytes = full.clone();
        let n = u64::from_le_bytes(bytes[count_at..count_at + 8].try_into().unwrap());
        patch(&mut bytes, count_at, &u64le(n + 1));
        parse_err(&bytes);
    }
}

#[test]
fn huge_string_lengths() {
    let full = all_types_file();
    let value_len_at = kv_at(&full, "v.string").value;
    let key_len_at = kv_at(&full, "v.i8").key;
    let name_len_at = tensor_at(&full, "tensor.beta").name;
    for (at, needle) in [
        (value_len_at, "metadata `v.string`"),
        (key_len_at, "metadata key #"),
        (name_len_at, "tensor #1 name"),
    ] {
        let left = (full.len() - at - 8) as u64;
        for len in [u64::MAX, 1 << 40, left + 1] {
            let mut bytes = full.clone();
            patch(&mut bytes, at, &u64le(len));
            expect_err(&bytes, &[needle, "string length", "past the end"]);
        }
    }
}

#[test]
fn unknown_value_types() {
    let full = all_types_file();
    let mut bytes = full.clone();
    patch(&mut bytes, kv_at(&full, "v.u32").ty, &u32le(13));
    expect_err(
        &bytes,
        &["metadata `v.u32`", "unknown metadata value type id 13"],
    );
    let mut bytes = full.clone();
    patch(&mut bytes, kv_at(&full, "v.u32").ty, &u32le(u32::MAX));
    expect_err(&bytes, &["v.u32", "4294967295"]);
    let mut bytes = full.clone();
    patch(&mut bytes, kv_at(&full, "v.i32s").value, &u32le(99));
    expect_err(
        &bytes,
        &["metadata `v.i32s`", "unknown array element type id 99"],
    );
}

#[test]
fn bools_must_be_zero_or_one() {
    let full = all_types_file();
    let mut bytes = full.clone();
    bytes[kv_at(&full, "v.bool").value] = 2;
    expect_err(&bytes, &["metadata `v.bool`", "bool", "value 2"]);
    let mut bytes = full.clone();
    // v.bools: element type (4), count (8), then the elements.
    bytes[kv_at(&full, "v.bools").value + 12 + 1] = 0xff;
    expect_err(&bytes, &["metadata `v.bools`", "element 1", "value 255"]);
}

#[test]
fn strings_must_be_utf8() {
    let full = all_types_file();
    let mut bytes = full.clone();
    bytes[kv_at(&full, "v.string").value + 8 + 1] = 0xff;
    expect_err(&bytes, &["metadata `v.string`", "not valid UTF-8"]);
    let mut bytes = full.clone();
    let at = kv_at(&full, "v.strings").value + 12; // first element
    bytes[at + 8] = 0xc3; // a lead byte followed by `p`
    expect_err(&bytes, &["metadata `v.strings`", "element 0", "UTF-8"]);
    let mut bytes = full.clone();
    bytes[kv_at(&full, "v.i16").key + 8] = 0x80;
    expect_err(&bytes, &["metadata key #", "UTF-8"]);
    let mut bytes = full.clone();
    bytes[tensor_at(&full, "tensor.gamma").name + 8] = 0xfe;
    expect_err(&bytes, &["tensor #2 name", "UTF-8"]);
}

#[test]
fn duplicate_keys_and_tensor_names() {
    let mut b = Builder::new();
    b.meta("dup.a", MetaValue::U32(1))
        .meta("dup.b", MetaValue::U32(2));
    b.tensor("dup_t.a", GgmlType::F32, &[4])
        .tensor("dup_t.b", GgmlType::F32, &[4]);
    let full = b.bytes();
    GgufFile::from_bytes(&full).unwrap();
    let mut bytes = full.clone();
    bytes[kv_at(&full, "dup.b").key + 8 + 4] = b'a';
    expect_err(&bytes, &["duplicate metadata key `dup.a`"]);
    let mut bytes = full.clone();
    bytes[tensor_at(&full, "dup_t.b").name + 8 + 6] = b'a';
    expect_err(&bytes, &["tensor `dup_t.a`", "duplicate tensor name"]);
}

#[test]
fn array_nesting_depth_is_bounded() {
    fn nest(depth: u32) -> MetaValue {
        (1..depth).fold(MetaValue::i32_array([1]), |inner, _| {
            MetaValue::Array(ValueType::Array, vec![inner])
        })
    }
    let mut b = Builder::new();
    b.meta("deep", nest(MAX_ARRAY_DEPTH));
    GgufFile::from_bytes(b.bytes()).expect("arrays nested MAX_ARRAY_DEPTH deep are read");
    let mut b = Builder::new();
    b.meta("deeper", nest(MAX_ARRAY_DEPTH + 1));
    expect_err(
        &b.bytes(),
        &["metadata `deeper`", "nested more than 4 deep"],
    );
}

#[test]
fn general_alignment_must_be_a_u32_power_of_two() {
    for (value, needle) in [
        (MetaValue::U32(0), "found U32 0"),
        (MetaValue::U32(48), "found U32 48"),
        (MetaValue::U32(1 << 20), "found U32 1048576"),
        (MetaValue::U64(32), "found U64 32"),
        (MetaValue::I32(32), "found I32 32"),
        (MetaValue::F32(32.0), "found F32 32"),
        (MetaValue::String("32".into()), "found String \"32\""),
        (MetaValue::i32_array([32]), "found Array"),
    ] {
        let mut b = Builder::new();
        b.meta("general.alignment", value);
        expect_err(&b.bytes(), &["general.alignment", "power of two", needle]);
    }
    let mut b = Builder::new();
    b.meta("general.alignment", MetaValue::U32(64));
    assert_eq!(GgufFile::from_bytes(b.bytes()).unwrap().alignment(), 64);
}

/// Metadata memory is charged before it is reserved: an array whose elements would need more
/// than the limit fails before anything is allocated for it, even though its bytes are there.
#[test]
fn metadata_memory_is_bounded() {
    let n = (HEADER_MEMORY_LIMIT / 32 + 1) as usize;
    let mut bytes = Vec::with_capacity(n + 64);
    bytes.extend_from_slice(b"GGUF");
    bytes.extend_from_slice(&u32le(3));
    bytes.extend_from_slice(&u64le(0));
    bytes.extend_from_slice(&u64le(1));
    bytes.extend_from_slice(&gguf_string("big"));
    bytes.extend_from_slice(&u32le(ValueType::Array as u32));
    bytes.extend_from_slice(&u32le(ValueType::Bool as u32));
    bytes.extend_from_slice(&u64le(n as u64));
    bytes.resize(bytes.len() + n, 0);
    let (result, peak) = peak_heap(|| GgufFile::from_bytes(&bytes));
    let msg = result.unwrap_err().to_string();
    assert!(
        msg.contains("metadata `big`") && msg.contains("256 MiB"),
        "{msg}"
    );
    assert!(peak <= bytes.len() + (1 << 20), "allocated {peak} bytes");

    // A 1 MiB byte array is fine and costs about 32 bytes per element.
    let n = 1 << 20;
    bytes.truncate(24);
    bytes.extend_from_slice(&gguf_string("ok"));
    bytes.extend_from_slice(&u32le(ValueType::Array as u32));
    bytes.extend_from_slice(&u32le(ValueType::U8 as u32));
    bytes.extend_from_slice(&u64le(n as u64));
    bytes.resize(bytes.len() + n, 7);
    let (result, peak) = peak_heap(|| GgufFile::from_bytes(&bytes));
    assert_eq!(
        result.unwrap().get("ok").unwrap().as_array().unwrap().len(),
        n
    );
    assert!(peak <= bytes.len() + 33 * n, "allocated {peak} bytes");
}

// ---- tensor infos -------------------------------------------------------------------------

#[test]
fn offsets_past_the_end_unaligned_or_overlapping() {
    let full = all_types_file();
    let f = GgufFile::from_bytes(&full).unwrap();
    let data_len = (full.len() - f.data_start()) as u64;
    let beta = tensor_at(&full, "tensor.beta");
    for offset in [data_len.next_multiple_of(32), 1 << 40, u64::MAX - 31] {
        let mut bytes = full.clone();
        patch(&mut bytes, beta.offset, &u64le(offset));
        expect_err(&bytes, &["tensor `tensor.beta`", "past the end"]);
    }
    let mut bytes = full.clone();
    patch(&mut bytes, beta.offset, &u64le(33));
    expect_err(
        &bytes,
        &["tensor `tensor.beta`", "offset 33 is not aligned to 32"],
    );
    let mut bytes = full.clone();
    patch(&mut bytes, beta.offset, &u64le(0));
    expect_err(&bytes, &["tensors `tensor.", "overlap"]);
    // The last tensor moved so that it ends one byte past the file.
    let gamma = tensor_at(&full, "tensor.gamma");
    let mut bytes = full.clone();
    patch(&mut bytes, gamma.offset, &u64le(data_len - 18 + 1));
    parse_err(&bytes);
}

#[test]
fn zero_huge_and_too_many_dimensions() {
    let full = all_types_file();
    let alpha = tensor_at(&full, "tensor.alpha"); // f32 [3, 2]
    let mut bytes = full.clone();
    patch(&mut bytes, alpha.dims + 8, &u64le(0));
    expect_err(&bytes, &["tensor `tensor.alpha`", "dimension 1 is 0"]);
    let mut bytes = full.clone();
    patch(&mut bytes, alpha.dims, &u64le(u64::MAX));
    expect_err(&bytes, &["tensor `tensor.alpha`", "dimension 0"]);
    let mut bytes = full.clone();
    patch(&mut bytes, alpha.dims, &u64le(1 << 40));
    patch(&mut bytes, alpha.dims + 8, &u64le(1 << 40));
    expect_err(
        &bytes,
        &["tensor `tensor.alpha`", "element count overflows"],
    );
    let mut bytes = full.clone();
    patch(&mut bytes, alpha.dims, &u64le(1 << 31));
    patch(&mut bytes, alpha.dims + 8, &u64le(1 << 31));
    expect_err(&bytes, &["tensor `tensor.alpha`", "byte size overflows"]);
    let mut bytes = full.clone();
    patch(&mut bytes, alpha.dims, &u64le(1 << 30));
    expect_err(&bytes, &["tensor `tensor.alpha`", "past the end"]);
    for n in [0, 5, 1000, u32::MAX] {
        let mut bytes = full.clone();
        patch(&mut bytes, alpha.n_dims, &u32le(n));
        expect_err(
            &bytes,
            &["tensor `tensor.alpha`", &format!("{n} dimensions")],
        );
    }
    // A Q8_0 row must be whole blocks of 32.
    let beta = tensor_at(&full, "tensor.beta");
    let mut bytes = full.clone();
    patch(&mut bytes, beta.dims, &u64le(33));
    expect_err(&bytes, &["tensor `tensor.beta`", "not a multiple", "32"]);
}

#[test]
fn unknown_tensor_types_are_named() {
    let full = all_types_file();
    let gamma = tensor_at(&full, "tensor.gamma");
    for (id, name) in [
        (13, "Q5_K"),
        (3, "Q4_1"),
        (10, "Q2_K"),
        (28, "F64"),
        (99, "99"),
    ] {
        let mut bytes = full.clone();
        patch(&mut bytes, gamma.ty, &u32le(id));
        expect_err(
            &bytes,
            &["tensor `tensor.gamma`", name, &format!("id {id}")],
        );
    }
    let mut bytes = full.clone();
    patch(&mut bytes, gamma.ty, &u32le(u32::MAX));
    expect_err(&bytes, &["tensor `tensor.gamma`", "4294967295"]);
}

// ---- files on disk ------------------------------------------------------------------------

#[test]
fn paths_that_are_not_gguf_files() {
    let dir = tempfile::tempdir().unwrap();
    let err = GgufFile::open(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("directory") && err.contains(&*dir.path().to_string_lossy()),
        "{err}"
    );
    let empty = dir.path().join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    let err = GgufFile::open(&empty).unwrap_err().to_string();
    assert!(err.contains("empty") && err.contains("empty.gguf"), "{err}");
    let missing = dir.path().join("missing.gguf");
    let err = GgufFile::open(&missing).unwrap_err().to_string();
    assert!(err.contains("missing.gguf"), "{err}");
    let truncated = dir.path().join("truncated.gguf");
    let full = all_types_file();
    std::fs::write(&truncated, &full[..100]).unwrap();
    let err = GgufFile::open(&truncated).unwrap_err().to_string();
    assert!(
        err.contains("truncated.gguf") && is_truncation(&err),
        "{err}"
    );
    std::fs::write(&truncated, &full[..full.len() - 40]).unwrap();
    let err = GgufFile::open(&truncated).unwrap_err().to_string();
    assert!(
        err.contains("truncated.gguf") && err.contains("past the end"),
        "{err}"
    );
    let good = dir.path().join("good.gguf");
    std::fs::write(&good, &full).unwrap();
    let f = GgufFile::open(&good).unwrap();
    assert_eq!(f.tensors().len(), 3);
    for t in f.tensors() {
        assert_eq!(
            f.view(t).data.as_ptr() as usize % 32,
            0,
            "{} is not aligned",
            t.name
        );
    }
}

#[cfg(unix)]
#[test]
fn special_files_are_refused() {
    let err = GgufFile::open("/dev/null").unwrap_err().to_string();
    assert!(
        err.contains("/dev/null") && err.contains("not a regular file"),
        "{err}"
    );
}

// ---- tensor contents: non-finite block scales ---------------------------------------------

fn scaled_file() -> (Vec<u8>, GgufFile) {
    let mut b = Builder::new();
    b.tensor("w.q8", GgmlType::Q8_0, &[64, 3])
        .tensor("w.q4", GgmlType::Q4_0, &[96, 2]);
    b.tensor("w.f16", GgmlType::F16, &[8]);
    let bytes = b.bytes();
    let f = GgufFile::from_bytes(&bytes).unwrap();
    (bytes, f)
}

#[test]
fn non_finite_block_scales_are_accepted_by_the_reader_and_caught_by_validation() {
    let (clean, f) = scaled_file();
    validate_all_quantized_scales(&f).unwrap();
    for (name, block_bytes, block, row) in [("w.q8", 34, 3, 1), ("w.q4", 18, 4, 1)] {
        for (bits, shown) in [(0x7e00u16, "NaN"), (0x7c00, "inf"), (0xfc00, "-inf")] {
            let mut bytes = clean.clone();
            let start = f.tensor_info(name).unwrap().range.start;
            patch(&mut bytes, start + block * block_bytes, &bits.to_le_bytes());
            let g = GgufFile::from_bytes(&bytes).expect("the reader cannot judge scales");
            let msg = validate_quantized_scales(&g.tensor(name).unwrap())
                .unwrap_err()
                .to_string();
            for needle in [
                name,
                &format!("block {block} (row {row})"),
                "non-finite",
                shown,
            ] {
                assert!(msg.contains(needle), "`{msg}` does not mention `{needle}`");
            }
            let all = validate_all_quantized_scales(&g).unwrap_err().to_string();
            assert!(all.contains(name), "{all}");
        }
    }
    // Plain float tensors are not scanned, whatever they hold.
    let mut bytes = clean.clone();
    let start = f.tensor_info("w.f16").unwrap().range.start;
    patch(&mut bytes, start, &0x7e00u16.to_le_bytes());
    validate_all_quantized_scales(&GgufFile::from_bytes(&bytes).unwrap()).unwrap();
}
