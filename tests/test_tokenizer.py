"""Tokenizers against llama.cpp: ids and detokenized text recorded from the peer.

tests/data/tokenizer_cases.json is written by tests/tools/record_tokens.py (llama-cpp-python);
these tests only read it.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from llamalite import open_gguf
from llamalite.errors import TokenizerError
from llamalite.pretokenizer import get_splitter
from llamalite.tokenizer import StreamDecoder, Tokenizer

DATA = json.loads((Path(__file__).parent / "data" / "tokenizer_cases.json").read_text("utf-8"))
MODEL_NAMES = list(DATA["models"])
N_CASES = {name: len(DATA["models"][name]["cases"]) for name in MODEL_NAMES}
FLAGS = {"10": (True, False), "11": (True, True), "00": (False, False)}


@pytest.fixture(scope="module")
def tokenizers(smollm2_path, gemma3_path) -> dict[str, Tokenizer]:
    paths = {"smollm2-135m": smollm2_path, "gemma3-270m": gemma3_path}
    out = {}
    for name, path in paths.items():
        with open_gguf(path) as f:
            out[name] = Tokenizer.from_metadata(f.metadata)
    return out


def _case_params():
    return [pytest.param(name, i, id=f"{name}-{i}")
            for name in MODEL_NAMES for i in range(N_CASES[name])]


# --- against llama.cpp ---

def test_corpus_is_big_enough():
    for name in MODEL_NAMES:
        texts = [c["text"] for c in DATA["models"][name]["cases"]]
        assert len(texts) >= 40 and "" in texts


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_vocab_facts_match_llama_cpp(tokenizers, name):
    tok = tokenizers[name]
    v = DATA["models"][name]["vocab"]
    assert tok.n_vocab == v["n_vocab"]
    assert tok.bos_id == v["bos_id"] and tok.eos_id == v["eos_id"]
    assert tok.add_bos == v["add_bos"] and tok.add_eos == v["add_eos"]
    assert tok.eog_ids == frozenset(v["eog_ids"])


@pytest.mark.parametrize("name,index", _case_params())
def test_tokenize_matches_llama_cpp(tokenizers, name, index):
    tok = tokenizers[name]
    case = DATA["models"][name]["cases"][index]
    for key, want in case["ids"].items():
        add_special, parse_special = FLAGS[key]
        got = tok.tokenize(case["text"], add_special=add_special, parse_special=parse_special)
        assert got == want, f"{case['text']!r} add_special={add_special} parse_special={parse_special}"


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_random_strings_match_llama_cpp(tokenizers, name):
    """300 seeded random mixes of scripts, whitespace, digits, emoji and special-token
    fragments (tests/tools/record_tokens.py: random_corpus)."""
    tok = tokenizers[name]
    bad = []
    for case in DATA["models"][name]["random_cases"]:
        for key, want in case["ids"].items():
            add_special, parse_special = FLAGS[key]
            if tok.tokenize(case["text"], add_special, parse_special) != want:
                bad.append((key, case["text"]))
    assert not bad, f"{len(bad)} mismatches, first: {bad[:3]!r}"


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_long_text_matches_llama_cpp(tokenizers, name):
    case = DATA["models"][name]["long_case"]
    tok = tokenizers[name]
    ids = tok.tokenize(case["text"])
    assert len(ids) > 10_000 and ids == case["ids"]["10"]
    # SentencePiece reads a literal "▁" as a space, so it comes back as one
    want = case["text"].replace("\u2581", " ") if tok.model == "llama" else case["text"]
    assert tok.detokenize(ids, skip_special=True) == want


@pytest.mark.parametrize("name,index", _case_params())
def test_detokenize_matches_llama_cpp(tokenizers, name, index):
    tok = tokenizers[name]
    case = DATA["models"][name]["cases"][index]
    ids = case["ids"]["11"]
    assert tok.detokenize_bytes(ids) == case["detok_special"].encode("latin-1")
    assert tok.detokenize_bytes(ids, skip_special=True) == case["detok_plain"].encode("latin-1")
    assert tok.detokenize(ids, skip_special=True) == \
        case["detok_plain"].encode("latin-1").decode("utf-8", "replace")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_round_trip_without_special_parsing(tokenizers, name):
    """Plain text comes back unchanged wherever llama.cpp gives it back unchanged."""
    tok = tokenizers[name]
    checked = 0
    for case in DATA["models"][name]["cases"]:
        text = case["text"]
        llama_cpp_round_trip = case["detok_plain"].encode("latin-1").decode("utf-8", "replace")
        if "<" in text or llama_cpp_round_trip != text:
            continue
        assert tok.detokenize(tok.tokenize(text, add_special=False), skip_special=True) == text
        assert tok.detokenize(tok.tokenize(text), skip_special=True) == text
        checked += 1
    assert checked >= 35


# --- streaming ---

def _stream(tok: Tokenizer, ids, skip_special: bool) -> list[str]:
    dec = StreamDecoder(tok, skip_special=skip_special)
    pieces = [dec.push(i) for i in ids]
    pieces.append(dec.flush())
    return pieces


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("skip_special", [False, True])
def test_stream_decoder_matches_detokenize(tokenizers, name, skip_special):
    tok = tokenizers[name]
    waited = 0
    for case in DATA["models"][name]["cases"]:
        ids = case["ids"]["11"]
        pieces = _stream(tok, ids, skip_special)
        assert "".join(pieces) == tok.detokenize(ids, skip_special=skip_special), case["text"]
        for piece in pieces:
            piece.encode("utf-8")               # no lone surrogates: complete characters only
            assert "\ufffd" not in piece or "\ufffd" in case["text"]
        waited += sum(1 for p in pieces[:-1] if p == "")
    # emoji / CJK / rare scripts are split across byte tokens in both vocabularies
    assert waited > 0


def test_stream_decoder_waits_for_gemma_byte_fallback(tokenizers):
    tok = tokenizers["gemma3-270m"]
    text = "𓀀"                                  # not in the vocabulary: 4 byte tokens
    ids = tok.tokenize(text, add_special=False)
    assert [tok.token_text(i) for i in ids] == ["<0xF0>", "<0x93>", "<0x80>", "<0x80>"]
    assert _stream(tok, ids, False) == ["", "", "", text, ""]


def test_stream_decoder_flushes_incomplete_character(tokenizers):
    tok = tokenizers["gemma3-270m"]
    ids = tok.tokenize("𓀀", add_special=False)[:2]
    dec = StreamDecoder(tok)
    assert [dec.push(i) for i in ids] == ["", ""]
    assert dec.flush() == "\ufffd"


# --- token facts ---

def test_special_token_facts(tokenizers):
    smol, gemma = tokenizers["smollm2-135m"], tokenizers["gemma3-270m"]
    im_end = smol.token_to_id("<|im_end|>")
    assert smol.is_special(im_end) and smol.is_eog(im_end)
    assert smol.token_text(im_end) == "<|im_end|>"
    assert smol.token_bytes(im_end) == b"<|im_end|>"
    hello = smol.tokenize(" Hello", add_special=False)
    assert len(hello) == 1 and smol.token_text(hello[0]) == "\u0120Hello"
    assert smol.token_bytes(hello[0]) == b" Hello" and not smol.is_special(hello[0])
    eot = gemma.token_to_id("<end_of_turn>")
    assert gemma.is_eog(eot) and gemma.is_special(eot) and gemma.is_control(eot)
    nl = gemma.token_to_id("\n")
    assert gemma.is_special(nl) and not gemma.is_control(nl)   # user-defined
    assert gemma.token_bytes(gemma.token_to_id("<0x0A>")) == b"\n"
    assert gemma.token_bytes(gemma.token_to_id("\u2581world")) == b" world"


def test_bad_ids_raise(tokenizers):
    tok = tokenizers["smollm2-135m"]
    for bad in (-1, tok.n_vocab, 10**12):
        with pytest.raises(TokenizerError, match="outside the vocabulary"):
            tok.detokenize([1, bad])
        with pytest.raises(TokenizerError):
            tok.token_text(bad)
    with pytest.raises(TokenizerError):
        StreamDecoder(tok).push(tok.n_vocab)
    with pytest.raises(TypeError):
        tok.tokenize(b"bytes")  # type: ignore[arg-type]


def test_lone_surrogates_are_replaced(tokenizers):
    tok = tokenizers["smollm2-135m"]
    assert tok.tokenize("a\ud800b") == tok.tokenize("a\ufffdb")


# --- synthetic vocabularies: metadata errors, pre-tokenizers, space clean-up ---

def _byte_level_metadata(pre: str, merges=(), extra=()) -> dict:
    from llamalite.bpe import BYTE_TO_UNICODE
    tokens = list(BYTE_TO_UNICODE) + [a.replace(" ", "") for a in merges] + list(extra)
    return {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": pre,
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": np.ones(len(tokens), dtype=np.int32),
        "tokenizer.ggml.merges": list(merges),
    }


def test_metadata_errors_name_the_problem():
    with pytest.raises(TokenizerError, match="tokenizer.ggml.model"):
        Tokenizer.from_metadata({})
    with pytest.raises(TokenizerError, match="unsupported tokenizer.ggml.model='t5'"):
        Tokenizer.from_metadata({"tokenizer.ggml.model": "t5", "tokenizer.ggml.tokens": ["a"]})
    with pytest.raises(TokenizerError, match="tokenizer.ggml.pre='nope'.*supported"):
        Tokenizer.from_metadata(_byte_level_metadata("nope"))
    md = _byte_level_metadata("gpt2")
    del md["tokenizer.ggml.merges"]
    with pytest.raises(TokenizerError, match="merges"):
        Tokenizer.from_metadata(md)
    md = _byte_level_metadata("gpt2")
    md["tokenizer.ggml.tokens"] = md["tokenizer.ggml.tokens"] + ["a"]
    md["tokenizer.ggml.token_type"] = np.ones(257, dtype=np.int32)
    with pytest.raises(TokenizerError, match="duplicate token"):
        Tokenizer.from_metadata(md)
    md = _byte_level_metadata("gpt2")
    md["tokenizer.ggml.token_type"] = md["tokenizer.ggml.token_type"][:10]
    with pytest.raises(TokenizerError, match="token_type has 10 entries"):
        Tokenizer.from_metadata(md)
    with pytest.raises(TokenizerError, match=r"tokenizer.ggml.tokens\[1\] is int"):
        Tokenizer.from_metadata({"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": ["a", 5]})
    with pytest.raises(TokenizerError, match="scores must be 2 numbers"):
        Tokenizer.from_metadata({"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": ["a", "b"],
                                 "tokenizer.ggml.scores": ["x", "y"]})
    md = _byte_level_metadata("gpt2")
    md["tokenizer.ggml.eos_token_id"] = "two"
    with pytest.raises(TokenizerError, match="eos_token_id must be an integer"):
        Tokenizer.from_metadata(md)
    # SentencePiece defaults to BOS id 1, which a one-token vocabulary does not have
    with pytest.raises(TokenizerError, match="bos_token_id is not set"):
        Tokenizer.from_metadata({"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": ["a"],
                                 "tokenizer.ggml.add_bos_token": True})


# Expected splits follow the pre-tokenizer expressions of each model's tokenizer.json.
@pytest.mark.parametrize("pre,text,words", [
    ("gpt2", "Hello 12345 world!!  x's\n\n", ["Hello", " 12345", " world", "!!", " ", " x", "'s", "\n\n"]),
    ("llama3", "Hello 12345 world!!\n\nIT'S", ["Hello", " ", "123", "45", " world", "!!\n\n", "IT", "'S"]),
    ("llama-bpe", "a  b\n", ["a", " ", " b", "\n"]),
    ("qwen2", "x=123 ab", ["x", "=", "1", "2", "3", " ab"]),
    ("smollm", "v2.10 ok", ["v", "2", ".", "1", "0", " ok"]),
    ("default", "a+b 1234", ["a", "+", "b", " ", "123", "4"]),
])
def test_pre_tokenizer_splits(pre, text, words):
    got = get_splitter(pre).split(text)
    assert "".join(got) == text
    assert got == words


def test_byte_level_merges_and_clean_spaces():
    md = _byte_level_metadata("gpt2", merges=["\u0120 w", "\u0120w o", "h i"])
    tok = Tokenizer.from_metadata(md)
    assert tok.clean_spaces and not tok.add_bos
    ids = tok.tokenize("hi wow")
    assert [tok.token_text(i) for i in ids] == ["hi", "\u0120wo", "w"]
    text = "Hello , world ! It 's a ' quote ' ok ."
    ids = tok.tokenize(text)
    # llama.cpp's clean-up: no space before , ! . ; " 's" joined; " ' " -> "'"
    assert tok.detokenize(ids) == "Hello, world! It's a'quote'ok."
    assert "".join(_stream(tok, ids, False)) == tok.detokenize(ids)


def test_stream_decoder_long_clean_spaces_stream():
    tok = Tokenizer.from_metadata(_byte_level_metadata("gpt2", merges=["\u0120 w"]))
    text = "".join(f"word{i} , it 's {i} ' x ' ! y . " if i % 3 else f"é😀{i}  \n"
                   for i in range(600))
    ids = tok.tokenize(text)
    dec = StreamDecoder(tok)
    out = []
    for i in ids:
        out.append(dec.push(i))
        assert len(dec._raw) < 2 * StreamDecoder._TRIM_ABOVE     # bounded work per push
    out.append(dec.flush())
    assert "".join(out) == tok.detokenize(ids)


def test_gpt2_byte_level_emoji_stream():
    tok = Tokenizer.from_metadata(_byte_level_metadata("smollm"))
    ids = tok.tokenize("é😀")
    assert len(ids) == 6                                     # one token per byte, no merges
    pieces = _stream(tok, ids, False)
    assert pieces == ["", "é", "", "", "", "😀", ""]


# --- vocabulary variants: other pre-tokenizers and flags, recorded from llama.cpp ---

VARIANTS = json.loads((Path(__file__).parent / "data" / "tokenizer_variants.json")
                      .read_text("utf-8"))["variants"]


@pytest.fixture(scope="module")
def base_metadata(smollm2_path, gemma3_path) -> dict[str, dict]:
    out = {}
    for name, path in {"smollm2-135m": smollm2_path, "gemma3-270m": gemma3_path}.items():
        with open_gguf(path) as f:
            out[name] = dict(f.metadata)
    return out


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variant_matches_llama_cpp(base_metadata, variant):
    """The real vocabularies with `tokenizer.ggml.pre` (gpt-2, llama-bpe, qwen2, default,
    starcoder) or the SentencePiece flags changed; tests/tools/record_variants.py."""
    v = VARIANTS[variant]
    md = dict(base_metadata[v["base"]])
    md.update(v["set"])
    for key in v["delete"]:
        md.pop(key, None)
    tok = Tokenizer.from_metadata(md)
    assert (tok.add_bos, tok.add_eos) == (v["vocab"]["add_bos"], v["vocab"]["add_eos"])
    assert tok.eog_ids == frozenset(v["vocab"]["eog_ids"])
    bad = []
    for case in v["cases"]:
        for key, want in case["ids"].items():
            if tok.tokenize(case["text"], *FLAGS[key]) != want:
                bad.append(("ids", key, case["text"]))
        ids = case["ids"]["11"]
        for skip, field in ((False, "detok_special"), (True, "detok_plain")):
            if tok.detokenize_bytes(ids, skip_special=skip) != case[field].encode("latin-1"):
                bad.append(("detokenize", skip, case["text"]))
            if "".join(_stream(tok, ids, skip)) != tok.detokenize(ids, skip_special=skip):
                bad.append(("stream", skip, case["text"]))
    assert not bad, f"{len(bad)} mismatches, first: {bad[:3]!r}"
