//! The weights of a Hugging Face checkpoint: one `model.safetensors` or the shards listed in
//! `model.safetensors.index.json`, memory-mapped (never read whole) and indexed by name.

use super::config::read_json;
use crate::error::{Error, Result};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

/// Where one tensor lives.
#[derive(Clone, Debug)]
pub struct SourceTensor {
    /// Index into [`Checkpoint::files`].
    pub file: usize,
    /// Element type as stored.
    pub dtype: Dtype,
    /// Torch shape (`[out, in]` for linear weights).
    pub shape: Vec<usize>,
    /// Byte range in the mapped file.
    pub range: Range<usize>,
}

impl SourceTensor {
    /// Number of elements.
    pub fn n_elements(&self) -> usize {
        self.shape.iter().product()
    }
}

/// All safetensors files of a checkpoint, mapped.
pub struct Checkpoint {
    /// The mapped files, with their paths.
    pub files: Vec<(PathBuf, Mmap)>,
    /// Every tensor by its name as stored.
    pub tensors: BTreeMap<String, SourceTensor>,
}

/// The weight files of a checkpoint directory: the index (if sharded) and every shard.
pub fn weight_files(dir: &Path) -> Result<(Option<PathBuf>, Vec<PathBuf>)> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let map = read_json(&index)?;
        let Some(Value::Object(weight_map)) = map.get("weight_map") else {
            return Err(Error::format(&index, "`weight_map`: missing required key"));
        };
        let mut shards = BTreeSet::new();
        for (name, file) in weight_map {
            let Some(file) = file.as_str() else {
                return Err(Error::format(
                    &index,
                    format!("`weight_map.{name}`: expected a file name"),
                ));
            };
            let plain = Path::new(file)
                .components()
                .all(|c| matches!(c, Component::Normal(_)));
            if !plain || file.is_empty() {
                return Err(Error::format(
                    &index,
                    format!("`weight_map.{name}`: \"{file}\" is not a file inside the checkpoint directory"),
                ));
            }
            shards.insert(file.to_owned());
        }
        if shards.is_empty() {
            return Err(Error::format(&index, "`weight_map` is empty"));
        }
        return Ok((Some(index), shards.iter().map(|f| dir.join(f)).collect()));
    }
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok((None, vec![single]));
    }
    Err(Error::format(
        dir,
        "no model.safetensors or model.safetensors.index.json in the checkpoint directory",
    ))
}

impl Checkpoint {
    /// Maps and validates every weight file of `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        let (index, shard_paths) = weight_files(dir)?;
        let mut files = Vec::new();
        let mut tensors = BTreeMap::new();
        for path in shard_paths {
            let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
            // SAFETY: read-only map of a file we only read; like every mmap loader we rely on
            // nobody truncating the checkpoint while it is being converted.
            let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(&path, e))?;
            // `read_metadata` is the validating header parser of `SafeTensors::deserialize`:
            // offsets contiguous, sizes matching dtype x shape, buffer length exact.
            let (header_len, metadata) = SafeTensors::read_metadata(&map).map_err(|e| {
                Error::format(&path, format!("not a valid safetensors file: {e:?}"))
            })?;
            let data_start = 8 + header_len;
            let file_index = files.len();
            for (name, info) in metadata.tensors() {
                let (s, e) = info.data_offsets;
                let t = SourceTensor {
                    file: file_index,
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                    range: data_start + s..data_start + e,
                };
                if tensors.insert(name.clone(), t).is_some() {
                    return Err(Error::format(
                        &path,
                        format!("tensor `{name}` appears in more than one shard"),
                    ));
                }
            }
            files.push((path, map));
        }
        if let Some(index) = index {
            let map = read_json(&index)?;
            if let Some(Value::Object(weight_map)) = map.get("weight_map") {
                for (name, file) in weight_map {
                    let file = file.as_str().unwrap_or_default();
                    let found = tensors
                        .get(name)
                        .map(|t| files[t.file].0.file_name() == Some(file.as_ref()));
                    if found != Some(true) {
                        return Err(Error::format(
                            &index,
                            format!("tensor `{name}` is listed in {file} but not stored there"),
                        ));
                    }
                }
            }
        }
        Ok(Checkpoint { files, tensors })
    }

    /// The raw little-endian bytes of a tensor.
    pub fn bytes(&self, t: &SourceTensor) -> &[u8] {
        &self.files[t.file].1[t.range.clone()]
    }

    /// The file a tensor is stored in.
    pub fn path_of(&self, t: &SourceTensor) -> &Path {
        &self.files[t.file].0
    }
}

/// Bytes per element of the dtypes we convert, or `None` for any other.
pub fn float_dtype_size(dtype: Dtype) -> Option<usize> {
    match dtype {
        Dtype::F32 => Some(4),
        Dtype::F16 | Dtype::BF16 => Some(2),
        _ => None,
    }
}

/// Decodes little-endian bf16/f16/f32 values into `out` (`bytes.len()` must be
/// `out.len() * size`).
pub fn decode_floats(dtype: Dtype, bytes: &[u8], out: &mut [f32]) {
    match dtype {
        Dtype::F32 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        Dtype::F16 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
            }
        }
        Dtype::BF16 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16);
            }
        }
        // The planner refuses other dtypes; NaN makes the encoder's finiteness check fire
        // rather than panicking should that ever change.
        _ => out.fill(f32::NAN),
    }
}
