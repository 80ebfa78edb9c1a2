//! Small GGUF files for the hostile-input tests and the fuzz seeds, and helpers that find the
//! bytes of a key or tensor info inside a written file so a test can corrupt exactly them.
#![allow(dead_code)]

pub mod exercise;
pub mod exercise_convert;
pub mod exercise_text;

use t5g::gguf::{GgmlType, GgufWriter, MetaValue, ValueType};

/// A [`GgufWriter`] that remembers each declared tensor's size so it can fill the data itself.
pub struct Builder {
    /// The writer; metadata may be added to it directly.
    pub w: GgufWriter,
    sizes: Vec<usize>,
}

impl Builder {
    /// An empty file (with `general.alignment = 32`, as the writer always adds).
    pub fn new() -> Self {
        Builder {
            w: GgufWriter::new(),
            sizes: Vec::new(),
        }
    }

    /// Adds a metadata key.
    pub fn meta(&mut self, key: &str, value: MetaValue) -> &mut Self {
        self.w.add_metadata(key, value);
        self
    }

    /// Declares a tensor.
    pub fn tensor(&mut self, name: &str, ty: GgmlType, shape: &[usize]) -> &mut Self {
        let n = self
            .w
            .add_tensor(name, ty, shape)
            .expect("declaring a test tensor");
        self.sizes.push(n);
        self
    }

    /// Serializes the file, filling tensor `i` with bytes that depend on `i` and are all
    /// below 0x40, so every f16 block scale in them is finite.
    pub fn bytes(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        self.w
            .write_to(&mut buf, |i, out: &mut dyn std::io::Write| {
                let data: Vec<u8> = (0..self.sizes[i])
                    .map(|k| ((k * 7 + i * 13) & 0x3f) as u8)
                    .collect();
                out.write_all(&data)
                    .map_err(|e| t5g::Error::io("<test>", e))
            })
            .expect("writing a test file");
        buf
    }
}

/// A writer holding metadata of every value type (nested arrays, strings, bools, empty arrays
/// and strings) and three tensors of different types.
pub fn all_types_builder() -> Builder {
    let mut b = Builder::new();
    let w = &mut b.w;
    w.add_metadata("general.architecture", MetaValue::String("t5gemma".into()));
    w.add_metadata("v.u8", MetaValue::U8(200));
    w.add_metadata("v.i8", MetaValue::I8(-5));
    w.add_metadata("v.u16", MetaValue::U16(60000));
    w.add_metadata("v.i16", MetaValue::I16(-30000));
    w.add_metadata("v.u32", MetaValue::U32(4_000_000_000));
    w.add_metadata("v.i32", MetaValue::I32(-7));
    w.add_metadata("v.f32", MetaValue::F32(1.5));
    w.add_metadata("v.bool", MetaValue::Bool(true));
    w.add_metadata("v.bool_false", MetaValue::Bool(false));
    w.add_metadata("v.string", MetaValue::String("héllo ▁world".into()));
    w.add_metadata("v.empty_string", MetaValue::String(String::new()));
    w.add_metadata("v.u64", MetaValue::U64(u64::MAX));
    w.add_metadata("v.i64", MetaValue::I64(i64::MIN));
    w.add_metadata("v.f64", MetaValue::F64(-2.25));
    w.add_metadata(
        "v.strings",
        MetaValue::string_array(["<pad>", "<eos>", "▁a"]),
    );
    w.add_metadata("v.f32s", MetaValue::f32_array([0.0, -1.0, 3.5]));
    w.add_metadata("v.i32s", MetaValue::i32_array([1, 2, 3, 6]));
    w.add_metadata(
        "v.bools",
        MetaValue::Array(
            ValueType::Bool,
            vec![MetaValue::Bool(false), MetaValue::Bool(true)],
        ),
    );
    w.add_metadata(
        "v.u8s",
        MetaValue::Array(ValueType::U8, vec![MetaValue::U8(1), MetaValue::U8(2)]),
    );
    w.add_metadata("v.empty", MetaValue::Array(ValueType::U64, vec![]));
    w.add_metadata(
        "v.nested",
        MetaValue::Array(
            ValueType::Array,
            vec![
                MetaValue::i32_array([7, 8]),
                MetaValue::string_array(["x"]),
                MetaValue::Array(ValueType::Array, vec![MetaValue::f32_array([0.5])]),
            ],
        ),
    );
    b.tensor("tensor.alpha", GgmlType::F32, &[3, 2])
        .tensor("tensor.beta", GgmlType::Q8_0, &[64, 2])
        .tensor("tensor.gamma", GgmlType::Q4_0, &[32]);
    b
}

/// The bytes of [`all_types_builder`].
pub fn all_types_file() -> Vec<u8> {
    all_types_builder().bytes()
}

/// A larger file: a 1000-entry vocabulary and a dozen tensors of every writable type.
pub fn larger_file() -> Vec<u8> {
    let mut b = Builder::new();
    let w = &mut b.w;
    w.add_metadata("general.architecture", MetaValue::String("t5gemma".into()));
    w.add_metadata("general.name", MetaValue::String("hostile-test".into()));
    let n = 1000;
    w.add_metadata(
        "tokenizer.ggml.tokens",
        MetaValue::string_array((0..n).map(|i| format!("▁tok{i}"))),
    );
    w.add_metadata(
        "tokenizer.ggml.scores",
        MetaValue::f32_array((0..n).map(|i| -(i as f32))),
    );
    w.add_metadata(
        "tokenizer.ggml.token_type",
        MetaValue::i32_array((0..n).map(|i| 1 + i % 6)),
    );
    w.add_metadata("t5gemma.encoder.block_count", MetaValue::U32(2));
    for (i, ty) in [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::F32,
    ]
    .into_iter()
    .enumerate()
    {
        b.tensor(&format!("enc.blk.{i}.attn_q.weight"), ty, &[64, 3])
            .tensor(
                &format!("enc.blk.{i}.attn_norm.weight"),
                GgmlType::F32,
                &[5],
            );
    }
    b.bytes()
}

/// GGUF's encoding of a string: u64 length, then the bytes.
pub fn gguf_string(s: &str) -> Vec<u8> {
    let mut v = (s.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(s.as_bytes());
    v
}

/// Position of the only occurrence of `needle` in `hay`.
pub fn find_unique(hay: &[u8], needle: &[u8]) -> usize {
    let hits: Vec<usize> = hay
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "expected one occurrence of {:?}",
        String::from_utf8_lossy(needle)
    );
    hits[0]
}

/// Where a metadata key's parts sit in a file.
pub struct KvAt {
    /// The key's u64 length prefix.
    pub key: usize,
    /// The u32 value type id.
    pub ty: usize,
    /// The value's first byte (for an array: its element type id).
    pub value: usize,
}

/// Locates metadata key `key` in `bytes`.
pub fn kv_at(bytes: &[u8], key: &str) -> KvAt {
    let at = find_unique(bytes, &gguf_string(key));
    let ty = at + 8 + key.len();
    KvAt {
        key: at,
        ty,
        value: ty + 4,
    }
}

/// Where a tensor info's parts sit in a file.
pub struct TensorAt {
    /// The name's u64 length prefix.
    pub name: usize,
    /// The u32 dimension count.
    pub n_dims: usize,
    /// The first u64 dimension.
    pub dims: usize,
    /// The u32 ggml type id.
    pub ty: usize,
    /// The u64 data offset.
    pub offset: usize,
    /// One past the info's last byte.
    pub end: usize,
}

/// Locates tensor info `name` in `bytes`.
pub fn tensor_at(bytes: &[u8], name: &str) -> TensorAt {
    let at = find_unique(bytes, &gguf_string(name));
    let n_dims = at + 8 + name.len();
    let nd = u32::from_le_bytes(bytes[n_dims..n_dims + 4].try_into().unwrap()) as usize;
    let dims = n_dims + 4;
    let ty = dims + 8 * nd;
    TensorAt {
        name: at,
        n_dims,
        dims,
        ty,
        offset: ty + 4,
        end: ty + 12,
    }
}

/// Overwrites `bytes[at..]` with `with`.
pub fn patch(bytes: &mut [u8], at: usize, with: &[u8]) {
    bytes[at..at + with.len()].copy_from_slice(with);
}
