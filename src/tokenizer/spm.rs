//! SentencePiece BPE over one run of plain text: the algorithm of llama.cpp's
//! `llm_tokenizer_spm` and sentencepiece's `bpe_model.cc`.
//!
//! The text is split into UTF-8 characters held in a doubly linked list; every adjacent pair
//! whose concatenation is a vocabulary piece goes into a max-heap keyed by that piece's score
//! (ties: the leftmost pair). Popping the best pair merges it and offers the two new pairs it
//! forms with its neighbours. Stale entries are recognised by their length and skipped, so the
//! whole run is O(n log n) in the number of characters.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use super::{FxBuild, Tokenizer};

/// One symbol of the linked list: a byte range of the text.
#[derive(Clone, Copy)]
struct Symbol {
    start: u32,
    /// Length in bytes; 0 once merged into its left neighbour.
    len: u32,
    prev: i32,
    next: i32,
}

/// A candidate merge of two adjacent symbols.
#[derive(Clone, Copy)]
struct Bigram {
    score: f32,
    left: u32,
    right: u32,
    /// Byte length of the merged piece; a popped bigram whose symbols no longer add up to it
    /// is stale.
    size: u32,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Higher score first; among equal scores the leftmost pair first (as both reference
    /// implementations order their queues).
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

/// Appends the ids of `text` (already whitespace-escaped) to `out`.
pub(super) fn tokenize(tok: &Tokenizer, text: &str, out: &mut Vec<u32>) {
    if text.is_empty() {
        return;
    }
    let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
    for (i, (start, ch)) in text.char_indices().enumerate() {
        let next = if start + ch.len_utf8() < text.len() {
            i as i32 + 1
        } else {
            -1
        };
        symbols.push(Symbol {
            start: start as u32,
            len: ch.len_utf8() as u32,
            prev: i as i32 - 1,
            next,
        });
    }

    let mut session = Session {
        tok,
        text,
        symbols,
        queue: BinaryHeap::new(),
        rev_merge: HashMap::default(),
    };
    for i in 1..session.symbols.len() {
        session.try_add_bigram(i as i32 - 1, i as i32);
    }
    while let Some(bigram) = session.queue.pop() {
        let (l, r) = (bigram.left as usize, bigram.right as usize);
        let (left, right) = (session.symbols[l], session.symbols[r]);
        if left.len == 0 || right.len == 0 || left.len + right.len != bigram.size {
            continue;
        }
        session.symbols[l].len += right.len;
        session.symbols[r].len = 0;
        session.symbols[l].next = right.next;
        if right.next >= 0 {
            session.symbols[right.next as usize].prev = l as i32;
        }
        session.try_add_bigram(left.prev, l as i32);
        session.try_add_bigram(l as i32, right.next);
    }

    let mut i = 0i32;
    while i >= 0 {
        let s = session.symbols[i as usize];
        session.resegment(s.start as usize..(s.start + s.len) as usize, out);
        i = s.next;
    }
}

struct Session<'a> {
    tok: &'a Tokenizer,
    text: &'a str,
    symbols: Vec<Symbol>,
    queue: BinaryHeap<Bigram>,
    /// For merges that produced an *unused* piece: the two halves it came from, so the output
    /// can split it again (sentencepiece never emits unused pieces).
    rev_merge: HashMap<&'a str, (std::ops::Range<usize>, std::ops::Range<usize>), FxBuild>,
}

impl<'a> Session<'a> {
    fn try_add_bigram(&mut self, left: i32, right: i32) {
        if left < 0 || right < 0 {
            return;
        }
        let (l, r) = (self.symbols[left as usize], self.symbols[right as usize]);
        let range = l.start as usize..(r.start + r.len) as usize;
        let piece = &self.text[range];
        let Some(id) = self.tok.merge_id(piece) else {
            return;
        };
        self.queue.push(Bigram {
            score: self.tok.scores[id as usize],
            left: left as u32,
            right: right as u32,
            size: l.len + r.len,
        });
        if self.tok.is_unused(id) {
            self.rev_merge.insert(
                piece,
                (
                    l.start as usize..(l.start + l.len) as usize,
                    r.start as usize..(r.start + r.len) as usize,
                ),
            );
        }
    }

    fn resegment(&self, range: std::ops::Range<usize>, out: &mut Vec<u32>) {
        let piece = &self.text[range.clone()];
        match self.tok.merge_id(piece) {
            Some(id) if !self.tok.is_unused(id) => out.push(id),
            Some(id) => match self.rev_merge.get(piece) {
                Some((a, b)) => {
                    self.resegment(a.clone(), out);
                    self.resegment(b.clone(), out);
                }
                // A single character that is an unused piece: nothing to split it into.
                None => out.push(id),
            },
            None => self.tok.push_bytes(piece.as_bytes(), out),
        }
    }
}
