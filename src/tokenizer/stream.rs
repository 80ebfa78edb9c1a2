//! Incremental decoding for streaming generation.

use super::{DecodeOptions, Tokenizer};
use crate::Result;

/// Decodes ids one at a time, handing out only whole UTF-8 characters.
///
/// A character spelled by several byte-fallback tokens (`<0xE2><0x82><0xAC>` for `€`) is held
/// back until its last byte arrives. Bytes that can never become valid UTF-8 are replaced by
/// U+FFFD as soon as that is certain, and [`StreamDecoder::finish`] flushes an incomplete tail
/// the same way, so the concatenation of everything returned equals
/// [`Tokenizer::decode`] of all the ids.
#[derive(Debug)]
pub struct StreamDecoder<'a> {
    tok: &'a Tokenizer,
    opts: DecodeOptions,
    pending: Vec<u8>,
    at_start: bool,
}

impl<'a> StreamDecoder<'a> {
    pub(super) fn new(tok: &'a Tokenizer, opts: DecodeOptions) -> Self {
        StreamDecoder {
            tok,
            opts,
            pending: Vec::new(),
            at_start: true,
        }
    }

    /// Adds one id and returns the text that is now complete (often empty).
    ///
    /// Fails on an id outside the vocabulary; the decoder is then unchanged.
    pub fn push(&mut self, id: u32) -> Result<String> {
        self.tok
            .append_piece(id, self.opts, &mut self.at_start, &mut self.pending)?;
        let mut text = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    text.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    text.push_str(std::str::from_utf8(valid).expect("validated prefix"));
                    match e.error_len() {
                        // Cut short at the end: wait for more bytes.
                        None => {
                            rest = after;
                            break;
                        }
                        Some(bad) => {
                            text.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[bad..];
                        }
                    }
                }
            }
        }
        let keep = rest.len();
        self.pending.drain(..self.pending.len() - keep);
        Ok(text)
    }

    /// Returns whatever is still held back (an incomplete character becomes U+FFFD) and
    /// resets the decoder for a new sequence.
    pub fn finish(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        self.at_start = true;
        text
    }
}
