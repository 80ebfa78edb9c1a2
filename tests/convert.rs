//! The converter end to end: tiny checkpoints built here (safetensors + config.json +
//! tokenizer.model in a temporary directory), converted at every type, read back with the
//! GGUF reader.

use safetensors::tensor::TensorView as StView;
use safetensors::Dtype;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use t5g::convert::sentencepiece::{ModelType, Piece, PieceType, SentencePieceModel};
use t5g::convert::{convert, ConvertOptions, ConvertReport};
use t5g::gguf::{GgmlType, GgufFile};
use t5g::quant::{self, BlockQ4_0, BlockQ8_0};

const VOCAB: usize = 40;

/// A checkpoint under construction: tensors as (dtype, torch shape, raw bytes).
struct Ckpt {
    dir: tempfile::TempDir,
    config: Value,
    tensors: BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>,
}

fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn bf16_bytes(v: &[f32]) -> Vec<u8> {
    v.iter()
        .flat_map(|x| quant::f32_to_bf16(*x).to_bits().to_le_bytes())
        .collect()
}

fn stack(h: usize, i: usize, layers: usize, heads: usize, kv: usize, hd: usize) -> Value {
    json!({
        "hidden_size": h, "intermediate_size": i, "num_hidden_layers": layers,
        "num_attention_heads": heads, "num_key_value_heads": kv, "head_dim": hd,
        "query_pre_attn_scalar": 32, "sliding_window": 8, "vocab_size": VOCAB,
        "rms_norm_eps": 1e-6, "hidden_activation": "gelu_pytorch_tanh",
        "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
        "layer_types": (0..layers).map(|l| if l % 2 == 0 { "sliding_attention" } else { "full_attention" }).collect::<Vec<_>>()
    })
}

impl Ckpt {
    fn add(&mut self, name: &str, shape: &[usize]) {
        let n = shape.iter().product();
        let seed = self.tensors.len() as u64 + 7;
        let mut v = values(n, seed);
        if shape.len() == 1 {
            v.iter_mut().for_each(|x| *x *= 0.1);
        }
        self.tensors
            .insert(name.into(), (Dtype::BF16, shape.to_vec(), bf16_bytes(&v)));
    }

    fn add_stack(&mut self, prefix: &str, s: &Value, cross_in: Option<usize>, qk_norm: bool) {
        let g = |k: &str| s[k].as_u64().unwrap() as usize;
        let (h, i, hd) = (g("hidden_size"), g("intermediate_size"), g("head_dim"));
        let (q, kv) = (g("num_attention_heads") * hd, g("num_key_value_heads") * hd);
        for l in 0..g("num_hidden_layers") {
            let p = format!("{prefix}.layers.{l}");
            for n in [
                "pre_self_attn_layernorm",
                "post_self_attn_layernorm",
                "pre_feedforward_layernorm",
                "post_feedforward_layernorm",
            ] {
                self.add(&format!("{p}.{n}.weight"), &[h]);
            }
            self.add(&format!("{p}.self_attn.q_proj.weight"), &[q, h]);
            self.add(&format!("{p}.self_attn.k_proj.weight"), &[kv, h]);
            self.add(&format!("{p}.self_attn.v_proj.weight"), &[kv, h]);
            self.add(&format!("{p}.self_attn.o_proj.weight"), &[h, q]);
            if qk_norm {
                self.add(&format!("{p}.self_attn.q_norm.weight"), &[hd]);
                self.add(&format!("{p}.self_attn.k_norm.weight"), &[hd]);
            }
            if let Some(he) = cross_in {
                self.add(&format!("{p}.pre_cross_attn_layernorm.weight"), &[h]);
                self.add(&format!("{p}.post_cross_attn_layernorm.weight"), &[h]);
                self.add(&format!("{p}.cross_attn.q_proj.weight"), &[q, h]);
                self.add(&format!("{p}.cross_attn.k_proj.weight"), &[kv, he]);
                self.add(&format!("{p}.cross_attn.v_proj.weight"), &[kv, he]);
                self.add(&format!("{p}.cross_attn.o_proj.weight"), &[h, q]);
            }
            self.add(&format!("{p}.mlp.gate_proj.weight"), &[i, h]);
            self.add(&format!("{p}.mlp.up_proj.weight"), &[i, h]);
            self.add(&format!("{p}.mlp.down_proj.weight"), &[h, i]);
        }
        self.add(&format!("{prefix}.norm.weight"), &[h]);
    }

    /// T5Gemma v1, unbalanced: encoder 64 wide (MLP 80: rows of 80 are not whole q8_0 blocks),
    /// decoder 32 wide.
    fn v1() -> Self {
        let enc = stack(64, 80, 2, 4, 2, 16);
        let mut dec = stack(32, 64, 2, 2, 1, 16);
        dec["cross_attention_hidden_size"] = json!(64);
        let config = json!({
            "model_type": "t5gemma", "encoder": enc.clone(), "decoder": dec.clone(),
            "vocab_size": VOCAB, "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0,
        });
        let mut c = Ckpt {
            dir: tempfile::tempdir().unwrap(),
            config,
            tensors: BTreeMap::new(),
        };
        c.add("model.encoder.embed_tokens.weight", &[VOCAB, 64]);
        c.add("model.decoder.embed_tokens.weight", &[VOCAB, 32]);
        c.add_stack("model.encoder", &enc, None, false);
        c.add_stack("model.decoder", &dec, Some(64), false);
        c
    }

    /// T5Gemma 2 with a vision tower to skip; encoder weights spelled `text_model`.
    fn v2() -> Self {
        let mut text = stack(64, 128, 2, 4, 1, 32);
        text["rope_parameters"] = json!({
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
            "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0}
        });
        text["attn_logit_softcapping"] = Value::Null;
        text["final_logit_softcapping"] = Value::Null;
        let dec = text.clone();
        let config = json!({
            "model_type": "t5gemma2", "eoi_token_index": 38, "vocab_size": VOCAB,
            "encoder": {"text_config": text.clone(), "vision_config": {"hidden_size": 16}},
            "decoder": dec.clone(), "eos_token_id": [1, 39],
        });
        let mut c = Ckpt {
            dir: tempfile::tempdir().unwrap(),
            config,
            tensors: BTreeMap::new(),
        };
        c.add("model.encoder.text_model.embed_tokens.weight", &[VOCAB, 64]);
        c.add("model.encoder.text_model.embed_tokens.eoi_embedding", &[64]);
        c.add_stack("model.encoder.text_model", &text, None, true);
        c.add_stack("model.decoder", &dec, None, true);
        c.add("model.encoder.vision_tower.patch_embed.weight", &[16, 48]);
        c.add("model.encoder.vision_tower.post_layernorm.weight", &[16]);
        c.add(
            "model.encoder.multi_modal_projector.mm_input_projection_weight",
            &[16, 64],
        );
        c
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn serialize(tensors: &BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>) -> Vec<u8> {
        let views: Vec<(String, StView<'_>)> = tensors
            .iter()
            .map(|(k, (d, s, b))| (k.clone(), StView::new(*d, s.clone(), b).unwrap()))
            .collect();
        safetensors::serialize(views, &None).unwrap()
    }

    fn write(&self) {
        std::fs::write(
            self.path().join("config.json"),
            serde_json::to_string_pretty(&self.config).unwrap(),
        )
        .unwrap();
        std::fs::write(
            self.path().join("model.safetensors"),
            Self::serialize(&self.tensors),
        )
        .unwrap();
    }

    /// Splits the tensors over two shards with an index.
    fn write_sharded(&self) {
        std::fs::write(
            self.path().join("config.json"),
            serde_json::to_string(&self.config).unwrap(),
        )
        .unwrap();
        let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
        let mut map = serde_json::Map::new();
        for (i, (k, v)) in self.tensors.iter().enumerate() {
            let file = if i % 2 == 0 {
                a.insert(k.clone(), v.clone());
                "model-00001-of-00002.safetensors"
            } else {
                b.insert(k.clone(), v.clone());
                "model-00002-of-00002.safetensors"
            };
            map.insert(k.clone(), json!(file));
        }
        std::fs::write(
            self.path().join("model-00001-of-00002.safetensors"),
            Self::serialize(&a),
        )
        .unwrap();
        std::fs::write(
            self.path().join("model-00002-of-00002.safetensors"),
            Self::serialize(&b),
        )
        .unwrap();
        std::fs::write(
            self.path().join("model.safetensors.index.json"),
            json!({"metadata": {}, "weight_map": map}).to_string(),
        )
        .unwrap();
    }

    /// A Gemma-like SentencePiece model of 36 pieces (the embedding has 40 rows).
    fn write_tokenizer(&self) {
        let mut pieces = vec![
            ("<pad>", PieceType::Control),
            ("<eos>", PieceType::Control),
            ("<bos>", PieceType::Control),
            ("<unk>", PieceType::Unknown),
            ("<start_of_turn>", PieceType::UserDefined),
            ("<end_of_turn>", PieceType::UserDefined),
            ("<0x00>", PieceType::Byte),
            ("<unused0>", PieceType::Unused),
        ];
        let words = [
            "▁the", "▁a", "▁of", "▁to", "▁and", "▁in", "▁is", "▁it", "▁that", "▁for", "▁on",
            "▁with", "▁as", "▁was", "▁he", "▁be", "▁at", "▁by", "▁this", "▁had", "▁not", "▁are",
            "▁but", "▁from", "▁or", "▁have", "▁an", "▁they",
        ];
        pieces.extend(words.iter().map(|w| (*w, PieceType::Normal)));
        let sp = SentencePieceModel {
            pieces: pieces
                .iter()
                .enumerate()
                .map(|(i, (p, k))| Piece {
                    piece: p.to_string(),
                    score: -(i as f32),
                    kind: *k,
                })
                .collect(),
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
        };
        assert_eq!(sp.pieces.len(), 36);
        std::fs::write(self.path().join("tokenizer.model"), sp.encode()).unwrap();
        std::fs::write(
            self.path().join("tokenizer_config.json"),
            json!({
                "add_bos_token": true, "add_eos_token": false,
                "bos_token": "<bos>", "eos_token": {"content": "<eos>"}, "pad_token": "<pad>",
                "added_tokens_decoder": {"37": {"content": "<image_soft_token>", "special": true}},
                "chat_template": [
                    {"name": "tool_use", "template": "TOOLS"},
                    {"name": "default", "template": "{{ bos_token }}DEFAULT"}
                ]
            })
            .to_string(),
        )
        .unwrap();
        std::fs::write(
            self.path().join("generation_config.json"),
            json!({"eos_token_id": [1, 5], "bos_token_id": 2}).to_string(),
        )
        .unwrap();
    }

    fn convert(&self, ty: GgmlType) -> (ConvertReport, GgufFile, tempfile::TempDir) {
        let out_dir = tempfile::tempdir().unwrap();
        let out = out_dir.path().join("model.gguf");
        let mut opts = ConvertOptions::new(self.path(), &out);
        opts.ty = ty;
        let report = convert(&opts).unwrap_or_else(|e| panic!("convert failed: {e}"));
        let file = GgufFile::open(&out).unwrap();
        assert_eq!(report.output_bytes, std::fs::metadata(&out).unwrap().len());
        (report, file, out_dir)
    }

    fn convert_err(&self) -> String {
        let out_dir = tempfile::tempdir().unwrap();
        let out = out_dir.path().join("model.gguf");
        let err = convert(&ConvertOptions::new(self.path(), &out))
            .unwrap_err()
            .to_string();
        assert!(!out.exists());
        assert_eq!(std::fs::read_dir(out_dir.path()).unwrap().count(), 0);
        err
    }

    fn bf16_values(&self, name: &str) -> Vec<f32> {
        self.tensors[name]
            .2
            .chunks_exact(2)
            .map(|b| f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16))
            .collect()
    }
}

const TYPES: [GgmlType; 4] = [GgmlType::F32, GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_0];

fn f32s(data: &[u8]) -> Vec<f32> {
    data.chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[test]
fn v1_every_type() {
    let c = Ckpt::v1();
    c.write();
    c.write_tokenizer();
    for ty in TYPES {
        let (report, f, _keep) = c.convert(ty);
        assert_eq!(report.architecture, "t5gemma");
        // 2 embeddings + enc 2x11 + norm + dec 2x17 + norm.
        assert_eq!(report.tensors, 2 + 22 + 1 + 34 + 1);
        assert_eq!(f.tensors().len(), report.tensors);
        assert!(report.skipped.is_empty());
        assert_eq!(f.get_str("general.architecture").unwrap(), "t5gemma");
        let ft = [0, 1, 7, 2][TYPES.iter().position(|t| *t == ty).unwrap()];
        assert_eq!(f.get_usize("general.file_type").unwrap(), ft);
        assert_eq!(f.get_usize("general.quantization_version").unwrap(), 2);
        assert_eq!(f.get_usize("t5gemma.vocab_size").unwrap(), VOCAB);
        assert_eq!(f.get_usize("t5gemma.encoder.embedding_length").unwrap(), 64);
        assert_eq!(f.get_usize("t5gemma.decoder.embedding_length").unwrap(), 32);
        assert_eq!(
            f.get_usize("t5gemma.encoder.feed_forward_length").unwrap(),
            80
        );
        assert_eq!(
            f.get_usize("t5gemma.decoder.attention.head_count_kv")
                .unwrap(),
            1
        );
        assert_eq!(
            f.get_usize("t5gemma.decoder.attention.key_length").unwrap(),
            16
        );
        assert_eq!(
            f.get_f32("t5gemma.encoder.attention.query_pre_attn_scalar")
                .unwrap(),
            32.0
        );
        assert_eq!(
            f.get_usize("t5gemma.encoder.attention.sliding_window")
                .unwrap(),
            8
        );
        assert_eq!(
            f.get_str_array("t5gemma.encoder.attention.layer_types")
                .unwrap(),
            vec!["sliding_attention", "full_attention"]
        );
        assert_eq!(
            f.get_f32("t5gemma.encoder.attn_logit_softcapping").unwrap(),
            50.0
        );
        assert_eq!(
            f.get_f32("t5gemma.decoder.final_logit_softcapping")
                .unwrap(),
            30.0
        );
        assert!(f.get("t5gemma.encoder.final_logit_softcapping").is_none());
        assert_eq!(
            f.get_f32("t5gemma.decoder.rope.freq_base").unwrap(),
            10000.0
        );
        assert_eq!(
            f.get_f32("t5gemma.decoder.rope.freq_base_swa").unwrap(),
            10000.0
        );
        assert_eq!(
            f.get_f32("t5gemma.decoder.rope.scaling.factor").unwrap(),
            1.0
        );
        assert_eq!(
            f.opt_bool("t5gemma.encoder.attention.sliding_window_inclusive")
                .unwrap(),
            Some(true)
        );
        assert_eq!(f.get_usize("t5gemma.decoder_start_token_id").unwrap(), 2);
        // generation_config [1, 5], config 1, <end_of_turn> = 5.
        assert_eq!(
            f.get_i64_array("t5gemma.eos_token_ids").unwrap(),
            vec![1, 5]
        );

        // Names, shapes (ggml order) and types.
        let t = f.tensor("enc.blk.1.attn_q.weight").unwrap();
        assert_eq!(t.shape, &[64, 64]);
        assert_eq!(t.ty, ty);
        let t = f.tensor("dec.blk.0.cross_attn_k.weight").unwrap();
        assert_eq!(t.shape, &[64, 16]);
        let t = f.tensor("enc.blk.0.ffn_down.weight").unwrap();
        assert_eq!(t.shape, &[80, 64]);
        let fallback = match ty {
            GgmlType::Q8_0 | GgmlType::Q4_0 => GgmlType::F16,
            other => other,
        };
        assert_eq!(t.ty, fallback);
        assert_eq!(f.tensor("enc.blk.0.ffn_up.weight").unwrap().ty, ty);
        for name in [
            "enc.blk.0.attn_norm.weight",
            "dec.output_norm.weight",
            "dec.blk.1.post_cross_attn_norm.weight",
        ] {
            assert_eq!(f.tensor(name).unwrap().ty, GgmlType::F32, "{name}");
        }
        assert_eq!(
            f.tensor("dec.token_embd.weight").unwrap().shape,
            &[32, VOCAB]
        );
        assert!(f.tensor("output.weight").is_err());
        for info in f.tensors() {
            assert_eq!(info.range.start % 32, 0, "{}", info.name);
        }

        // Tokenizer.
        let tokens = f.get_str_array("tokenizer.ggml.tokens").unwrap();
        assert_eq!(tokens.len(), VOCAB);
        assert_eq!(tokens[5], "<end_of_turn>");
        assert_eq!(tokens[37], "<image_soft_token>");
        assert_eq!(tokens[36], "<unused1>"); // <unused0> is taken
        let types = f.get_i64_array("tokenizer.ggml.token_type").unwrap();
        assert_eq!(&types[..8], &[3, 3, 3, 2, 4, 4, 6, 5]);
        assert_eq!(&types[36..], &[5, 3, 5, 5]);
        assert_eq!(f.get_f32_array("tokenizer.ggml.scores").unwrap()[9], -9.0);
        assert_eq!(f.get_str("tokenizer.ggml.model").unwrap(), "llama");
        assert_eq!(f.get_usize("tokenizer.ggml.bos_token_id").unwrap(), 2);
        assert_eq!(f.get_usize("tokenizer.ggml.eos_token_id").unwrap(), 1);
        assert_eq!(f.get_usize("tokenizer.ggml.padding_token_id").unwrap(), 0);
        assert_eq!(f.get_usize("tokenizer.ggml.unknown_token_id").unwrap(), 3);
        assert_eq!(f.get_usize("tokenizer.ggml.eot_token_id").unwrap(), 5);
        assert_eq!(
            f.opt_bool("tokenizer.ggml.add_bos_token").unwrap(),
            Some(true)
        );
        assert_eq!(
            f.opt_bool("tokenizer.ggml.add_eos_token").unwrap(),
            Some(false)
        );
        assert_eq!(
            f.opt_bool("tokenizer.ggml.add_space_prefix").unwrap(),
            Some(false)
        );
        assert_eq!(
            f.get_str("tokenizer.chat_template").unwrap(),
            "{{ bos_token }}DEFAULT"
        );
        assert!(
            report.notes.iter().any(|n| n.contains("36 pieces for 40")),
            "{:?}",
            report.notes
        );
    }
}

#[test]
fn bf16_to_f32_is_exact_and_quantization_is_the_reference() {
    let c = Ckpt::v1();
    c.write();
    let src = c.bf16_values("model.encoder.layers.0.mlp.gate_proj.weight");
    let (_, f, _keep) = c.convert(GgmlType::F32);
    let got = f32s(f.tensor("enc.blk.0.ffn_gate.weight").unwrap().data);
    assert_eq!(got.len(), src.len());
    assert!(got
        .iter()
        .zip(&src)
        .all(|(a, b)| a.to_bits() == b.to_bits()));

    let (_, f, _keep) = c.convert(GgmlType::Q8_0);
    let mut blocks = vec![bytemuck::Zeroable::zeroed(); src.len() / 32];
    quant::quantize_row_q8_0(&src, &mut blocks);
    let data = f.tensor("enc.blk.0.ffn_gate.weight").unwrap().data;
    assert_eq!(data, bytemuck::cast_slice::<BlockQ8_0, u8>(&blocks));

    let (_, f, _keep) = c.convert(GgmlType::Q4_0);
    let mut blocks = vec![bytemuck::Zeroable::zeroed(); src.len() / 32];
    quant::quantize_row_q4_0(&src, &mut blocks);
    let data = f.tensor("enc.blk.0.ffn_gate.weight").unwrap().data;
    assert_eq!(data, bytemuck::cast_slice::<BlockQ4_0, u8>(&blocks));

    let (_, f, _keep) = c.convert(GgmlType::F16);
    let down = c.bf16_values("model.encoder.layers.0.mlp.down_proj.weight");
    let data = f.tensor("enc.blk.0.ffn_down.weight").unwrap().data;
    for (b, v) in data.chunks_exact(2).zip(&down) {
        assert_eq!(
            u16::from_le_bytes([b[0], b[1]]),
            quant::f32_to_f16(*v).to_bits()
        );
    }
}

#[test]
fn no_tokenizer_gives_an_ids_only_file() {
    let c = Ckpt::v1();
    c.write();
    let (report, f, _keep) = c.convert(GgmlType::F16);
    assert!(report
        .notes
        .iter()
        .any(|n| n.contains("no tokenizer.model")));
    assert!(f
        .metadata()
        .iter()
        .all(|(k, _)| !k.starts_with("tokenizer.")));
    assert_eq!(f.get_i64_array("t5gemma.eos_token_ids").unwrap(), vec![1]);
}

#[test]
fn sharded_matches_single_file() {
    let single = Ckpt::v1();
    single.write();
    let sharded = Ckpt::v1();
    sharded.write_sharded();
    let (_, a, _k1) = single.convert(GgmlType::Q8_0);
    let (_, b, _k2) = sharded.convert(GgmlType::Q8_0);
    assert_eq!(a.tensors().len(), b.tensors().len());
    for t in a.tensors() {
        let u = b.tensor(&t.name).unwrap();
        assert_eq!(a.view(t).data, u.data, "{}", t.name);
        assert_eq!(t.shape, u.shape);
    }
}

#[test]
fn v2_skips_vision_and_ties_embeddings() {
    let mut c = Ckpt::v2();
    // A stored tied copy is recognised and left out.
    let embed = c.tensors["model.encoder.text_model.embed_tokens.weight"].clone();
    c.tensors.insert("lm_head.out_proj.weight".into(), embed);
    c.write();
    c.write_tokenizer();
    for ty in TYPES {
        let (report, f, _keep) = c.convert(ty);
        assert_eq!(report.architecture, "t5gemma2");
        // embd + eoi + 2 x 2 x 13 + 2 norms.
        assert_eq!(report.tensors, 2 + 52 + 2);
        assert_eq!(report.skipped.len(), 4);
        assert!(report
            .skipped
            .contains(&"lm_head.out_proj.weight".to_string()));
        assert_eq!(f.get_usize("t5gemma2.vision_tensors_skipped").unwrap(), 3);
        assert_eq!(f.get_usize("t5gemma2.eoi_token_id").unwrap(), 38);
        let eoi = f.tensor("token_embd_eoi.weight").unwrap();
        assert_eq!((eoi.ty, eoi.shape), (GgmlType::F32, &[64usize][..]));
        let src = c.bf16_values("model.encoder.text_model.embed_tokens.eoi_embedding");
        assert_eq!(f32s(eoi.data), src);
        assert_eq!(f.tensor("token_embd.weight").unwrap().shape, &[64, VOCAB]);
        assert_eq!(f.tensor("token_embd.weight").unwrap().ty, ty);
        assert_eq!(
            f.tensor("dec.blk.1.attn_k_norm.weight").unwrap().shape,
            &[32]
        );
        assert_eq!(
            f.tensor("enc.blk.0.attn_q.weight").unwrap().shape,
            &[64, 128]
        );
        assert!(f.tensor("dec.blk.0.cross_attn_q.weight").is_err());
        assert!(f.tensor("enc.token_embd.weight").is_err());
        assert!(f
            .metadata()
            .iter()
            .all(|(k, _)| !k.ends_with("attn_logit_softcapping")));
        assert!(f.get("t5gemma2.decoder.final_logit_softcapping").is_none());
        assert_eq!(f.get_f32("t5gemma2.encoder.rope.freq_base").unwrap(), 1e6);
        assert_eq!(
            f.get_f32("t5gemma2.encoder.rope.scaling.factor").unwrap(),
            8.0
        );
        assert_eq!(
            f.get_f32("t5gemma2.decoder.rope.freq_base_swa").unwrap(),
            1e4
        );
        assert_eq!(
            f.get_f32("t5gemma2.decoder.rope.scaling_swa.factor")
                .unwrap(),
            1.0
        );
        assert!(f
            .get("t5gemma.encoder.attention.sliding_window_inclusive")
            .is_none());
        // generation_config [1, 5], config [1, 39], <end_of_turn> 5.
        assert_eq!(
            f.get_i64_array("t5gemma2.eos_token_ids").unwrap(),
            vec![1, 5, 39]
        );
    }
}

#[test]
fn v2_untied_lm_head_is_refused() {
    let mut c = Ckpt::v2();
    c.add("lm_head.out_proj.weight", &[VOCAB, 64]);
    c.write();
    let err = c.convert_err();
    assert!(
        err.contains("lm_head.out_proj.weight") && err.contains("differs"),
        "{err}"
    );
}

#[test]
fn v1_lm_head_identical_is_skipped_and_different_is_stored() {
    let mut c = Ckpt::v1();
    let embed = c.tensors["model.decoder.embed_tokens.weight"].clone();
    c.tensors.insert("lm_head.out_proj.weight".into(), embed);
    c.write();
    let (report, f, _keep) = c.convert(GgmlType::F32);
    assert_eq!(report.skipped, vec!["lm_head.out_proj.weight".to_string()]);
    assert!(f.tensor("output.weight").is_err());

    let mut c = Ckpt::v1();
    c.add("lm_head.out_proj.weight", &[VOCAB, 32]);
    c.write();
    let (report, f, _keep) = c.convert(GgmlType::F32);
    assert!(report.skipped.is_empty());
    let out = f.tensor("output.weight").unwrap();
    assert_eq!(out.shape, &[32, VOCAB]);
    assert_eq!(f32s(out.data), c.bf16_values("lm_head.out_proj.weight"));
}

#[test]
fn missing_tensor_is_named() {
    let mut c = Ckpt::v1();
    c.tensors
        .remove("model.decoder.layers.1.cross_attn.v_proj.weight");
    c.write();
    let err = c.convert_err();
    assert!(
        err.contains("`model.decoder.layers.1.cross_attn.v_proj.weight`")
            && err.contains("missing"),
        "{err}"
    );
}

#[test]
fn wrong_shape_is_named_with_both_shapes() {
    let mut c = Ckpt::v1();
    c.add("model.decoder.layers.0.cross_attn.k_proj.weight", &[16, 32]);
    c.write();
    let err = c.convert_err();
    assert!(
        err.contains("model.decoder.layers.0.cross_attn.k_proj.weight"),
        "{err}"
    );
    assert!(
        err.contains("[16, 64]") && err.contains("[16, 32]"),
        "{err}"
    );
}

#[test]
fn unexpected_tensor_and_bad_dtype_are_refused() {
    let mut c = Ckpt::v1();
    c.add("model.encoder.layers.2.mlp.up_proj.weight", &[80, 64]);
    c.write();
    let err = c.convert_err();
    assert!(
        err.contains("model.encoder.layers.2.mlp.up_proj.weight") && err.contains("unexpected"),
        "{err}"
    );

    let mut c = Ckpt::v1();
    let name = "model.encoder.norm.weight";
    c.tensors
        .insert(name.into(), (Dtype::I32, vec![64], vec![0; 256]));
    c.write();
    let err = c.convert_err();
    assert!(err.contains(name) && err.contains("I32"), "{err}");
}

#[test]
fn config_errors() {
    let mut c = Ckpt::v1();
    c.config["model_type"] = json!("llama");
    c.write();
    let err = c.convert_err();
    assert!(
        err.contains("config.json") && err.contains("\"llama\""),
        "{err}"
    );

    let mut c = Ckpt::v1();
    c.config["decoder"]
        .as_object_mut()
        .unwrap()
        .remove("num_key_value_heads");
    c.write();
    let err = c.convert_err();
    assert!(
        err.contains("config.json") && err.contains("decoder.num_key_value_heads"),
        "{err}"
    );

    let c = Ckpt::v1();
    let err = c.convert_err();
    assert!(err.contains("config.json"), "{err}");
}

#[test]
fn garbage_inputs_give_clean_errors() {
    let c = Ckpt::v1();
    c.write();
    std::fs::write(c.path().join("tokenizer.model"), b"\x0a\xff\xff\x03garbage").unwrap();
    let err = c.convert_err();
    assert!(
        err.contains("tokenizer.model") && err.contains("malformed"),
        "{err}"
    );

    let c = Ckpt::v1();
    c.write();
    let st = c.path().join("model.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    for cut in [0, 5, 100, bytes.len() - 1] {
        std::fs::write(&st, &bytes[..cut]).unwrap();
        let err = c.convert_err();
        assert!(err.contains("model.safetensors"), "{err}");
    }
}

#[test]
fn output_must_not_overwrite_the_input() {
    let c = Ckpt::v1();
    c.write();
    let before = std::fs::read(c.path().join("model.safetensors")).unwrap();
    for out in [
        c.path().to_path_buf(),
        c.path().join("model.safetensors"),
        c.path().join("config.json"),
        c.path().join(".").join("model.safetensors"),
    ] {
        let err = convert(&ConvertOptions::new(c.path(), &out))
            .unwrap_err()
            .to_string();
        assert!(err.contains("refusing"), "{err}");
    }
    assert_eq!(
        std::fs::read(c.path().join("model.safetensors")).unwrap(),
        before
    );
    // Writing a new file next to the checkpoint is fine.
    let out: PathBuf = c.path().join("model.gguf");
    convert(&ConvertOptions::new(c.path(), &out)).unwrap();
}

#[test]
fn failure_midway_leaves_no_file() {
    let mut c = Ckpt::v1();
    // The last tensor written (decoder output norm) holds a NaN: the failure comes after
    // most of the file has been streamed out.
    let name = "model.decoder.norm.weight";
    let mut v = c.bf16_values(name);
    v[3] = f32::NAN;
    c.tensors.get_mut(name).unwrap().2 = bf16_bytes(&v);
    c.write();
    let err = c.convert_err();
    assert!(err.contains(name) && err.contains("element 3"), "{err}");
}
