//! What the `sentencepiece_model` and `tokenizer` fuzz targets do with each input, shared with
//! the test that replays the seeds and past crashers (the fuzz targets include this file by
//! path).

use std::path::PathBuf;
use std::sync::OnceLock;
use t5g::convert::sentencepiece::SentencePieceModel;
use t5g::gguf::GgufFile;
use t5g::tokenizer::{DecodeOptions, EncodeOptions, Tokenizer};

/// Parses `data` as a `tokenizer.model`; if accepted, checks the ids it names, that every piece
/// can be found, and that serializing and re-parsing gives the same model. Returns whether it
/// was accepted. Panics only on a parser bug.
pub fn exercise_sentencepiece(data: &[u8]) -> bool {
    let Ok(model) = SentencePieceModel::parse(data) else {
        return false;
    };
    let n = model.pieces.len() as i64;
    for id in [model.unk_id, model.bos_id, model.eos_id, model.pad_id] {
        assert!((-1..n).contains(&i64::from(id)), "id {id} of {n} pieces");
    }
    for piece in model.pieces.iter().take(1000) {
        let found = model.find(&piece.piece).expect("every piece can be found");
        assert_eq!(model.pieces[found].piece, piece.piece);
    }
    let again = SentencePieceModel::parse(&model.encode()).expect("our own encoding parses");
    assert_eq!(again.pieces.len(), model.pieces.len());
    true
}

/// The fixture vocabularies: the tiny BPE one and Gemma 3's 262k pieces (when present).
fn tokenizers() -> &'static [Tokenizer] {
    static TOKENIZERS: OnceLock<Vec<Tokenizer>> = OnceLock::new();
    TOKENIZERS.get_or_init(|| {
        // `CARGO_MANIFEST_DIR` is the repository root in tests and `fuzz/` in the fuzz crate.
        let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let dir = [
            here.join("tests/fixtures/tokenizer"),
            here.join("../tests/fixtures/tokenizer"),
        ]
        .into_iter()
        .find(|d| d.is_dir())
        .expect("tests/fixtures/tokenizer");
        ["vocab.gguf", "gemma3_vocab.gguf"]
            .iter()
            .map(|name| dir.join(name))
            .filter(|path| path.exists())
            .map(|path| Tokenizer::from_gguf(&GgufFile::open(&path).unwrap()).unwrap())
            .collect()
    })
}

/// Encodes `data` (as lossy UTF-8) with every fixture vocabulary, with and without special
/// tokens, and checks `decode(encode(x)) == x` (SentencePiece cannot tell a written `▁` from
/// a space, so those come back as spaces); then reads `data` as little-endian u32 ids and
/// checks that decoding and stream decoding give the same text or a clean error. Every input
/// is acceptable to a tokenizer, so this returns `true` unless it panics.
pub fn exercise_tokenizer(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let expected = text.replace('\u{2581}', " ");
    let ids: Vec<u32> = data
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    for tok in tokenizers() {
        let n = tok.vocab_size() as u32;
        for special in [false, true] {
            let opts = EncodeOptions {
                add_bos: special,
                add_eos: special,
                special,
            };
            let encoded = tok.encode(&text, opts);
            assert!(encoded.iter().all(|&id| id < n), "id out of range");
            let back = tok.decode(&encoded, DecodeOptions { special }).unwrap();
            if special {
                // Markup came back as written; BOS/EOS were added around it.
                let bos = tok.bos().map_or(String::new(), |b| {
                    tok.decode(&[b], DecodeOptions { special }).unwrap()
                });
                let eos = tok.eos().map_or(String::new(), |e| {
                    tok.decode(&[e], DecodeOptions { special }).unwrap()
                });
                assert_eq!(back, format!("{bos}{expected}{eos}"), "special round trip");
            } else {
                assert_eq!(back, expected, "round trip");
            }
        }
        // Arbitrary ids: in range or not, decode answers, and streaming agrees with it.
        for special in [false, true] {
            let opts = DecodeOptions { special };
            let whole = tok.decode(&ids, opts);
            assert_eq!(whole.is_err(), ids.iter().any(|&id| id >= n));
            let mut dec = tok.stream_decoder(opts);
            let mut streamed = String::new();
            let mut failed = false;
            for &id in &ids {
                match dec.push(id) {
                    Ok(s) => streamed.push_str(&s),
                    Err(_) => {
                        assert!(id >= n, "stream refused id {id} < {n}");
                        failed = true;
                    }
                }
            }
            streamed.push_str(&dec.finish());
            if let (Ok(whole), false) = (whole, failed) {
                assert_eq!(streamed, whole, "stream decode");
            }
        }
    }
    true
}
