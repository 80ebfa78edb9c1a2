#!/usr/bin/env python3
"""Write a SentencePiece model's vocabulary as a tensor-less GGUF holding only the llama.cpp
tokenizer keys (tokenizer.ggml.*), the way llama.cpp's convert_hf_to_gguf.py stores a Gemma
vocabulary:

  * tokens from sp.id_to_piece, scores from sp.get_score;
  * types from the model proto: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused,
    6 byte;
  * user-defined pieces get their U+2581 turned back into spaces (llama.cpp matches them in the
    raw text, before spaces are escaped);
  * add_space_prefix = normalizer_spec.add_dummy_prefix.

Usage: spm_to_gguf_vocab.py tokenizer.model vocab.gguf
Needs only PyPI packages: sentencepiece, protobuf, gguf.
"""
import sys

import gguf
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as pb

PROTO_TO_GGUF = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6}  # NORMAL..BYTE share llama.cpp's numbering


def main(model_path: str, out_path: str) -> None:
    sp = spm.SentencePieceProcessor(model_file=model_path)
    proto = pb.ModelProto()
    with open(model_path, "rb") as f:
        proto.ParseFromString(f.read())
    norm = proto.normalizer_spec
    if norm.name not in ("identity", "") or norm.remove_extra_whitespaces:
        print(
            f"warning: normalizer {norm.name!r} (remove_extra_whitespaces="
            f"{norm.remove_extra_whitespaces}); t5g does not normalize",
            file=sys.stderr,
        )

    tokens, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        piece = sp.id_to_piece(i)
        ty = PROTO_TO_GGUF[proto.pieces[i].type]
        assert proto.pieces[i].piece == piece
        if ty == 4:
            piece = piece.replace("\u2581", " ")
        tokens.append(piece)
        scores.append(sp.get_score(i))
        types.append(ty)

    w = gguf.GGUFWriter(out_path, arch="tokenizer-only")
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    for name, value in (
        ("bos", sp.bos_id()),
        ("eos", sp.eos_id()),
        ("unknown", sp.unk_id()),
        ("padding", sp.pad_id()),
    ):
        if value >= 0:
            w.add_uint32(f"tokenizer.ggml.{name}_token_id", value)
    if "<end_of_turn>" in tokens:
        w.add_uint32("tokenizer.ggml.eot_token_id", tokens.index("<end_of_turn>"))
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(bool(norm.add_dummy_prefix))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"{out_path}: {len(tokens)} tokens, add_space_prefix={bool(norm.add_dummy_prefix)}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
