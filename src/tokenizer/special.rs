//! Splitting text on pieces that are matched as whole units before BPE: user-defined pieces
//! always, control and unknown pieces when the caller asks for special-token parsing.
//!
//! The rule is llama.cpp's `tokenizer_st_partition`: pieces are tried longest first (ties: lower
//! id first), and each claims every non-overlapping occurrence, scanning left to right, that
//! lies wholly inside text no longer piece has claimed. Scanning the whole text once per
//! vocabulary entry would cost O(specials x text) — Gemma has 6,400 of them — so a trie pass
//! first finds which pieces occur at all, and only those are scanned.

use super::Tokenizer;

/// A run of the input: plain text to run BPE over, or one whole token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fragment {
    /// A byte range of the input.
    Text(usize, usize),
    /// A token matched as a unit.
    Token(u32),
}

/// A byte trie over the texts of the pieces matched as units.
#[derive(Default)]
pub(super) struct Trie {
    nodes: Vec<Node>,
}

#[derive(Default)]
struct Node {
    /// Sorted by byte.
    children: Vec<(u8, u32)>,
    /// The token ending here: (id, needs special parsing).
    token: Option<(u32, bool)>,
}

impl Trie {
    /// Adds `id` with text `text`; `control` pieces match only with special parsing. A text
    /// that is already present keeps its first (lowest) id.
    pub(super) fn insert(&mut self, text: &str, id: u32, control: bool) {
        if self.nodes.is_empty() {
            self.nodes.push(Node::default());
        }
        let mut n = 0usize;
        for &b in text.as_bytes() {
            n = match self.nodes[n].children.binary_search_by_key(&b, |c| c.0) {
                Ok(i) => self.nodes[n].children[i].1 as usize,
                Err(i) => {
                    let new = self.nodes.len() as u32;
                    self.nodes.push(Node::default());
                    self.nodes[n].children.insert(i, (b, new));
                    new as usize
                }
            };
        }
        self.nodes[n].token.get_or_insert((id, control));
    }

    /// Whether the trie holds no piece at all.
    pub(super) fn is_empty(&self) -> bool {
        self.nodes.len() <= 1
    }

    /// Calls `found(id)` for every piece that starts at `text[pos..]`.
    fn matches_at(&self, text: &[u8], pos: usize, special: bool, found: &mut impl FnMut(u32)) {
        let mut n = 0usize;
        for &b in &text[pos..] {
            match self.nodes[n].children.binary_search_by_key(&b, |c| c.0) {
                Ok(i) => n = self.nodes[n].children[i].1 as usize,
                Err(_) => return,
            }
            if let Some((id, control)) = self.nodes[n].token {
                if special || !control {
                    found(id);
                }
            }
        }
    }
}

/// Splits `text` into fragments.
pub(super) fn partition(tok: &Tokenizer, text: &str, special: bool) -> Vec<Fragment> {
    let mut fragments = vec![Fragment::Text(0, text.len())];
    if text.is_empty() || tok.trie.is_empty() {
        return fragments;
    }
    let bytes = text.as_bytes();
    let mut seen = vec![false; tok.pieces.len()];
    let mut present: Vec<u32> = Vec::new();
    for pos in 0..bytes.len() {
        if !tok.trie_first_byte[bytes[pos] as usize] {
            continue;
        }
        tok.trie.matches_at(bytes, pos, special, &mut |id| {
            if !std::mem::replace(&mut seen[id as usize], true) {
                present.push(id);
            }
        });
    }
    present.sort_by_key(|&id| (std::cmp::Reverse(tok.pieces[id as usize].len()), id));

    for id in present {
        let piece = tok.pieces[id as usize].as_str();
        let mut next = Vec::with_capacity(fragments.len() + 2);
        for frag in fragments {
            let Fragment::Text(mut start, end) = frag else {
                next.push(frag);
                continue;
            };
            while let Some(off) = text[start..end].find(piece) {
                if off > 0 {
                    next.push(Fragment::Text(start, start + off));
                }
                next.push(Fragment::Token(id));
                start += off + piece.len();
            }
            if start < end {
                next.push(Fragment::Text(start, end));
            }
        }
        fragments = next;
    }
    fragments
}
