//! A small, bounds-checked reader (and writer) for SentencePiece's `ModelProto`
//! (`tokenizer.model`), enough to rebuild a Gemma tokenizer: the pieces with their scores and
//! types, the special ids of the trainer spec and the normalizer switches.
//!
//! Only the fields below are interpreted; every other field is skipped by wire type, as a
//! protobuf parser must. Every length is checked against the buffer and varints are limited to
//! 10 bytes, so garbage input gives an error, never a panic or a huge allocation.
//!
//! ```text
//! ModelProto      1: repeated SentencePiece  2: TrainerSpec  3: NormalizerSpec
//! SentencePiece   1: piece (string)  2: score (float)  3: type (enum, default NORMAL)
//! TrainerSpec     3: model_type  35: byte_fallback  40: unk_id  41: bos_id  42: eos_id  43: pad_id
//! NormalizerSpec  1: name  3: add_dummy_prefix  4: remove_extra_whitespaces  5: escape_whitespaces
//! ```

use crate::error::{Error, Result};

/// A piece's kind: SentencePiece's `Type` enum, whose values are also llama.cpp's
/// `tokenizer.ggml.token_type` values, so it is the tokenizer's own type.
pub use crate::tokenizer::TokenType as PieceType;

/// One vocabulary entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Piece {
    /// The piece text (`▁` stands for a space).
    pub piece: String,
    /// Log-probability (unigram) or merge rank score (BPE).
    pub score: f32,
    /// What the piece is.
    pub kind: PieceType,
}

/// The segmentation algorithm of the model (`TrainerSpec.model_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelType {
    /// Unigram language model (1, the default).
    Unigram,
    /// Byte-pair encoding (2); Gemma's tokenizers are BPE.
    Bpe,
    /// Whitespace-delimited words (3).
    Word,
    /// Characters (4).
    Char,
}

/// The parts of a SentencePiece `ModelProto` a Gemma tokenizer needs.
#[derive(Clone, Debug, PartialEq)]
pub struct SentencePieceModel {
    /// The vocabulary, in id order.
    pub pieces: Vec<Piece>,
    /// Segmentation algorithm.
    pub model_type: ModelType,
    /// Id of the unknown piece (-1 when disabled).
    pub unk_id: i32,
    /// Id of the beginning-of-sequence piece (-1 when disabled).
    pub bos_id: i32,
    /// Id of the end-of-sequence piece (-1 when disabled).
    pub eos_id: i32,
    /// Id of the padding piece (-1 when disabled).
    pub pad_id: i32,
    /// Unknown characters are spelled as `<0xAB>` byte pieces instead of `unk`.
    pub byte_fallback: bool,
    /// A `▁` is prepended to the input before segmentation.
    pub add_dummy_prefix: bool,
    /// Runs of whitespace are collapsed and leading/trailing whitespace dropped.
    pub remove_extra_whitespaces: bool,
    /// Spaces are replaced by `▁`.
    pub escape_whitespaces: bool,
    /// Name of the normalization rule (`identity` for Gemma).
    pub normalizer_name: String,
}

impl Default for SentencePieceModel {
    /// SentencePiece's proto2 defaults with an empty vocabulary.
    fn default() -> Self {
        SentencePieceModel {
            pieces: Vec::new(),
            model_type: ModelType::Unigram,
            unk_id: 0,
            bos_id: 1,
            eos_id: 2,
            pad_id: -1,
            byte_fallback: false,
            add_dummy_prefix: true,
            remove_extra_whitespaces: true,
            escape_whitespaces: true,
            normalizer_name: String::new(),
        }
    }
}

/// Largest vocabulary we accept; real ones have at most a few hundred thousand pieces.
const MAX_PIECES: usize = 1 << 24;

impl SentencePieceModel {
    /// Parses the bytes of a `tokenizer.model` file. Errors say which field at which offset
    /// is malformed; they carry no file name (the caller adds it).
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let mut model = SentencePieceModel::default();
        let mut r = Reader::new(bytes, 0);
        while let Some((field, value)) = r.next_field()? {
            match (field, value) {
                (1, Value::Len(sub, at)) => {
                    if model.pieces.len() >= MAX_PIECES {
                        return Err(bad(at, "more than 16M pieces"));
                    }
                    let piece = parse_piece(sub, at, model.pieces.len())?;
                    model.pieces.push(piece);
                }
                (2, Value::Len(sub, at)) => parse_trainer_spec(sub, at, &mut model)?,
                (3, Value::Len(sub, at)) => parse_normalizer_spec(sub, at, &mut model)?,
                (1..=3, _) => {
                    return Err(bad(
                        r.at(),
                        &format!("field {field} has the wrong wire type"),
                    ))
                }
                _ => {}
            }
        }
        if model.pieces.is_empty() {
            return Err(bad(0, "no pieces (not a SentencePiece model?)"));
        }
        let n = model.pieces.len();
        for (name, id) in [
            ("unk_id", model.unk_id),
            ("bos_id", model.bos_id),
            ("eos_id", model.eos_id),
            ("pad_id", model.pad_id),
        ] {
            if id < -1 || id >= 0 && id as usize >= n {
                return Err(bad(
                    0,
                    &format!("trainer_spec.{name} = {id} is outside the {n} pieces"),
                ));
            }
        }
        Ok(model)
    }

    /// Serializes the model back to `ModelProto` bytes (the fields this module knows). Meant
    /// for tests that need a small `tokenizer.model`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for p in &self.pieces {
            let mut sub = Vec::new();
            put_len(&mut sub, 1, p.piece.as_bytes());
            put_key(&mut sub, 2, 5);
            sub.extend_from_slice(&p.score.to_le_bytes());
            put_varint_field(&mut sub, 3, p.kind.id() as u64);
            put_len(&mut out, 1, &sub);
        }
        let mut trainer = Vec::new();
        let model_type = match self.model_type {
            ModelType::Unigram => 1,
            ModelType::Bpe => 2,
            ModelType::Word => 3,
            ModelType::Char => 4,
        };
        put_varint_field(&mut trainer, 3, model_type);
        put_varint_field(&mut trainer, 35, self.byte_fallback as u64);
        // int32 fields are sign-extended to 64 bits on the wire.
        put_varint_field(&mut trainer, 40, self.unk_id as i64 as u64);
        put_varint_field(&mut trainer, 41, self.bos_id as i64 as u64);
        put_varint_field(&mut trainer, 42, self.eos_id as i64 as u64);
        put_varint_field(&mut trainer, 43, self.pad_id as i64 as u64);
        put_len(&mut out, 2, &trainer);
        let mut norm = Vec::new();
        put_len(&mut norm, 1, self.normalizer_name.as_bytes());
        put_varint_field(&mut norm, 3, self.add_dummy_prefix as u64);
        put_varint_field(&mut norm, 4, self.remove_extra_whitespaces as u64);
        put_varint_field(&mut norm, 5, self.escape_whitespaces as u64);
        put_len(&mut out, 3, &norm);
        out
    }

    /// The id of a piece, by exact text.
    pub fn find(&self, piece: &str) -> Option<usize> {
        self.pieces.iter().position(|p| p.piece == piece)
    }
}

fn parse_piece(bytes: &[u8], base: usize, index: usize) -> Result<Piece> {
    let mut r = Reader::new(bytes, base);
    let mut piece = None;
    let mut score = 0.0;
    let mut kind = PieceType::Normal;
    while let Some((field, value)) = r.next_field()? {
        match (field, value) {
            (1, Value::Len(s, at)) => {
                let s = std::str::from_utf8(s)
                    .map_err(|_| bad(at, &format!("piece {index} is not UTF-8")))?;
                piece = Some(s.to_owned());
            }
            (2, Value::Fixed32(v)) => score = f32::from_bits(v),
            (3, Value::Varint(v)) => {
                kind = i32::try_from(v)
                    .ok()
                    .and_then(PieceType::from_i32)
                    .ok_or_else(|| bad(r.at(), &format!("piece {index} has unknown type {v}")))?;
            }
            (1..=3, _) => {
                return Err(bad(
                    r.at(),
                    &format!("piece {index}: field {field} has the wrong wire type"),
                ))
            }
            _ => {}
        }
    }
    let piece = piece.ok_or_else(|| bad(base, &format!("piece {index} has no text")))?;
    Ok(Piece { piece, score, kind })
}

fn parse_trainer_spec(bytes: &[u8], base: usize, m: &mut SentencePieceModel) -> Result<()> {
    let mut r = Reader::new(bytes, base);
    while let Some((field, value)) = r.next_field()? {
        let Value::Varint(v) = value else {
            if matches!(field, 3 | 35 | 40..=43) {
                return Err(bad(
                    r.at(),
                    &format!("trainer_spec field {field} has the wrong wire type"),
                ));
            }
            continue;
        };
        // int32 values arrive sign-extended to 64 bits; truncation is the proto rule.
        let as_i32 = v as i64 as i32;
        match field {
            3 => {
                m.model_type = match v {
                    1 => ModelType::Unigram,
                    2 => ModelType::Bpe,
                    3 => ModelType::Word,
                    4 => ModelType::Char,
                    _ => return Err(bad(r.at(), &format!("unknown trainer_spec.model_type {v}"))),
                }
            }
            35 => m.byte_fallback = v != 0,
            40 => m.unk_id = as_i32,
            41 => m.bos_id = as_i32,
            42 => m.eos_id = as_i32,
            43 => m.pad_id = as_i32,
            _ => {}
        }
    }
    Ok(())
}

fn parse_normalizer_spec(bytes: &[u8], base: usize, m: &mut SentencePieceModel) -> Result<()> {
    let mut r = Reader::new(bytes, base);
    while let Some((field, value)) = r.next_field()? {
        match (field, value) {
            (1, Value::Len(s, at)) => {
                m.normalizer_name = std::str::from_utf8(s)
                    .map_err(|_| bad(at, "normalizer_spec.name is not UTF-8"))?
                    .to_owned();
            }
            (3, Value::Varint(v)) => m.add_dummy_prefix = v != 0,
            (4, Value::Varint(v)) => m.remove_extra_whitespaces = v != 0,
            (5, Value::Varint(v)) => m.escape_whitespaces = v != 0,
            (1 | 3 | 4 | 5, _) => {
                return Err(bad(
                    r.at(),
                    &format!("normalizer_spec field {field} has the wrong wire type"),
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

fn bad(offset: usize, msg: &str) -> Error {
    Error::invalid(format!(
        "malformed SentencePiece model at byte {offset}: {msg}"
    ))
}

/// One decoded field value. `Len` carries the payload and its absolute offset.
enum Value<'a> {
    Varint(u64),
    Fixed64,
    Len(&'a [u8], usize),
    Fixed32(u32),
}

struct Reader<'a> {
    bytes: &'a [u8],
    /// Absolute offset of `bytes[0]` in the whole file, for error messages.
    base: usize,
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], base: usize) -> Self {
        Reader {
            bytes,
            base,
            pos: 0,
        }
    }

    fn at(&self) -> usize {
        self.base + self.pos
    }

    fn varint(&mut self) -> Result<u64> {
        let start = self.at();
        let mut v = 0u64;
        for i in 0..10 {
            let Some(&b) = self.bytes.get(self.pos) else {
                return Err(bad(start, "truncated varint"));
            };
            self.pos += 1;
            if i == 9 && b > 1 {
                return Err(bad(start, "varint overflows 64 bits"));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(bad(start, "varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let start = self.at();
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| {
                bad(
                    start,
                    &format!(
                        "field of {n} bytes runs past the end ({} left)",
                        self.bytes.len() - self.pos
                    ),
                )
            })?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// The next `(field number, value)`, or `None` at the end of the message.
    fn next_field(&mut self) -> Result<Option<(u64, Value<'a>)>> {
        if self.pos == self.bytes.len() {
            return Ok(None);
        }
        let key_at = self.at();
        let key = self.varint()?;
        let field = key >> 3;
        if field == 0 {
            return Err(bad(key_at, "field number 0"));
        }
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed64
            }
            2 => {
                let n = self.varint()?;
                let n = usize::try_from(n).map_err(|_| bad(key_at, "length overflows"))?;
                let at = self.at();
                Value::Len(self.take(n)?, at)
            }
            5 => {
                let b = self.take(4)?;
                Value::Fixed32(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            w => {
                return Err(bad(
                    key_at,
                    &format!("unsupported wire type {w} (field {field})"),
                ));
            }
        };
        Ok(Some((field, value)))
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, field: u64, wire: u64) {
    put_varint(out, field << 3 | wire);
}

fn put_varint_field(out: &mut Vec<u8>, field: u64, v: u64) {
    put_key(out, field, 0);
    put_varint(out, v);
}

fn put_len(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_key(out, field, 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SentencePieceModel {
        let mk = |piece: &str, score: f32, kind| Piece {
            piece: piece.into(),
            score,
            kind,
        };
        SentencePieceModel {
            pieces: vec![
                mk("<pad>", 0.0, PieceType::Control),
                mk("<eos>", 0.0, PieceType::Control),
                mk("<bos>", 0.0, PieceType::Control),
                mk("<unk>", 0.0, PieceType::Unknown),
                mk("<0x00>", 0.0, PieceType::Byte),
                mk("▁the", -1.5, PieceType::Normal),
                mk("<start_of_turn>", 0.0, PieceType::UserDefined),
                mk("<unused0>", 0.0, PieceType::Unused),
            ],
            model_type: ModelType::Bpe,
            unk_id: 3,
            bos_id: 2,
            eos_id: 1,
            pad_id: 0,
            byte_fallback: true,
            add_dummy_prefix: false,
            remove_extra_whitespaces: false,
            escape_whitespaces: true,
            normalizer_name: "identity".into(),
        }
    }

    #[test]
    fn roundtrip() {
        let m = sample();
        let parsed = SentencePieceModel::parse(&m.encode()).unwrap();
        assert_eq!(parsed, m);
        assert_eq!(parsed.find("▁the"), Some(5));
    }

    #[test]
    fn defaults_apply_when_fields_are_absent() {
        let mut bytes = Vec::new();
        for piece in [&b"a"[..], b"b", b"c"] {
            let mut sub = Vec::new();
            put_len(&mut sub, 1, piece);
            put_len(&mut bytes, 1, &sub);
        }
        let m = SentencePieceModel::parse(&bytes).unwrap();
        assert_eq!(m.pieces[0].kind, PieceType::Normal);
        assert_eq!(m.pieces[0].score, 0.0);
        assert_eq!((m.unk_id, m.bos_id, m.eos_id, m.pad_id), (0, 1, 2, -1));
        assert!(m.add_dummy_prefix);
        assert_eq!(m.model_type, ModelType::Unigram);
    }

    #[test]
    fn negative_ids_decode_from_ten_byte_varints() {
        let mut m = sample();
        m.pad_id = -1;
        let parsed = SentencePieceModel::parse(&m.encode()).unwrap();
        assert_eq!(parsed.pad_id, -1);
    }

    #[test]
    fn unknown_fields_are_skipped() {
        let mut bytes = sample().encode();
        put_varint_field(&mut bytes, 9, 12345);
        put_len(&mut bytes, 4, b"self test data");
        put_key(&mut bytes, 7, 1);
        bytes.extend_from_slice(&[0; 8]);
        assert_eq!(SentencePieceModel::parse(&bytes).unwrap(), sample());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let good = sample().encode();
        // Every truncation of a valid file.
        for n in 0..good.len() {
            let _ = SentencePieceModel::parse(&good[..n]);
        }
        // Every single-byte corruption.
        for i in 0..good.len() {
            let mut b = good.clone();
            b[i] ^= 0xa5;
            let _ = SentencePieceModel::parse(&b);
        }
        // Pseudo-random bytes.
        let mut x = 0x1234_5678u32;
        for len in [1usize, 7, 100, 4096] {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = SentencePieceModel::parse(&bytes);
        }
        let err = SentencePieceModel::parse(b"hello world").unwrap_err();
        assert!(
            err.to_string().contains("malformed SentencePiece model"),
            "{err}"
        );
        assert!(SentencePieceModel::parse(&[]).is_err());
        // An 11-byte varint.
        assert!(SentencePieceModel::parse(&[
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
        ])
        .is_err());
        // A length far past the end.
        assert!(SentencePieceModel::parse(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
    }

    #[test]
    fn out_of_range_special_id_is_refused() {
        let mut m = sample();
        m.eos_id = 100;
        let err = SentencePieceModel::parse(&m.encode()).unwrap_err();
        assert!(err.to_string().contains("eos_id"), "{err}");
    }
}
