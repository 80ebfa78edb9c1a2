//! The Gemma SentencePiece tokenizer, rebuilt from the llama.cpp-style vocabulary stored in a
//! GGUF file (`tokenizer.ggml.*`, see `docs/FORMAT.md`).
//!
//! Encoding follows llama.cpp's `llm_tokenizer_spm` (and gives the ids of the `sentencepiece`
//! library's BPE model with byte fallback on un-normalised text):
//! 1. the text is split on pieces matched as whole units — user-defined pieces always, control
//!    pieces only when [`EncodeOptions::special`] is set;
//! 2. each remaining run gets its spaces replaced by `▁` (U+2581), plus a leading `▁` when the
//!    vocabulary says `add_space_prefix` (false for Gemma), and is merged greedily pair by pair,
//!    highest-scoring vocabulary piece first;
//! 3. characters that end up in no piece become `<0xXX>` byte tokens (or `<unk>` if the
//!    vocabulary has no byte tokens).
//!
//! Decoding turns byte tokens back into bytes and `▁` into spaces; [`StreamDecoder`] does the
//! same one id at a time and only ever hands out whole UTF-8 characters.

mod special;
mod spm;
mod stream;

use std::collections::HashMap;

use crate::gguf::GgufFile;
use crate::{Error, Result};

pub use stream::StreamDecoder;

/// The character SentencePiece uses for a space inside pieces.
pub const SPACE_MARK: char = '\u{2581}';

/// What a vocabulary entry is, with llama.cpp's `tokenizer.ggml.token_type` numbering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum TokenType {
    /// An ordinary piece produced by BPE merges.
    Normal = 1,
    /// The unknown-token placeholder.
    Unknown = 2,
    /// A control token (`<bos>`, `<eos>`, `<start_of_turn>`, ...): matched in text only on
    /// request, rendered only on request.
    Control = 3,
    /// A piece always matched as a whole unit in the input (Gemma: runs of newlines, spaces,
    /// tabs, HTML tags).
    UserDefined = 4,
    /// A reserved piece that is never produced.
    Unused = 5,
    /// A `<0xXX>` byte-fallback token.
    Byte = 6,
}

impl TokenType {
    /// The value stored in `tokenizer.ggml.token_type` (and SentencePiece's `Type` enum).
    pub fn id(self) -> i32 {
        self as i32
    }

    /// The type for a `tokenizer.ggml.token_type` value.
    pub fn from_i32(v: i32) -> Option<Self> {
        Some(match v {
            1 => TokenType::Normal,
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => return None,
        })
    }
}

/// Ids with a special role; `None` where the vocabulary has none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    /// Beginning of sequence (Gemma: 2).
    pub bos: Option<u32>,
    /// End of sequence (Gemma: 1).
    pub eos: Option<u32>,
    /// Padding (Gemma: 0).
    pub pad: Option<u32>,
    /// Unknown (Gemma: 3).
    pub unk: Option<u32>,
    /// End of turn (`<end_of_turn>`, Gemma: 106).
    pub eot: Option<u32>,
}

/// How to encode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Put the BOS id first.
    pub add_bos: bool,
    /// Put the EOS id last.
    pub add_eos: bool,
    /// Recognise control tokens written in the text (`<start_of_turn>`, `<eos>`, ...);
    /// otherwise such text is tokenized as plain characters.
    pub special: bool,
}

/// How to decode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Render control, unknown and unused tokens as their text (`<eos>`); otherwise they
    /// produce nothing.
    pub special: bool,
}

/// Vocabulary lookups are the inner loop of BPE; FxHash is fast, and the keys are not
/// attacker-chosen in a way that matters here.
type FxBuild = rustc_hash::FxBuildHasher;

/// A SentencePiece (BPE, byte-fallback) tokenizer.
pub struct Tokenizer {
    pieces: Vec<String>,
    scores: Vec<f32>,
    types: Vec<TokenType>,
    specials: SpecialTokens,
    add_space_prefix: bool,
    add_bos_token: bool,
    add_eos_token: bool,
    /// Pieces BPE may merge into: normal, user-defined and unused ones (sentencepiece's
    /// `pieces_`; control, unknown and byte pieces are never the result of a merge).
    merge_ids: HashMap<Box<str>, u32, FxBuild>,
    byte_ids: [Option<u32>; 256],
    trie: special::Trie,
    trie_first_byte: [bool; 256],
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.pieces.len())
            .field("specials", &self.specials)
            .field("add_space_prefix", &self.add_space_prefix)
            .finish()
    }
}

const KEY_MODEL: &str = "tokenizer.ggml.model";
const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
const KEY_SCORES: &str = "tokenizer.ggml.scores";
const KEY_TYPES: &str = "tokenizer.ggml.token_type";

impl Tokenizer {
    /// Rebuilds the tokenizer from a GGUF file's `tokenizer.ggml.*` keys.
    ///
    /// Fails with a metadata error naming the key when the tokenizer is missing, is not a
    /// SentencePiece (`llama`) one, or is inconsistent (array lengths differ, a special id or
    /// token type is out of range).
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let model = file.get_str(KEY_MODEL)?;
        if model != "llama" {
            return Err(Error::metadata(
                KEY_MODEL,
                format!("expected `llama` (SentencePiece), found `{model}`"),
            ));
        }
        let tokens: Vec<String> = file
            .get_str_array(KEY_TOKENS)?
            .into_iter()
            .map(str::to_owned)
            .collect();
        let n = tokens.len();
        let scores = file.get_f32_array(KEY_SCORES)?;
        if scores.len() != n {
            return Err(Error::metadata(
                KEY_SCORES,
                format!("has {} entries but {KEY_TOKENS} has {n}", scores.len()),
            ));
        }
        let raw_types = file.get_i64_array(KEY_TYPES)?;
        if raw_types.len() != n {
            return Err(Error::metadata(
                KEY_TYPES,
                format!("has {} entries but {KEY_TOKENS} has {n}", raw_types.len()),
            ));
        }
        let types = raw_types
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                i32::try_from(t)
                    .ok()
                    .and_then(TokenType::from_i32)
                    .ok_or_else(|| {
                        Error::metadata(
                            KEY_TYPES,
                            format!("token {i}: type {t} is not one of 1..=6"),
                        )
                    })
            })
            .collect::<Result<Vec<_>>>()?;

        let id = |key: &str| -> Result<Option<u32>> {
            match file.opt_usize(key)? {
                None => Ok(None),
                Some(v) if v < n => Ok(Some(v as u32)),
                Some(v) => Err(Error::metadata(
                    key,
                    format!("id {v} is out of range for a vocabulary of {n} tokens"),
                )),
            }
        };
        let mut specials = SpecialTokens {
            bos: id("tokenizer.ggml.bos_token_id")?,
            eos: id("tokenizer.ggml.eos_token_id")?,
            pad: id("tokenizer.ggml.padding_token_id")?,
            unk: id("tokenizer.ggml.unknown_token_id")?,
            eot: id("tokenizer.ggml.eot_token_id")?,
        };
        if specials.eot.is_none() {
            // llama.cpp finds Gemma's end-of-turn token by its text, as files made by its
            // converter carry no eot key.
            specials.eot = tokens
                .iter()
                .position(|t| t == "<end_of_turn>")
                .map(|i| i as u32);
        }
        let mut tok = Self::from_vocab(tokens, scores, types, specials)?;
        tok.add_space_prefix = file
            .opt_bool("tokenizer.ggml.add_space_prefix")?
            .unwrap_or(false);
        tok.add_bos_token = file
            .opt_bool("tokenizer.ggml.add_bos_token")?
            .unwrap_or(true);
        tok.add_eos_token = file
            .opt_bool("tokenizer.ggml.add_eos_token")?
            .unwrap_or(false);
        Ok(tok)
    }

    /// Builds a tokenizer from its parts (tests, converters). `add_space_prefix` starts false;
    /// see [`Tokenizer::with_add_space_prefix`].
    pub fn from_vocab(
        tokens: Vec<String>,
        scores: Vec<f32>,
        types: Vec<TokenType>,
        specials: SpecialTokens,
    ) -> Result<Self> {
        let n = tokens.len();
        if n == 0 || n > u32::MAX as usize {
            return Err(Error::metadata(
                KEY_TOKENS,
                format!("a vocabulary needs 1..=2^32-1 tokens, found {n}"),
            ));
        }
        if scores.len() != n {
            return Err(Error::metadata(
                KEY_SCORES,
                format!("has {} entries but {KEY_TOKENS} has {n}", scores.len()),
            ));
        }
        if types.len() != n {
            return Err(Error::metadata(
                KEY_TYPES,
                format!("has {} entries but {KEY_TOKENS} has {n}", types.len()),
            ));
        }
        for (name, v) in [
            ("bos", specials.bos),
            ("eos", specials.eos),
            ("pad", specials.pad),
            ("unk", specials.unk),
            ("eot", specials.eot),
        ] {
            if let Some(v) = v.filter(|&v| v as usize >= n) {
                return Err(Error::metadata(
                    format!("tokenizer.ggml.{name}_token_id"),
                    format!("id {v} is out of range for a vocabulary of {n} tokens"),
                ));
            }
        }
        let mut specials = specials;
        if specials.unk.is_none() {
            specials.unk = types
                .iter()
                .position(|&t| t == TokenType::Unknown)
                .map(|i| i as u32);
        }

        let mut merge_ids = HashMap::with_capacity_and_hasher(n, FxBuild::default());
        let mut byte_ids = [None; 256];
        let mut trie = special::Trie::default();
        let mut trie_first_byte = [false; 256];
        for (i, (piece, &ty)) in tokens.iter().zip(&types).enumerate() {
            let id = i as u32;
            match ty {
                TokenType::Normal | TokenType::UserDefined | TokenType::Unused => {
                    // The first of duplicate pieces wins, as in sentencepiece.
                    merge_ids.entry(piece.as_str().into()).or_insert(id);
                }
                TokenType::Byte => match parse_byte_piece(piece) {
                    Some(b) => {
                        byte_ids[b as usize].get_or_insert(id);
                    }
                    None => {
                        return Err(Error::metadata(
                            KEY_TOKENS,
                            format!("token {i} has the byte type but its text `{piece}` is not of the form <0xXX>"),
                        ))
                    }
                },
                TokenType::Control | TokenType::Unknown => {}
            }
            let unit = match ty {
                TokenType::UserDefined => Some(false),
                TokenType::Control | TokenType::Unknown => Some(true),
                _ => None,
            };
            if let Some(control) = unit.filter(|_| !piece.is_empty()) {
                trie.insert(piece, id, control);
                trie_first_byte[piece.as_bytes()[0] as usize] = true;
            }
        }

        Ok(Tokenizer {
            pieces: tokens,
            scores,
            types,
            specials,
            add_space_prefix: false,
            add_bos_token: true,
            add_eos_token: false,
            merge_ids,
            byte_ids,
            trie,
            trie_first_byte,
        })
    }

    /// Sets whether a `▁` is put in front of the text (and after each special token), as
    /// `tokenizer.ggml.add_space_prefix` does; decoding then drops the first leading space.
    pub fn with_add_space_prefix(mut self, on: bool) -> Self {
        self.add_space_prefix = on;
        self
    }

    /// Number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    /// The special ids.
    pub fn specials(&self) -> SpecialTokens {
        self.specials
    }

    /// Beginning-of-sequence id.
    pub fn bos(&self) -> Option<u32> {
        self.specials.bos
    }

    /// End-of-sequence id.
    pub fn eos(&self) -> Option<u32> {
        self.specials.eos
    }

    /// Padding id.
    pub fn pad(&self) -> Option<u32> {
        self.specials.pad
    }

    /// Unknown-token id.
    pub fn unk(&self) -> Option<u32> {
        self.specials.unk
    }

    /// End-of-turn id (`<end_of_turn>`).
    pub fn eot(&self) -> Option<u32> {
        self.specials.eot
    }

    /// Whether the file asks for BOS in front of every input (`tokenizer.ggml.add_bos_token`).
    pub fn add_bos_token(&self) -> bool {
        self.add_bos_token
    }

    /// Whether the file asks for EOS after every input (`tokenizer.ggml.add_eos_token`).
    pub fn add_eos_token(&self) -> bool {
        self.add_eos_token
    }

    /// Whether a space is put in front of the text before encoding.
    pub fn add_space_prefix(&self) -> bool {
        self.add_space_prefix
    }

    /// The stored text of a token (`▁` for spaces, `<0x0A>` for byte tokens), or `None` for an
    /// out-of-range id.
    pub fn token_piece(&self, id: u32) -> Option<&str> {
        self.pieces.get(id as usize).map(String::as_str)
    }

    /// The score of a token, or `None` for an out-of-range id.
    pub fn token_score(&self, id: u32) -> Option<f32> {
        self.scores.get(id as usize).copied()
    }

    /// The type of a token, or `None` for an out-of-range id.
    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.types.get(id as usize).copied()
    }

    /// Whether `id` is a control token (`<bos>`, `<eos>`, `<start_of_turn>`, ...).
    pub fn is_control(&self, id: u32) -> bool {
        self.token_type(id) == Some(TokenType::Control)
    }

    /// The id of a piece with exactly this stored text, of any type.
    pub fn piece_to_id(&self, piece: &str) -> Option<u32> {
        self.merge_ids.get(piece).copied().or_else(|| {
            self.pieces
                .iter()
                .position(|p| p == piece)
                .map(|i| i as u32)
        })
    }

    /// Encodes text to token ids.
    pub fn encode(&self, text: &str, opts: EncodeOptions) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if opts.add_bos {
            out.extend(self.specials.bos);
        }
        let mut escaped = String::new();
        let mut prev_special = true;
        for frag in special::partition(self, text, opts.special) {
            match frag {
                special::Fragment::Token(id) => {
                    out.push(id);
                    prev_special = true;
                }
                special::Fragment::Text(a, b) => {
                    escaped.clear();
                    if self.add_space_prefix && prev_special {
                        escaped.push(SPACE_MARK);
                    }
                    for ch in text[a..b].chars() {
                        escaped.push(if ch == ' ' { SPACE_MARK } else { ch });
                    }
                    spm::tokenize(self, &escaped, &mut out);
                    prev_special = false;
                }
            }
        }
        if opts.add_eos {
            out.extend(self.specials.eos);
        }
        out
    }

    /// Decodes ids to text. Byte tokens that do not form valid UTF-8 become U+FFFD.
    ///
    /// Fails on an id outside the vocabulary.
    pub fn decode(&self, ids: &[u32], opts: DecodeOptions) -> Result<String> {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        let mut at_start = true;
        for &id in ids {
            self.append_piece(id, opts, &mut at_start, &mut bytes)?;
        }
        Ok(match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    /// A decoder that takes ids one at a time; see [`StreamDecoder`].
    pub fn stream_decoder(&self, opts: DecodeOptions) -> StreamDecoder<'_> {
        StreamDecoder::new(self, opts)
    }

    /// Appends the bytes of one token. `at_start` is true until some output was produced; the
    /// space-prefix the encoder added is dropped from the first output.
    fn append_piece(
        &self,
        id: u32,
        opts: DecodeOptions,
        at_start: &mut bool,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let Some(piece) = self.pieces.get(id as usize) else {
            return Err(Error::invalid(format!(
                "token id {id} is out of range for a vocabulary of {} tokens",
                self.pieces.len()
            )));
        };
        let before = out.len();
        match self.types[id as usize] {
            TokenType::Normal => {
                for ch in piece.chars() {
                    let ch = if ch == SPACE_MARK { ' ' } else { ch };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
            }
            TokenType::UserDefined => out.extend_from_slice(piece.as_bytes()),
            TokenType::Byte => {
                out.push(parse_byte_piece(piece).expect("checked when the vocabulary was built"))
            }
            TokenType::Control | TokenType::Unknown | TokenType::Unused => {
                if opts.special {
                    out.extend_from_slice(piece.as_bytes());
                }
            }
        }
        if *at_start && out.len() > before {
            *at_start = false;
            if self.add_space_prefix && out[before] == b' ' {
                out.remove(before);
            }
        }
        Ok(())
    }

    /// The piece BPE may merge into for this text.
    fn merge_id(&self, piece: &str) -> Option<u32> {
        self.merge_ids.get(piece).copied()
    }

    fn is_unused(&self, id: u32) -> bool {
        self.types[id as usize] == TokenType::Unused
    }

    /// Byte fallback for text that is in no piece: one `<0xXX>` token per byte, or `<unk>`
    /// per character when the vocabulary has no byte tokens.
    fn push_bytes(&self, text: &[u8], out: &mut Vec<u32>) {
        if let Some(ids) = text
            .iter()
            .map(|&b| self.byte_ids[b as usize])
            .collect::<Option<Vec<u32>>>()
        {
            out.extend(ids);
        } else {
            out.extend(self.specials.unk);
        }
    }
}

/// The byte of a `<0xXX>` piece.
fn parse_byte_piece(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests;
