"""llama.cpp's own GBNF grammars (llama.cpp/grammars/*.gbnf from its source tree, fetched
once like the models) constrain SmolLM2's output. Each reply is checked by a validator
written here from the grammar (Python's json, or a `regex` pattern matched with
partial=True so a reply cut by max_tokens must still be a prefix of the language)."""
from __future__ import annotations

import json

import pytest
import regex

import llamalite

# grammar file -> (prompt, validator of the reply text, finish reason it may end with)
EN = r"[\x21-\x7e]+(?:[ \t\n][\x21-\x7e]+)*"
MOVE = r"(?:(?:[a-h]x)?[a-h][1-8](?:=[NBKQR])?|[NBKQR][a-h]?[1-8]?x?[a-h][1-8]|O-O(?:-O)?)[+#]?"
PATTERNS = {
    "english.gbnf": ("Write a sentence about the sea:", EN),
    "list.gbnf": ("Three fruits:\n", r"(?:- [^\r\n\x0b\x0c\x85\u2028\u2029]+\n)+"),
    "chess.gbnf": ("A chess game:\n", rf"1\. {MOVE} {MOVE}\n(?:[1-9][0-9]?\. {MOVE} {MOVE}\n)+"),
    "japanese.gbnf": ("日本語で:", r"[ぁ-ゟァ-ヿ、-〾一-鿿]+(?:[ \t\n][ぁ-ゟァ-ヿ、-〾一-鿿]+)*"),
    "arithmetic.gbnf": ("Some sums:\n", r"(?:[^=\n]+= ?[ \t\n]*[a-z0-9_()+*/ \t\n-]+\n)+"),
}


@pytest.fixture(scope="module")
def llm():
    with llamalite.LLM("smollm2-135m", n_ctx=1024, n_parallel=4, seed=0) as llm:
        yield llm


def grammar(tree, name: str) -> str:
    return (tree / "grammars" / name).read_text(encoding="utf-8")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_llama_cpp_grammar_constrains_the_reply(llm, llama_cpp_tree, name):
    prompt, pattern = PATTERNS[name]
    outs = llm.generate_batch([prompt] * 3, grammar=grammar(llama_cpp_tree, name),
                              temperature=1.0, max_tokens=40)
    for out in outs:
        cut = out.finish_reason == "length"
        # A reply cut inside a UTF-8 character ends with U+FFFD for the cut bytes.
        text = out.text[:-1] if cut and out.text.endswith("\ufffd") else out.text
        assert text
        assert regex.fullmatch(pattern, text, partial=cut), (out.finish_reason, out.text)


@pytest.mark.slow
@pytest.mark.parametrize("name, kind", [("json.gbnf", dict), ("json_arr.gbnf", list)])
def test_llama_cpp_json_grammars_give_json(llm, llama_cpp_tree, name, kind):
    """Every reply that ends by itself parses; a reply cut at max_tokens (the small model
    may repeat an array item) is not checked, but at least one of six ends."""
    outs = llm.generate_batch(["List two animals in JSON:"] * 6,
                              grammar=grammar(llama_cpp_tree, name), temperature=0.8,
                              max_tokens=150)
    ended = [o for o in outs if o.finish_reason == "stop"]
    assert ended, [o.text for o in outs]
    for out in ended:
        assert isinstance(json.loads(out.text), kind), out.text


def test_every_llama_cpp_grammar_compiles(llm, llama_cpp_tree):
    names = sorted(p.name for p in (llama_cpp_tree / "grammars").glob("*.gbnf"))
    assert len(names) >= 8
    for name in names:
        mask = llm.engine.grammars.compile(llamalite.SamplingParams(grammar=grammar(
            llama_cpp_tree, name)))
        assert mask is not None, name
