//! Bounds-checked GGUF reader over a memory map (or an owned buffer).
//!
//! GGUF files are downloaded from strangers, so every count, length, offset, shape and type id
//! in one is checked against the bytes actually present before it is used. A malformed file
//! ends in an [`Error::Format`] naming the key or tensor at fault, never in a panic, and parsing
//! one has bounded cost:
//!
//! - **Memory.** Tensor data is never copied (the map is viewed in place). Parsing allocates
//!   only the metadata values and the tensor table, and every such allocation is *charged
//!   before it is made* against [`HEADER_MEMORY_LIMIT`] (256 MiB): a [`MetaValue`] costs
//!   `size_of::<MetaValue>()` (32) bytes plus its string bytes, a key or tensor entry a fixed
//!   overhead plus twice its name (it is also the index key). Every value takes at least one
//!   byte of the file, so a file of `n` bytes makes us allocate at most about `min(32·n,
//!   256 MiB)`: the 32× amplification of `u8`/`bool` arrays is accepted because the absolute
//!   cap bounds it, and the cap is ~8× the largest real header (a 262 144-entry Gemma 3
//!   vocabulary with scores and token types needs about 30 MiB). An array's element count is
//!   checked against the bytes left at its element type's smallest encoding (1 byte for
//!   `u8`, 8 for a string, 12 for an array...) *before* its `Vec` is reserved, so a lying count
//!   fails before it costs anything.
//! - **Counts.** At most [`MAX_TENSORS`] tensors and [`MAX_KEYS`] metadata keys; tables are
//!   reserved only as large as the bytes present could fill at the entries' smallest
//!   encodings, so a lying count runs into the end of the file naming the entry it was on.
//! - **Stack.** Arrays nest at most [`MAX_ARRAY_DEPTH`] deep, the only recursion.
//! - **Time.** Linear in the file size: every value, key and tensor entry consumes at least
//!   one byte and is looked at once; the overlap check sorts the (at most 65 536) tensors;
//!   the indexes are `HashMap`s with std's randomly keyed SipHash, so colliding names cannot
//!   be forced.
//!
//! What the reader cannot know is whether tensor *contents* are sane: a Q8_0 block may carry a
//! NaN scale. [`crate::quant::validate_quantized_scales`] checks that, for a loader to call.

use super::{GgmlType, MetaValue, ValueType, DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_DIMS};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::fs::File;
use std::mem::size_of;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Most memory, in bytes, that parsing a header (metadata values, keys, tensor table) may
/// allocate; see the module documentation for how it is charged.
pub const HEADER_MEMORY_LIMIT: u64 = 256 << 20;
/// Deepest nesting of arrays we follow (an array of arrays is depth 2).
pub const MAX_ARRAY_DEPTH: u32 = 4;
/// Most tensors in one file (real T5Gemma / Gemma files have a few thousand at most).
pub const MAX_TENSORS: u64 = 1 << 16;
/// Most metadata keys in one file (real files have about a hundred).
pub const MAX_KEYS: u64 = 1 << 16;
/// Largest `general.alignment` accepted.
pub const MAX_ALIGNMENT: u32 = 1 << 16;

/// Smallest encoding of a key/value pair: empty key (8) + type (4) + a one-byte value.
const MIN_KV_BYTES: u64 = 8 + 4 + 1;
/// Smallest encoding of a tensor info: empty name (8) + n_dims (4) + one dim (8) + type (4) +
/// offset (8).
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 8 + 4 + 8;
/// Memory charged per metadata key beyond its name's bytes (charged when read) and once more
/// for the index's copy: the `(String, MetaValue)` entry, the index's `String` and slot.
const KEY_OVERHEAD: u64 = size_of::<(String, MetaValue)>() as u64 + size_of::<String>() as u64 + 16;
/// Memory charged per tensor beyond its name's bytes (charged when read) and once more for
/// the index's copy: the `TensorInfo`, its shape, the index's `String` and slot.
const TENSOR_OVERHEAD: u64 = size_of::<TensorInfo>() as u64
    + (MAX_DIMS * size_of::<usize>()) as u64
    + size_of::<String>() as u64
    + 16;

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

/// Tensor bytes copied out of the file map into anonymous memory that the kernel may back
/// with transparent huge pages (see [`GgufFile::copy_to_huge_pages`]).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
struct HugeCopy {
    map: memmap2::Mmap,
    /// `(file range, offset in map)`, disjoint and sorted by start.
    regions: Vec<(Range<usize>, usize)>,
}

impl HugeCopy {
    /// The copy of `range` if one region holds all of it.
    fn get(&self, range: &Range<usize>) -> Option<&[u8]> {
        let i = self
            .regions
            .partition_point(|(r, _)| r.start <= range.start);
        let (r, off) = self.regions.get(i.checked_sub(1)?)?;
        (range.end <= r.end).then(|| &self.map[off + (range.start - r.start)..][..range.len()])
    }
}

/// An open, validated GGUF file.
pub struct GgufFile {
    path: PathBuf,
    storage: Storage,
    /// Tensors that a decoder step reads, copied to huge pages (`None`: everything is read
    /// from `storage`).
    huge: Option<HugeCopy>,
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
        if !meta.is_file() {
            // A FIFO or device has no length to check offsets against, and mapping one may
            // block or fail in ways a regular file does not.
            return Err(Error::format(path, "is not a regular file"));
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
            budget: HEADER_MEMORY_LIMIT,
        };
        let fail = |msg: String| Error::format(&path, msg);
        if bytes.len() < 4 {
            return Err(fail(format!(
                "truncated: {} bytes is too short to be a GGUF file",
                bytes.len()
            )));
        }
        let magic = cur.u32()?;
        if magic != GGUF_MAGIC {
            return Err(fail(format!(
                "not a GGUF file (bad magic {:02x?}, expected \"GGUF\")",
                magic.to_le_bytes()
            )));
        }
        let version = cur.u32().map_err(|e| cur.context(e, "GGUF version"))?;
        match version {
            2 | 3 => {}
            1 => {
                return Err(fail(
                    "unsupported GGUF version 1 (it predates 64-bit counts; versions 2 and 3 \
                     are read)"
                        .into(),
                ))
            }
            v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => {
                return Err(fail(format!(
                    "unsupported big-endian GGUF file (version {})",
                    v.swap_bytes()
                )))
            }
            v => {
                return Err(fail(format!(
                    "unsupported GGUF version {v} (versions 2 and 3 are read)"
                )))
            }
        }
        let n_tensors = cur.u64().map_err(|e| cur.context(e, "tensor count"))?;
        let n_kv = cur
            .u64()
            .map_err(|e| cur.context(e, "metadata key count"))?;
        if n_tensors > MAX_TENSORS {
            return Err(fail(format!(
                "tensor count {n_tensors} is implausible (at most {MAX_TENSORS} are read)"
            )));
        }
        if n_kv > MAX_KEYS {
            return Err(fail(format!(
                "metadata key count {n_kv} is implausible (at most {MAX_KEYS} are read)"
            )));
        }
        // Reserve only what the bytes present could hold: a count that lies runs into the end
        // of the file below, with an error naming the entry it was reading.
        let kv_cap = n_kv.min(cur.remaining() / MIN_KV_BYTES) as usize;
        let mut metadata = Vec::with_capacity(kv_cap);
        let mut meta_index = HashMap::with_capacity(kv_cap);
        for i in 0..n_kv {
            let key = cur
                .string()
                .map_err(|e| cur.context(e, &format!("metadata key #{i}")))?;
            cur.charge(KEY_OVERHEAD + key.len() as u64)
                .map_err(|e| cur.context(e, &format!("metadata `{key}`")))?;
            let value = cur
                .u32()
                .and_then(|ty| cur.value(ty, 0))
                .map_err(|e| cur.context(e, &format!("metadata `{key}`")))?;
            if meta_index.insert(key.clone(), metadata.len()).is_some() {
                return Err(fail(format!("duplicate metadata key `{key}`")));
            }
            metadata.push((key, value));
        }
        let alignment = match meta_index.get("general.alignment").map(|&i| &metadata[i].1) {
            None => DEFAULT_ALIGNMENT,
            Some(MetaValue::U32(a)) if a.is_power_of_two() && *a <= MAX_ALIGNMENT => *a as usize,
            Some(other) => {
                return Err(fail(format!(
                    "metadata `general.alignment` must be a u32 power of two no larger than \
                     {MAX_ALIGNMENT}, found {:?} {other}",
                    other.value_type()
                )))
            }
        };

        struct Raw {
            name: String,
            shape: Vec<usize>,
            ty: GgmlType,
            offset: u64,
        }
        let mut raws =
            Vec::with_capacity(n_tensors.min(cur.remaining() / MIN_TENSOR_INFO_BYTES) as usize);
        for i in 0..n_tensors {
            let name = cur
                .string()
                .map_err(|e| cur.context(e, &format!("tensor #{i} name")))?;
            let raw = (|| {
                cur.charge(TENSOR_OVERHEAD + name.len() as u64)?;
                let n_dims = cur.u32()?;
                if n_dims == 0 || n_dims as usize > MAX_DIMS {
                    return Err(cur.error(format!("{n_dims} dimensions (1 to {MAX_DIMS} allowed)")));
                }
                let mut shape = Vec::with_capacity(n_dims as usize);
                for k in 0..n_dims {
                    let d = cur.u64()?;
                    let d = usize::try_from(d)
                        .ok()
                        .filter(|&d| d != 0 && d <= i64::MAX as usize)
                        .ok_or_else(|| {
                            cur.error(format!("dimension {k} is {d} (must be 1 to 2^63-1)"))
                        })?;
                    shape.push(d);
                }
                let ty = GgmlType::from_id(cur.u32()?).map_err(|m| cur.error(m))?;
                let offset = cur.u64()?;
                Ok(Raw {
                    name: String::new(),
                    shape,
                    ty,
                    offset,
                })
            })()
            .map_err(|e| cur.context(e, &format!("tensor `{name}`")))?;
            raws.push(Raw { name, ..raw });
        }
        // A file without tensors may end right after its header, unpadded.
        let data_start = match align_up(cur.pos, alignment) {
            Some(s) if s <= bytes.len() => s,
            _ if raws.is_empty() => bytes.len(),
            _ => {
                return Err(fail(format!(
                    "truncated: the tensor data section would start at byte {}, past the end \
                     of the file ({} bytes)",
                    cur.pos.next_multiple_of(alignment),
                    bytes.len()
                )))
            }
        };
        let data_len = bytes.len() - data_start;

        let mut tensors = Vec::with_capacity(raws.len());
        let mut tensor_index = HashMap::with_capacity(raws.len());
        for raw in raws {
            let bad = |msg: String| fail(format!("tensor `{}`: {msg}", raw.name));
            let n_elem = raw
                .shape
                .iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d))
                .ok_or_else(|| bad(format!("shape {:?}: element count overflows", raw.shape)))?;
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
                .ok_or_else(|| bad(format!("shape {:?}: byte size overflows", raw.shape)))?;
            if raw.offset % alignment as u64 != 0 {
                return Err(bad(format!(
                    "offset {} is not aligned to {alignment}",
                    raw.offset
                )));
            }
            let end = raw
                .offset
                .checked_add(size as u64)
                .filter(|&e| e <= data_len as u64);
            let Some(end) = end else {
                return Err(bad(format!(
                    "data [{}, +{size}) runs past the end of the file (data section is \
                     {data_len} bytes)",
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
                return Err(fail(format!(
                    "tensors `{}` and `{}` overlap (bytes {:?} and {:?})",
                    pair[0].name, pair[1].name, pair[0].range, pair[1].range
                )));
            }
        }
        Ok(GgufFile {
            path,
            storage,
            huge: None,
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
            data: self.bytes(info.range.clone()),
        }
    }

    /// Raw bytes of a validated range (as stored in a [`TensorInfo`]).
    ///
    /// # Panics
    /// If `range` is not inside the file; ranges from this file's [`TensorInfo`]s always are.
    pub fn bytes(&self, range: Range<usize>) -> &[u8] {
        if let Some(copy) = self.huge.as_ref().and_then(|h| h.get(&range)) {
            return copy;
        }
        &self.storage.bytes()[range]
    }

    /// Copies the byte `ranges` of a mapped file (the tensors that every decoder step reads)
    /// into one anonymous map advised for transparent huge pages, and drops the file pages
    /// they came from, chunk by chunk, so resident memory grows by one chunk at most. Streaming
    /// weights from 2 MiB pages instead of the file's 4 KiB pages spares a TLB miss every 4 KiB
    /// and lets the hardware prefetchers run on: the 270m decoder step was 15–23% faster.
    /// Later [`bytes`](Self::bytes) and [`view`](Self::view) calls read the copy.
    ///
    /// Returns the bytes copied: 0 (nothing changes) for in-memory files, off Linux, where
    /// transparent huge pages are disabled, when `T5G_HUGE_PAGES=0` is set, or if the
    /// anonymous map cannot be made. Ranges outside the file are ignored.
    pub fn copy_to_huge_pages(&mut self, ranges: &[Range<usize>]) -> usize {
        #[cfg(target_os = "linux")]
        return self.copy_to_huge_pages_linux(ranges);
        #[cfg(not(target_os = "linux"))]
        {
            let _ = ranges;
            0
        }
    }

    /// [`copy_to_huge_pages`](Self::copy_to_huge_pages) where `madvise` has the advice.
    #[cfg(target_os = "linux")]
    fn copy_to_huge_pages_linux(&mut self, ranges: &[Range<usize>]) -> usize {
        let Storage::Mapped(file_map) = &self.storage else {
            return 0;
        };
        if self.huge.is_some() || !huge_pages_available() {
            return 0;
        }
        let mut ranges: Vec<Range<usize>> = ranges
            .iter()
            .filter(|r| !r.is_empty() && r.end <= file_map.len())
            .cloned()
            .collect();
        ranges.sort_by_key(|r| r.start);
        let mut merged: Vec<Range<usize>> = Vec::new();
        for r in ranges {
            match merged.last_mut() {
                Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                _ => merged.push(r),
            }
        }
        // Each region starts on a 64-byte boundary of the copy (the map itself is page
        // aligned), as aligned as tensor data in the file.
        let mut regions = Vec::with_capacity(merged.len());
        let mut total = 0usize;
        for r in merged {
            regions.push((r.clone(), total));
            total = (total + r.len()).next_multiple_of(64);
        }
        if total == 0 {
            return 0;
        }
        let Ok(mut copy) = memmap2::MmapMut::map_anon(total) else {
            return 0;
        };
        // Only a hint: without it the copy still works, on small pages.
        let _ = copy.advise(memmap2::Advice::HugePage);
        const CHUNK: usize = 32 << 20;
        // Advice ranges are aligned to 64 KiB, a multiple of every page size Linux uses (4, 16
        // and 64 KiB), so they are page aligned whatever this kernel's page size.
        const PAGE: usize = 64 << 10;
        for (r, off) in &regions {
            for start in (r.start..r.end).step_by(CHUNK) {
                let end = (start + CHUNK).min(r.end);
                // One call maps the chunk's file pages (Linux 5.14+) instead of a fault per
                // page; where unsupported the copy faults them in itself.
                let (lo, hi) = (
                    start / PAGE * PAGE,
                    end.next_multiple_of(PAGE).min(file_map.len()),
                );
                let _ = file_map.advise_range(memmap2::Advice::PopulateRead, lo, hi - lo);
                copy[off + (start - r.start)..][..end - start]
                    .copy_from_slice(&file_map[start..end]);
                // The file pages wholly inside this chunk are no longer read through the map
                // (those at its edges stay until the process ends: at most 128 KiB a chunk).
                let (lo, hi) = (start.next_multiple_of(PAGE), end / PAGE * PAGE);
                if lo < hi {
                    // SAFETY: the map is a read-only shared file mapping: dropping its pages
                    // only means a later read of them faults the same file bytes back in, and
                    // after this call every read of these ranges goes to the copy anyway.
                    let _ = unsafe {
                        file_map.unchecked_advise_range(
                            memmap2::UncheckedAdvice::DontNeed,
                            lo,
                            hi - lo,
                        )
                    };
                }
            }
        }
        let Ok(map) = copy.make_read_only() else {
            return 0;
        };
        self.huge = Some(HugeCopy { map, regions });
        total
    }
}

/// Whether [`GgufFile::copy_to_huge_pages`] may help: transparent huge pages enabled
/// (`always` or `madvise`), and `T5G_HUGE_PAGES` not set to `0`.
#[cfg(target_os = "linux")]
fn huge_pages_available() -> bool {
    if std::env::var_os("T5G_HUGE_PAGES").is_some_and(|v| v == "0") {
        return false;
    }
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .is_ok_and(|s| !s.contains("[never]"))
}

fn align_up(pos: usize, alignment: usize) -> Option<usize> {
    pos.checked_add(alignment - 1)
        .map(|p| p / alignment * alignment)
}

/// Smallest number of bytes one value of type `ty` takes in a file.
fn min_encoded_size(ty: ValueType) -> u64 {
    match ty {
        ValueType::U8 | ValueType::I8 | ValueType::Bool => 1,
        ValueType::U16 | ValueType::I16 => 2,
        ValueType::U32 | ValueType::I32 | ValueType::F32 => 4,
        ValueType::U64 | ValueType::I64 | ValueType::F64 => 8,
        // Length prefix of an empty string.
        ValueType::String => 8,
        // Element type and count of an empty array.
        ValueType::Array => 4 + 8,
    }
}

/// Bytes one metadata value occupies in memory before any heap data it owns.
const VALUE_BYTES: u64 = size_of::<MetaValue>() as u64;

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
    /// Bytes of memory the header parse may still allocate.
    budget: u64,
}

impl Cursor<'_> {
    fn error(&self, msg: impl Into<String>) -> Error {
        Error::format(self.path, msg)
    }

    /// Prefixes a format error's message with what was being read.
    fn context(&self, err: Error, what: &str) -> Error {
        match err {
            Error::Format { path, msg } => Error::Format {
                path,
                msg: format!("{what}: {msg}"),
            },
            other => other,
        }
    }

    /// Takes `bytes` from the memory budget, before they are allocated.
    fn charge(&mut self, bytes: u64) -> Result<()> {
        match self.budget.checked_sub(bytes) {
            Some(left) => {
                self.budget = left;
                Ok(())
            }
            None => Err(self.error(format!(
                "the header needs more than {} MiB of memory to hold; refusing it as hostile",
                HEADER_MEMORY_LIMIT >> 20
            ))),
        }
    }

    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| {
                self.error(format!(
                    "truncated at byte {} (needed {n} more bytes, {} left)",
                    self.pos,
                    self.remaining()
                ))
            })?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn string(&mut self) -> Result<String> {
        let at = self.pos;
        let len = self.u64()?;
        if len > self.remaining() {
            return Err(self.error(format!(
                "string length {len} at byte {at} runs past the end of the file ({} bytes left)",
                self.remaining()
            )));
        }
        self.charge(len)?;
        let raw = self.take(len as usize)?;
        match std::str::from_utf8(raw) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(self.error(format!(
                "string at byte {at} is not valid UTF-8 (bad byte at offset {} of {len})",
                e.valid_up_to()
            ))),
        }
    }

    /// Reads one value of type id `ty`; `depth` is the number of arrays it is nested in.
    fn value(&mut self, ty: u32, depth: u32) -> Result<MetaValue> {
        let ty = ValueType::from_id(ty)
            .ok_or_else(|| self.error(format!("unknown metadata value type id {ty}")))?;
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
                b => {
                    return Err(self.error(format!(
                        "bool at byte {} has value {b} (must be 0 or 1)",
                        self.pos - 1
                    )))
                }
            },
            ValueType::String => MetaValue::String(self.string()?),
            ValueType::U64 => MetaValue::U64(self.u64()?),
            ValueType::I64 => MetaValue::I64(i64::from_le_bytes(self.array()?)),
            ValueType::F64 => MetaValue::F64(f64::from_le_bytes(self.array()?)),
            ValueType::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(
                        self.error(format!("arrays nested more than {MAX_ARRAY_DEPTH} deep"))
                    );
                }
                let elem_id = self.u32()?;
                let elem = ValueType::from_id(elem_id).ok_or_else(|| {
                    self.error(format!("unknown array element type id {elem_id}"))
                })?;
                let at = self.pos;
                let n = self.u64()?;
                // Checked before anything is reserved for the elements: their smallest
                // encodings must fit in the bytes left, and their memory in the budget.
                let fits = match n.checked_mul(min_encoded_size(elem)) {
                    Some(need) => need <= self.remaining(),
                    None => false,
                };
                if !fits {
                    return Err(self.error(format!(
                        "array of {n} {elem:?} elements at byte {at} runs past the end of the \
                         file (each takes at least {} bytes, {} left)",
                        min_encoded_size(elem),
                        self.remaining()
                    )));
                }
                // n <= remaining bytes, so this cannot overflow.
                self.charge(n * VALUE_BYTES)?;
                let mut items = Vec::with_capacity(n as usize);
                for i in 0..n {
                    let item = self
                        .value(elem_id, depth + 1)
                        .map_err(|e| self.context(e, &format!("element {i}")))?;
                    items.push(item);
                }
                MetaValue::Array(elem, items)
            }
        })
    }
}
