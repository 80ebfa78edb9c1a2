//! Bounds-checked GGUF reader over a memory map (or an owned buffer).

use super::{GgmlType, MetaValue, ValueType, DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_DIMS};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Most elements one metadata array may hold (the largest real one, a 262k-entry vocabulary,
/// is far below this); bounds the memory a hostile count can make us allocate.
const MAX_ARRAY_LEN: u64 = 1 << 24;
/// Most metadata values, arrays' elements included, in one file.
const MAX_TOTAL_VALUES: u64 = 1 << 25;
/// Deepest nesting of arrays we follow.
const MAX_ARRAY_DEPTH: u32 = 4;
/// Most tensors / metadata keys in one file.
const MAX_ENTRIES: u64 = 1 << 20;

/// 32 bytes with 32-byte alignment: the unit of owned buffers, so that tensor data in memory
/// is as aligned as tensor data in a page-aligned map.
#[repr(C, align(32))]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Align32([u8; 32]);

enum Storage {
    Mapped(memmap2::Mmap),
    Owned { blocks: Vec<Align32>, len: usize },
}

impl Storage {
    fn owned(bytes: &[u8]) -> Self {
        let mut blocks = vec![Align32([0; 32]); bytes.len().div_ceil(32)];
        bytemuck::cast_slice_mut::<Align32, u8>(&mut blocks)[..bytes.len()].copy_from_slice(bytes);
        Storage::Owned {
            blocks,
            len: bytes.len(),
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mapped(m) => m,
            Storage::Owned { blocks, len } => &bytemuck::cast_slice(blocks)[..*len],
        }
    }
}

/// Where one tensor lives and what it is.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    /// Name as stored.
    pub name: String,
    /// Dimensions in ggml order: `shape[0]` is the contiguous (row) length.
    pub shape: Vec<usize>,
    /// Element type.
    pub ty: GgmlType,
    /// Absolute byte range in the file.
    pub range: Range<usize>,
}

impl TensorInfo {
    /// Number of elements.
    pub fn n_elements(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A zero-copy view of one tensor's bytes.
#[derive(Clone, Copy, Debug)]
pub struct TensorView<'a> {
    /// Name as stored.
    pub name: &'a str,
    /// Element type.
    pub ty: GgmlType,
    /// Dimensions in ggml order (`shape[0]` is the row length).
    pub shape: &'a [usize],
    /// The raw bytes, aligned as the file aligns them.
    pub data: &'a [u8],
}

/// An open, validated GGUF file.
pub struct GgufFile {
    path: PathBuf,
    storage: Storage,
    /// File format version (2 or 3).
    pub version: u32,
    metadata: Vec<(String, MetaValue)>,
    meta_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    alignment: usize,
    data_start: usize,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl GgufFile {
    /// Memory-maps and validates a file. No tensor data is read or copied.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if meta.is_dir() {
            return Err(Error::format(path, "is a directory, not a GGUF file"));
        }
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        if meta.len() == 0 {
            return Err(Error::format(path, "empty file, not a GGUF file"));
        }
        // SAFETY: the map is read-only and we never hand out references that outlive it. The
        // one hazard of file mappings — another process truncating the file underneath us —
        // is the same for every mmap-based loader and is documented in the README.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        Self::parse(path.to_path_buf(), Storage::Mapped(map))
    }

    /// Parses an in-memory buffer (used by fuzzing, tests and synthetic models). The bytes are
    /// copied once into a 32-byte aligned buffer so tensor views are as aligned as in a map.
    pub fn from_bytes(bytes: impl AsRef<[u8]>) -> Result<Self> {
        Self::parse(PathBuf::from("<memory>"), Storage::owned(bytes.as_ref()))
    }

    fn parse(path: PathBuf, storage: Storage) -> Result<Self> {
        let bytes = storage.bytes();
        let mut cur = Cursor {
            bytes,
            pos: 0,
            path: &path,
            values: 0,
        };
        let magic = cur
            .u32()
            .map_err(|_| Error::format(&path, "too short to be a GGUF file"))?;
        if magic != GGUF_MAGIC {
            return Err(Error::format(&path, "not a GGUF file (bad magic)"));
        }
        let version = cur.u32()?;
        if !(2..=3).contains(&version) {
            return Err(Error::format(
                &path,
                format!("unsupported GGUF version {version}"),
            ));
        }
        let n_tensors = cur.u64()?;
        let n_kv = cur.u64()?;
        if n_tensors > MAX_ENTRIES || n_kv > MAX_ENTRIES {
            return Err(Error::format(
                &path,
                format!("implausible counts: {n_tensors} tensors, {n_kv} metadata keys"),
            ));
        }
        let mut metadata = Vec::with_capacity(n_kv.min(1024) as usize);
        let mut meta_index = HashMap::new();
        for i in 0..n_kv {
            let key = cur
                .string()
                .map_err(|e| cur.context(e, &format!("metadata key #{i}")))?;
            let ty = cur.u32()?;
            let value = cur
                .value(ty, 0)
                .map_err(|e| cur.context(e, &format!("metadata `{key}`")))?;
            if meta_index.insert(key.clone(), metadata.len()).is_some() {
                return Err(Error::format(
                    &path,
                    format!("duplicate metadata key `{key}`"),
                ));
            }
            metadata.push((key, value));
        }
        let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some((_, v)) => match v {
                MetaValue::U32(a) if a.is_power_of_two() && *a <= 1 << 16 => *a as usize,
                other => {
                    return Err(Error::format(
                        &path,
                        format!("general.alignment must be a u32 power of two, found {other}"),
                    ))
                }
            },
        };

        struct Raw {
            name: String,
            shape: Vec<usize>,
            ty: GgmlType,
            offset: u64,
        }
        let mut raws = Vec::with_capacity(n_tensors.min(1 << 16) as usize);
        for i in 0..n_tensors {
            let name = cur
                .string()
                .map_err(|e| cur.context(e, &format!("tensor #{i} name")))?;
            let n_dims = cur.u32()? as usize;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(Error::format(
                    &path,
                    format!("tensor `{name}`: {n_dims} dimensions (1 to {MAX_DIMS} allowed)"),
                ));
            }
            let mut shape = Vec::with_capacity(n_dims);
            for _ in 0..n_dims {
                let d = cur.u64()?;
                if d == 0 || d > i64::MAX as u64 {
                    return Err(Error::format(
                        &path,
                        format!("tensor `{name}`: dimension {d}"),
                    ));
                }
                shape.push(usize::try_from(d).map_err(|_| {
                    Error::format(&path, format!("tensor `{name}`: dimension {d} too large"))
                })?);
            }
            let ty = GgmlType::from_id(cur.u32()?)
                .map_err(|m| Error::format(&path, format!("tensor `{name}`: {m}")))?;
            let offset = cur.u64()?;
            raws.push(Raw {
                name,
                shape,
                ty,
                offset,
            });
        }
        let data_start = align_up(cur.pos, alignment)
            .filter(|&s| s <= bytes.len())
            .ok_or_else(|| Error::format(&path, "truncated: no room for tensor data"))?;
        let data_len = bytes.len() - data_start;

        let mut tensors = Vec::with_capacity(raws.len());
        let mut tensor_index = HashMap::with_capacity(raws.len());
        for raw in raws {
            let bad = |msg: String| Error::format(&path, format!("tensor `{}`: {msg}", raw.name));
            let n_elem = raw
                .shape
                .iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d))
                .ok_or_else(|| bad("element count overflows".into()))?;
            let row = raw.ty.row_bytes(raw.shape[0]).ok_or_else(|| {
                bad(format!(
                    "row length {} is not a multiple of the {} block size {}",
                    raw.shape[0],
                    raw.ty,
                    raw.ty.block_len()
                ))
            })?;
            let size = row
                .checked_mul(n_elem / raw.shape[0])
                .ok_or_else(|| bad("byte size overflows".into()))?;
            if raw.offset % alignment as u64 != 0 {
                return Err(bad(format!(
                    "offset {} not aligned to {alignment}",
                    raw.offset
                )));
            }
            let end = raw
                .offset
                .checked_add(size as u64)
                .filter(|&e| e <= data_len as u64);
            let Some(end) = end else {
                return Err(bad(format!(
                    "data [{}, +{size}) runs past the end of the file (data section is {data_len} bytes)",
                    raw.offset
                )));
            };
            let range = data_start + raw.offset as usize..data_start + end as usize;
            if tensor_index
                .insert(raw.name.clone(), tensors.len())
                .is_some()
            {
                return Err(bad("duplicate tensor name".into()));
            }
            tensors.push(TensorInfo {
                name: raw.name,
                shape: raw.shape,
                ty: raw.ty,
                range,
            });
        }
        let mut by_offset: Vec<&TensorInfo> = tensors.iter().collect();
        by_offset.sort_by_key(|t| t.range.start);
        for pair in by_offset.windows(2) {
            if pair[0].range.end > pair[1].range.start {
                return Err(Error::format(
                    &path,
                    format!("tensors `{}` and `{}` overlap", pair[0].name, pair[1].name),
                ));
            }
        }
        Ok(GgufFile {
            path,
            storage,
            version,
            metadata,
            meta_index,
            tensors,
            tensor_index,
            alignment,
            data_start,
        })
    }

    /// The path it was opened from (`<memory>` for buffers).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the whole file in bytes.
    pub fn file_size(&self) -> usize {
        self.storage.bytes().len()
    }

    /// Tensor data alignment.
    pub fn alignment(&self) -> usize {
        self.alignment
    }

    /// Offset of the tensor data section.
    pub fn data_start(&self) -> usize {
        self.data_start
    }

    /// All metadata in file order.
    pub fn metadata(&self) -> &[(String, MetaValue)] {
        &self.metadata
    }

    /// One metadata value.
    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.meta_index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// A required integer key that must fit in `usize`.
    pub fn get_usize(&self, key: &str) -> Result<usize> {
        let v = self.require(key)?;
        v.as_i64()
            .and_then(|x| usize::try_from(x).ok())
            .ok_or_else(|| {
                Error::metadata(key, format!("expected a non-negative integer, found {v}"))
            })
    }

    /// An optional integer key.
    pub fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        self.get(key).map(|_| self.get_usize(key)).transpose()
    }

    /// A required numeric key as f32.
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        let v = self.require(key)?;
        v.as_f64()
            .map(|x| x as f32)
            .ok_or_else(|| Error::metadata(key, format!("expected a number, found {v}")))
    }

    /// An optional numeric key.
    pub fn opt_f32(&self, key: &str) -> Result<Option<f32>> {
        self.get(key).map(|_| self.get_f32(key)).transpose()
    }

    /// A required string key.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        let v = self.require(key)?;
        v.as_str()
            .ok_or_else(|| Error::metadata(key, format!("expected a string, found {v}")))
    }

    /// An optional string key.
    pub fn opt_str(&self, key: &str) -> Result<Option<&str>> {
        self.get(key).map(|_| self.get_str(key)).transpose()
    }

    /// An optional bool key.
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(MetaValue::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(Error::metadata(key, format!("expected a bool, found {v}"))),
        }
    }

    /// A required array of strings.
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        self.get_array(key)?
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| Error::metadata(key, "expected an array of strings"))
            })
            .collect()
    }

    /// A required array of numbers as f32.
    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>> {
        self.get_array(key)?
            .iter()
            .map(|v| {
                v.as_f64()
                    .map(|x| x as f32)
                    .ok_or_else(|| Error::metadata(key, "expected an array of numbers"))
            })
            .collect()
    }

    /// A required array of integers as i64.
    pub fn get_i64_array(&self, key: &str) -> Result<Vec<i64>> {
        self.get_array(key)?
            .iter()
            .map(|v| {
                v.as_i64()
                    .ok_or_else(|| Error::metadata(key, "expected an array of integers"))
            })
            .collect()
    }

    fn get_array(&self, key: &str) -> Result<&[MetaValue]> {
        let v = self.require(key)?;
        v.as_array()
            .ok_or_else(|| Error::metadata(key, format!("expected an array, found {v}")))
    }

    fn require(&self, key: &str) -> Result<&MetaValue> {
        self.get(key).ok_or_else(|| Error::metadata(key, "missing"))
    }

    /// All tensors in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// Info for one tensor.
    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// A zero-copy view of one tensor, or a tensor error naming it.
    pub fn tensor(&self, name: &str) -> Result<TensorView<'_>> {
        let info = self
            .tensor_info(name)
            .ok_or_else(|| Error::tensor(name, "missing from the file"))?;
        Ok(self.view(info))
    }

    /// The view for a tensor info of this file.
    pub fn view<'a>(&'a self, info: &'a TensorInfo) -> TensorView<'a> {
        TensorView {
            name: &info.name,
            ty: info.ty,
            shape: &info.shape,
            data: &self.storage.bytes()[info.range.clone()],
        }
    }

    /// Raw bytes of a validated range (as stored in a [`TensorInfo`]).
    pub fn bytes(&self, range: Range<usize>) -> &[u8] {
        &self.storage.bytes()[range]
    }
}

fn align_up(pos: usize, alignment: usize) -> Option<usize> {
    pos.checked_add(alignment - 1)
        .map(|p| p / alignment * alignment)
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
    values: u64,
}

impl Cursor<'_> {
    fn context(&self, err: Error, what: &str) -> Error {
        match err {
            Error::Format { path, msg } => Error::Format {
                path,
                msg: format!("{what}: {msg}"),
            },
            other => other,
        }
    }

    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| {
                Error::format(
                    self.path,
                    format!("truncated at byte {} (needed {n} more bytes)", self.pos),
                )
            })?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("take returned N bytes"))
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn string(&mut self) -> Result<String> {
        let len = self.u64()?;
        if len > self.remaining() {
            return Err(Error::format(
                self.path,
                format!(
                    "string length {len} at byte {} runs past the end of the file",
                    self.pos
                ),
            ));
        }
        let at = self.pos;
        let raw = self.take(len as usize)?;
        String::from_utf8(raw.to_vec())
            .map_err(|_| Error::format(self.path, format!("string at byte {at} is not UTF-8")))
    }

    fn value(&mut self, ty: u32, depth: u32) -> Result<MetaValue> {
        self.values += 1;
        if self.values > MAX_TOTAL_VALUES {
            return Err(Error::format(self.path, "too many metadata values"));
        }
        let ty = ValueType::from_id(ty)
            .ok_or_else(|| Error::format(self.path, format!("unknown metadata value type {ty}")))?;
        Ok(match ty {
            ValueType::U8 => MetaValue::U8(self.array::<1>()?[0]),
            ValueType::I8 => MetaValue::I8(self.array::<1>()?[0] as i8),
            ValueType::U16 => MetaValue::U16(u16::from_le_bytes(self.array()?)),
            ValueType::I16 => MetaValue::I16(i16::from_le_bytes(self.array()?)),
            ValueType::U32 => MetaValue::U32(self.u32()?),
            ValueType::I32 => MetaValue::I32(i32::from_le_bytes(self.array()?)),
            ValueType::F32 => MetaValue::F32(f32::from_le_bytes(self.array()?)),
            ValueType::Bool => match self.array::<1>()?[0] {
                0 => MetaValue::Bool(false),
                1 => MetaValue::Bool(true),
                b => return Err(Error::format(self.path, format!("bool with value {b}"))),
            },
            ValueType::String => MetaValue::String(self.string()?),
            ValueType::U64 => MetaValue::U64(self.u64()?),
            ValueType::I64 => MetaValue::I64(i64::from_le_bytes(self.array()?)),
            ValueType::F64 => MetaValue::F64(f64::from_le_bytes(self.array()?)),
            ValueType::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(Error::format(self.path, "arrays nested too deeply"));
                }
                let elem_ty = self.u32()?;
                let elem = ValueType::from_id(elem_ty).ok_or_else(|| {
                    Error::format(self.path, format!("unknown array element type {elem_ty}"))
                })?;
                let n = self.u64()?;
                // Every element takes at least one byte, so a count beyond the bytes left is a lie.
                if n > self.remaining() || n > MAX_ARRAY_LEN {
                    return Err(Error::format(
                        self.path,
                        format!(
                            "array of {n} elements at byte {} cannot fit in the file",
                            self.pos
                        ),
                    ));
                }
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(self.value(elem_ty, depth + 1)?);
                }
                MetaValue::Array(elem, items)
            }
        })
    }
}
