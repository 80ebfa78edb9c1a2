use super::*;

/// A tiny vocabulary: specials, user-defined `<start_of_turn>`, all 256 byte tokens, and a
/// handful of pieces whose scores make the merge order visible.
fn tiny() -> Tokenizer {
    let mut tokens: Vec<String> = [
        "<pad>",
        "<eos>",
        "<bos>",
        "<unk>",
        "<start_of_turn>",
        "<end_of_turn>",
        "\n\n",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut types = vec![
        TokenType::Control,
        TokenType::Control,
        TokenType::Control,
        TokenType::Unknown,
        TokenType::Control,
        TokenType::Control,
        TokenType::UserDefined,
    ];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(TokenType::Byte);
    }
    let normal = [
        ("▁", -1.0),
        ("a", -2.0),
        ("b", -3.0),
        ("c", -4.0),
        ("ab", -5.0),
        ("bc", -0.5),
        ("abc", -6.0),
        ("▁a", -7.0),
        ("▁abc", -8.0),
        ("é", -9.0),
        ("<", -10.0),
        ("e", -11.0),
        ("o", -12.0),
        ("s", -13.0),
        (">", -14.0),
        ("<e", -15.0),
        ("<eo", -16.0),
        ("<eos", -17.0),
    ];
    let mut scores = vec![0.0; tokens.len()];
    for (p, s) in normal {
        tokens.push(p.to_string());
        types.push(TokenType::Normal);
        scores.push(s);
    }
    Tokenizer::from_vocab(
        tokens,
        scores,
        types,
        SpecialTokens {
            bos: Some(2),
            eos: Some(1),
            pad: Some(0),
            unk: Some(3),
            eot: Some(5),
        },
    )
    .unwrap()
}

fn pieces(tok: &Tokenizer, ids: &[u32]) -> Vec<String> {
    ids.iter()
        .map(|&i| tok.token_piece(i).unwrap().to_string())
        .collect()
}

#[test]
fn merges_follow_scores_not_length() {
    let tok = tiny();
    // "bc" (-0.5) beats "ab" (-5); then "a"+"bc" = "abc" exists (-6).
    let ids = tok.encode("abc", EncodeOptions::default());
    assert_eq!(pieces(&tok, &ids), ["abc"]);
    // " abc": ▁ a bc -> ▁a? (-7) vs abc (-6): abc first, then ▁abc.
    let ids = tok.encode(" abc", EncodeOptions::default());
    assert_eq!(pieces(&tok, &ids), ["▁abc"]);
    let ids = tok.encode("ab", EncodeOptions::default());
    assert_eq!(pieces(&tok, &ids), ["ab"]);
}

#[test]
fn unknown_characters_fall_back_to_bytes() {
    let tok = tiny();
    let ids = tok.encode("a€", EncodeOptions::default());
    assert_eq!(pieces(&tok, &ids), ["a", "<0xE2>", "<0x82>", "<0xAC>"]);
    assert_eq!(tok.decode(&ids, DecodeOptions::default()).unwrap(), "a€");
}

#[test]
fn control_tokens_only_on_request() {
    let tok = tiny();
    let plain = tok.encode("<eos>", EncodeOptions::default());
    assert_eq!(pieces(&tok, &plain), ["<eos", ">"]);
    let special = tok.encode(
        "<eos>a",
        EncodeOptions {
            special: true,
            ..Default::default()
        },
    );
    assert_eq!(special, [1, tok.piece_to_id("a").unwrap()]);
    // User-defined pieces are always units.
    let ids = tok.encode("a\n\nb", EncodeOptions::default());
    assert_eq!(pieces(&tok, &ids), ["a", "\n\n", "b"]);
}

#[test]
fn bos_and_eos() {
    let tok = tiny();
    let ids = tok.encode(
        "a",
        EncodeOptions {
            add_bos: true,
            add_eos: true,
            special: false,
        },
    );
    assert_eq!(ids, [2, tok.piece_to_id("a").unwrap(), 1]);
    assert_eq!(tok.decode(&ids, DecodeOptions::default()).unwrap(), "a");
    assert_eq!(
        tok.decode(&ids, DecodeOptions { special: true }).unwrap(),
        "<bos>a<eos>"
    );
    assert!(tok.encode("", EncodeOptions::default()).is_empty());
}

#[test]
fn decode_rejects_out_of_range_ids() {
    let tok = tiny();
    let err = tok
        .decode(&[1, 99_999], DecodeOptions::default())
        .unwrap_err();
    assert!(err.to_string().contains("99999"), "{err}");
    let mut dec = tok.stream_decoder(DecodeOptions::default());
    assert!(dec.push(99_999).is_err());
}

#[test]
fn stream_decoder_holds_back_partial_characters() {
    let tok = tiny();
    let ids = tok.encode("€a", EncodeOptions::default());
    let mut dec = tok.stream_decoder(DecodeOptions::default());
    let out: Vec<String> = ids.iter().map(|&i| dec.push(i).unwrap()).collect();
    assert_eq!(out, ["", "", "€", "a"]);
    assert_eq!(dec.finish(), "");
    // A truncated character is flushed lossily.
    let mut dec = tok.stream_decoder(DecodeOptions::default());
    assert_eq!(dec.push(ids[0]).unwrap(), "");
    assert_eq!(dec.finish(), "\u{FFFD}");
}

#[test]
fn space_prefix() {
    let tok = tiny().with_add_space_prefix(true);
    let ids = tok.encode("abc", EncodeOptions::default());
    assert_eq!(pieces(&tok, &ids), ["▁abc"]);
    assert_eq!(tok.decode(&ids, DecodeOptions::default()).unwrap(), "abc");
}

#[test]
fn inconsistent_vocabularies_are_refused() {
    let err = Tokenizer::from_vocab(
        vec!["a".into(), "b".into()],
        vec![0.0],
        vec![TokenType::Normal; 2],
        SpecialTokens::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("tokenizer.ggml.scores"), "{err}");
    let err = Tokenizer::from_vocab(
        vec!["a".into()],
        vec![0.0],
        vec![TokenType::Normal],
        SpecialTokens {
            eos: Some(7),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("eos_token_id"), "{err}");
    let err = Tokenizer::from_vocab(
        vec!["zz".into()],
        vec![0.0],
        vec![TokenType::Byte],
        SpecialTokens::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("<0xXX>"), "{err}");
}

#[test]
fn special_pieces_longest_first() {
    // llama.cpp claims occurrences of longer pieces first, wherever they are.
    let tokens: Vec<String> = ["x", "xyz", "yz", "w"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let types = vec![
        TokenType::Normal,
        TokenType::UserDefined,
        TokenType::UserDefined,
        TokenType::Normal,
    ];
    let tok = Tokenizer::from_vocab(tokens, vec![0.0; 4], types, SpecialTokens::default()).unwrap();
    assert_eq!(tok.encode("wyzxyz", EncodeOptions::default()), [3, 2, 1]);
}
