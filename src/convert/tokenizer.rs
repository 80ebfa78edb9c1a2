//! `tokenizer.model` (+ `tokenizer_config.json`) -> llama.cpp-style `tokenizer.*` metadata.

use super::config::{read_json, ModelConfig};
use super::sentencepiece::{PieceType, SentencePieceModel};
use crate::error::{Error, Result};
use crate::gguf::MetaValue;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// The tokenizer part of the output file.
#[derive(Debug)]
pub struct TokenizerMeta {
    /// Metadata keys to write.
    pub kv: Vec<(String, MetaValue)>,
    /// Id of `<end_of_turn>`, when the vocabulary has it.
    pub eot_id: Option<u32>,
    /// Things to tell the user.
    pub notes: Vec<String>,
}

/// A special token in `tokenizer_config.json`: a string or `{"content": ...}`.
fn special_token(tc: &Map<String, Value>, key: &str) -> Option<String> {
    match tc.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content")?.as_str().map(str::to_owned),
        _ => None,
    }
}

fn chat_template(dir: &Path, tc: &Map<String, Value>, tc_path: &Path) -> Result<Option<String>> {
    match tc.get("chat_template") {
        Some(Value::String(s)) => return Ok(Some(s.clone())),
        Some(Value::Array(items)) => {
            let default = items.iter().find_map(|t| {
                let t = t.as_object()?;
                (t.get("name")?.as_str()? == "default").then(|| t.get("template")?.as_str())?
            });
            return match default {
                Some(s) => Ok(Some(s.to_owned())),
                None => Err(Error::format(
                    tc_path,
                    "`chat_template`: a list of templates without one named \"default\"",
                )),
            };
        }
        Some(Value::Null) | None => {}
        Some(_) => {
            return Err(Error::format(
                tc_path,
                "`chat_template`: expected a string or a list of named templates",
            ))
        }
    }
    // transformers >= 4.43 saves the template beside the config instead.
    let jinja = dir.join("chat_template.jinja");
    if jinja.exists() {
        return std::fs::read_to_string(&jinja)
            .map(Some)
            .map_err(|e| Error::io(&jinja, e));
    }
    Ok(None)
}

fn bool_key(tc: &Map<String, Value>, tc_path: &Path, key: &str, default: bool) -> Result<bool> {
    match tc.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(Error::format(
            tc_path,
            format!("`{key}`: expected true or false, found {v}"),
        )),
    }
}

/// Reads the tokenizer of a checkpoint directory, or `None` when it has no `tokenizer.model`.
/// `rows` is the number of embedding rows the vocabulary must fill.
pub fn load(dir: &Path, rows: usize, cfg: &ModelConfig) -> Result<Option<TokenizerMeta>> {
    let sp_path = dir.join("tokenizer.model");
    if !sp_path.exists() {
        return Ok(None);
    }
    let bytes = std::fs::read(&sp_path).map_err(|e| Error::io(&sp_path, e))?;
    let sp =
        SentencePieceModel::parse(&bytes).map_err(|e| Error::format(&sp_path, e.to_string()))?;
    let tc_path = dir.join("tokenizer_config.json");
    let tc = if tc_path.exists() {
        read_json(&tc_path)?
    } else {
        Map::new()
    };
    let mut notes = Vec::new();

    let n = sp.pieces.len();
    if n > rows {
        return Err(Error::format(
            &sp_path,
            format!("{n} pieces, but the embedding has only {rows} rows"),
        ));
    }
    // User-defined pieces are matched against raw text before any ▁ substitution (in
    // SentencePiece and in llama.cpp), so they are stored with real spaces, as llama.cpp's
    // converter stores them; Gemma 3's whitespace-run pieces depend on it.
    let mut tokens: Vec<String> = sp
        .pieces
        .iter()
        .map(|p| match p.kind {
            PieceType::UserDefined => p.piece.replace('\u{2581}', " "),
            _ => p.piece.clone(),
        })
        .collect();
    let mut scores: Vec<f32> = sp.pieces.iter().map(|p| p.score).collect();
    let mut types: Vec<i32> = sp.pieces.iter().map(|p| p.kind.id()).collect();
    if n < rows {
        // Checkpoints pad the embedding beyond the SentencePiece vocabulary; added tokens
        // from tokenizer_config.json name some of those rows, the rest stay unused.
        let added: HashMap<usize, (String, bool)> = match tc.get("added_tokens_decoder") {
            Some(Value::Object(m)) => m
                .iter()
                .filter_map(|(id, t)| {
                    let id = id.parse::<usize>().ok()?;
                    let content = t.get("content")?.as_str()?.to_owned();
                    let special = t.get("special").and_then(Value::as_bool).unwrap_or(false);
                    Some((id, (content, special)))
                })
                .collect(),
            _ => HashMap::new(),
        };
        let mut seen: HashSet<String> = tokens.iter().cloned().collect();
        let mut next_unused = 0usize;
        let (mut named, mut unused) = (0, 0);
        for id in n..rows {
            match added.get(&id).filter(|(c, _)| !seen.contains(c)) {
                Some((content, special)) => {
                    tokens.push(content.clone());
                    types.push(if *special {
                        PieceType::Control.id()
                    } else {
                        PieceType::UserDefined.id()
                    });
                    seen.insert(content.clone());
                    named += 1;
                }
                None => {
                    let name = loop {
                        let candidate = format!("<unused{next_unused}>");
                        next_unused += 1;
                        if !seen.contains(&candidate) {
                            break candidate;
                        }
                    };
                    seen.insert(name.clone());
                    tokens.push(name);
                    types.push(PieceType::Unused.id());
                    unused += 1;
                }
            }
            scores.push(0.0);
        }
        notes.push(format!(
            "tokenizer.model has {n} pieces for {rows} embedding rows: padded with {named} added tokens from tokenizer_config.json and {unused} unused pieces"
        ));
    }

    let index: HashMap<&str, usize> = tokens
        .iter()
        .enumerate()
        .rev()
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    let resolve = |tc_key: &str, sp_id: i32, cfg_id: Option<i64>| -> Result<Option<u32>> {
        if let Some(tok) = special_token(&tc, tc_key) {
            return match index.get(tok.as_str()) {
                Some(&id) => Ok(Some(id as u32)),
                None => Err(Error::format(
                    &tc_path,
                    format!("`{tc_key}`: \"{tok}\" is not in the vocabulary of tokenizer.model"),
                )),
            };
        }
        if sp_id >= 0 {
            return Ok(Some(sp_id as u32));
        }
        Ok(cfg_id
            .and_then(|id| u32::try_from(id).ok())
            .filter(|&id| (id as usize) < rows))
    };
    let bos = resolve("bos_token", sp.bos_id, cfg.bos_token_id)?;
    let eos = resolve("eos_token", sp.eos_id, cfg.eos_token_ids.first().copied())?;
    let pad = resolve("pad_token", sp.pad_id, cfg.pad_token_id)?;
    let unk = resolve("unk_token", sp.unk_id, None)?;
    let eot_id = index.get("<end_of_turn>").map(|&i| i as u32);

    // Write only a vocabulary the runtime will load: build it once with the runtime's own
    // checks (byte pieces spelled <0xXX>, special ids in range, ...).
    let kinds = types
        .iter()
        .map(|&t| crate::tokenizer::TokenType::from_i32(t).expect("types come from TokenType ids"))
        .collect();
    let specials = crate::tokenizer::SpecialTokens {
        bos,
        eos,
        pad,
        unk,
        eot: eot_id,
    };
    crate::tokenizer::Tokenizer::from_vocab(tokens.clone(), scores.clone(), kinds, specials)
        .map_err(|e| Error::format(&sp_path, format!("unusable vocabulary: {e}")))?;

    let mut kv = vec![
        (
            "tokenizer.ggml.model".to_owned(),
            MetaValue::String("llama".into()),
        ),
        (
            "tokenizer.ggml.tokens".to_owned(),
            MetaValue::string_array(tokens),
        ),
        (
            "tokenizer.ggml.scores".to_owned(),
            MetaValue::f32_array(scores),
        ),
        (
            "tokenizer.ggml.token_type".to_owned(),
            MetaValue::i32_array(types),
        ),
    ];
    for (key, id) in [
        ("bos_token_id", bos),
        ("eos_token_id", eos),
        ("padding_token_id", pad),
        ("unknown_token_id", unk),
        ("eot_token_id", eot_id),
    ] {
        if let Some(id) = id {
            kv.push((format!("tokenizer.ggml.{key}"), MetaValue::U32(id)));
        }
    }
    kv.push((
        "tokenizer.ggml.add_bos_token".into(),
        MetaValue::Bool(bool_key(&tc, &tc_path, "add_bos_token", true)?),
    ));
    kv.push((
        "tokenizer.ggml.add_eos_token".into(),
        MetaValue::Bool(bool_key(&tc, &tc_path, "add_eos_token", false)?),
    ));
    kv.push((
        "tokenizer.ggml.add_space_prefix".into(),
        MetaValue::Bool(sp.add_dummy_prefix),
    ));
    if let Some(t) = chat_template(dir, &tc, &tc_path)? {
        kv.push(("tokenizer.chat_template".into(), MetaValue::String(t)));
    }
    Ok(Some(TokenizerMeta { kv, eot_id, notes }))
}
