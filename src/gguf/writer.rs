//! GGUF v3 writer: metadata and tensor infos first, then 32-byte aligned tensor data streamed
//! from a callback, so converting a multi-gigabyte checkpoint never holds it all in memory.

use super::{GgmlType, MetaValue, DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_VERSION, MAX_DIMS};
use crate::error::{Error, Result};
use std::io::{self, BufWriter, Write};
use std::path::Path;

struct PlannedTensor {
    name: String,
    shape: Vec<usize>,
    ty: GgmlType,
    size: usize,
    offset: usize,
}

/// Collects metadata and tensor descriptions, then writes a file in one pass.
#[derive(Default)]
pub struct GgufWriter {
    metadata: Vec<(String, MetaValue)>,
    tensors: Vec<PlannedTensor>,
    data_size: usize,
}

impl GgufWriter {
    /// An empty file description; `general.alignment` is written as 32.
    pub fn new() -> Self {
        let mut w = GgufWriter::default();
        w.add_metadata(
            "general.alignment",
            MetaValue::U32(DEFAULT_ALIGNMENT as u32),
        );
        w
    }

    /// Adds or replaces a metadata key.
    pub fn add_metadata(&mut self, key: impl Into<String>, value: MetaValue) {
        let key = key.into();
        match self.metadata.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.metadata.push((key, value)),
        }
    }

    /// Declares a tensor (`shape` in ggml order: `shape[0]` is the row length) and returns the
    /// number of bytes its data must have.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        ty: GgmlType,
        shape: &[usize],
    ) -> Result<usize> {
        let name = name.into();
        if shape.is_empty() || shape.len() > MAX_DIMS || shape.contains(&0) {
            return Err(Error::tensor(name, format!("cannot write shape {shape:?}")));
        }
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(Error::tensor(name, "declared twice"));
        }
        let n_rows = shape[1..].iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        let size = ty
            .row_bytes(shape[0])
            .zip(n_rows)
            .and_then(|(row, rows)| row.checked_mul(rows))
            .ok_or_else(|| {
                Error::tensor(&name, format!("shape {shape:?} does not fit type {ty} (row length must be a multiple of {})", ty.block_len()))
            })?;
        let offset = self.data_size;
        self.data_size = (offset + size).next_multiple_of(DEFAULT_ALIGNMENT);
        self.tensors.push(PlannedTensor {
            name,
            shape: shape.to_vec(),
            ty,
            size,
            offset,
        });
        Ok(size)
    }

    /// Number of tensors declared so far.
    pub fn tensor_count(&self) -> usize {
        self.tensors.len()
    }

    /// Writes the whole file to `out`. `fill(i, w)` must write exactly the declared number of
    /// bytes of the i-th declared tensor.
    pub fn write_to<W: Write>(
        &self,
        out: W,
        mut fill: impl FnMut(usize, &mut dyn Write) -> Result<()>,
    ) -> Result<()> {
        let io_err = |e: io::Error| Error::io("<gguf output>", e);
        let mut out = CountingWriter {
            inner: out,
            written: 0,
        };
        let mut header = Vec::new();
        header.extend_from_slice(&GGUF_MAGIC.to_le_bytes());
        header.extend_from_slice(&GGUF_VERSION.to_le_bytes());
        header.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        header.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            put_string(&mut header, key);
            header.extend_from_slice(&(value.value_type() as u32).to_le_bytes());
            put_value(&mut header, value);
        }
        for t in &self.tensors {
            put_string(&mut header, &t.name);
            header.extend_from_slice(&(t.shape.len() as u32).to_le_bytes());
            for &d in &t.shape {
                header.extend_from_slice(&(d as u64).to_le_bytes());
            }
            header.extend_from_slice(&t.ty.id().to_le_bytes());
            header.extend_from_slice(&(t.offset as u64).to_le_bytes());
        }
        header.resize(header.len().next_multiple_of(DEFAULT_ALIGNMENT), 0);
        out.write_all(&header).map_err(io_err)?;
        let data_start = out.written;
        for (i, t) in self.tensors.iter().enumerate() {
            let pad = data_start + t.offset - out.written;
            out.write_all(&vec![0u8; pad]).map_err(io_err)?;
            let before = out.written;
            fill(i, &mut out)?;
            let wrote = out.written - before;
            if wrote != t.size {
                return Err(Error::tensor(
                    &t.name,
                    format!("writer produced {wrote} bytes, expected {}", t.size),
                ));
            }
        }
        let pad = data_start + self.data_size - out.written;
        out.write_all(&vec![0u8; pad]).map_err(io_err)?;
        out.flush().map_err(io_err)
    }

    /// Writes to `path` atomically: a temporary file beside it, renamed into place only when
    /// complete, so a failure never leaves a partial file.
    pub fn write_file(
        &self,
        path: &Path,
        fill: impl FnMut(usize, &mut dyn Write) -> Result<()>,
    ) -> Result<()> {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let file_name = path
            .file_name()
            .ok_or_else(|| Error::invalid(format!("{}: not a file path", path.display())))?;
        let tmp = dir.join(format!(
            ".{}.tmp-{}",
            file_name.to_string_lossy(),
            std::process::id()
        ));
        let result = (|| {
            let file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
            let mut buffered = BufWriter::with_capacity(1 << 20, file);
            self.write_to(&mut buffered, fill).map_err(|e| match e {
                Error::Io { source, .. } => Error::io(path, source),
                other => other,
            })?;
            let file = buffered
                .into_inner()
                .map_err(|e| Error::io(path, e.into_error()))?;
            file.sync_all().map_err(|e| Error::io(path, e))?;
            std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

struct CountingWriter<W> {
    inner: W,
    written: usize,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &MetaValue) {
    match v {
        MetaValue::U8(x) => out.push(*x),
        MetaValue::I8(x) => out.push(*x as u8),
        MetaValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::Bool(x) => out.push(*x as u8),
        MetaValue::String(s) => put_string(out, s),
        MetaValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::Array(ty, items) => {
            out.extend_from_slice(&(*ty as u32).to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                put_value(out, item);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::{GgufFile, ValueType};

    #[test]
    fn roundtrip_metadata_and_tensors() {
        let mut w = GgufWriter::new();
        w.add_metadata("general.architecture", MetaValue::String("t5gemma".into()));
        w.add_metadata("x.f", MetaValue::F32(1.5));
        w.add_metadata("x.arr", MetaValue::i32_array([1, -2, 3]));
        w.add_metadata("x.strs", MetaValue::string_array(["a", "bé"]));
        w.add_metadata(
            "x.nested",
            MetaValue::Array(
                ValueType::Array,
                vec![MetaValue::i32_array([7]), MetaValue::i32_array([])],
            ),
        );
        let a = w.add_tensor("a", GgmlType::F32, &[3, 2]).unwrap();
        let b = w.add_tensor("b", GgmlType::Q8_0, &[64]).unwrap();
        assert_eq!((a, b), (24, 68));
        let mut buf = Vec::new();
        w.write_to(&mut buf, |i, out| {
            let n = [a, b][i];
            out.write_all(&vec![i as u8 + 1; n])
                .map_err(|e| Error::io("x", e))
        })
        .unwrap();
        let f = GgufFile::from_bytes(buf).unwrap();
        assert_eq!(f.get_str("general.architecture").unwrap(), "t5gemma");
        assert_eq!(f.get_f32("x.f").unwrap(), 1.5);
        assert_eq!(f.get_i64_array("x.arr").unwrap(), vec![1, -2, 3]);
        assert_eq!(f.get_str_array("x.strs").unwrap(), vec!["a", "bé"]);
        assert_eq!(f.get("x.nested").unwrap().as_array().unwrap().len(), 2);
        let ta = f.tensor("a").unwrap();
        assert_eq!(ta.shape, &[3, 2]);
        assert!(ta.data.iter().all(|&x| x == 1));
        let tb = f.tensor("b").unwrap();
        assert_eq!(tb.ty, GgmlType::Q8_0);
        assert_eq!(tb.data.len(), 68);
        assert!(tb.data.iter().all(|&x| x == 2));
        assert_eq!(f.data_start() % 32, 0);
        assert_eq!(f.tensor_info("b").unwrap().range.start % 32, 0);
    }

    #[test]
    fn short_fill_is_an_error() {
        let mut w = GgufWriter::new();
        w.add_tensor("a", GgmlType::F32, &[4]).unwrap();
        let err = w.write_to(Vec::new(), |_, out| {
            out.write_all(&[0; 3]).map_err(|e| Error::io("x", e))
        });
        assert!(err.unwrap_err().to_string().contains("expected 16"));
    }

    #[test]
    fn huge_page_copy_reads_the_same_bytes() {
        let mut w = GgufWriter::new();
        // Sizes that straddle pages, so the copy's file pages are dropped only in part.
        let sizes = [3 * 4096 + 100, 5000, 70_000];
        for (i, n) in sizes.iter().enumerate() {
            w.add_tensor(format!("t{i}"), GgmlType::F32, &[n / 4])
                .unwrap();
        }
        let pattern = |i: usize, k: usize| (k * 31 + i * 7 + k / 251) as u8;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.gguf");
        w.write_file(&path, |i, out| {
            let bytes: Vec<u8> = (0..sizes[i] / 4 * 4).map(|k| pattern(i, k)).collect();
            out.write_all(&bytes).map_err(|e| Error::io("x", e))
        })
        .unwrap();
        let mut f = GgufFile::open(&path).unwrap();
        let ranges: Vec<_> = (0..3)
            .map(|i| f.tensor_info(&format!("t{i}")).unwrap().range.clone())
            .collect();
        let before: Vec<Vec<u8>> = ranges.iter().map(|r| f.bytes(r.clone()).to_vec()).collect();
        let past_end = f.file_size() + 10..f.file_size() + 20;
        // t0 twice (merged), t2, and a range outside the file (ignored).
        let asked = [
            ranges[0].clone(),
            ranges[2].clone(),
            ranges[0].clone(),
            past_end,
        ];
        let copied = f.copy_to_huge_pages(&asked);
        assert!(
            copied == 0 || copied >= ranges[0].len() + ranges[2].len(),
            "copied {copied}"
        );
        assert_eq!(f.copy_to_huge_pages(&ranges), 0, "a second copy is refused");
        for (i, r) in ranges.iter().enumerate() {
            assert_eq!(f.bytes(r.clone()), &before[i][..], "tensor {i}");
            assert_eq!(f.tensor(&format!("t{i}")).unwrap().data, &before[i][..]);
            let inner = r.start + 9..r.end - 5;
            assert_eq!(f.bytes(inner), &before[i][9..before[i].len() - 5]);
        }
        // A range from inside t0 into t1 is served from the map, whole.
        let across = ranges[0].end - 8..ranges[1].start + 8;
        let gap = ranges[1].start - ranges[0].end;
        let got = f.bytes(across);
        assert_eq!(&got[..8], &before[0][before[0].len() - 8..]);
        assert_eq!(&got[8 + gap..], &before[1][..8]);
        // In-memory files are never copied.
        let mut mem = GgufFile::from_bytes(std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(mem.copy_to_huge_pages(&ranges), 0);
    }
}
