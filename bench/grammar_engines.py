"""llguidance (what llamalite uses) beside outlines-core on the real vocabularies: the
vocabulary set-up, the compile time of one JSON schema, and the time to find the allowed
tokens per step (llguidance: a whole-vocabulary bit mask; outlines-core: the allowed ids).

    pip install outlines-core && python bench/grammar_engines.py

XGrammar is not measured: its wheel requires PyTorch, transformers and triton.
"""
from __future__ import annotations

import json
import time

import outlines_core

import llamalite
from llamalite.grammar import GrammarCompiler
from llamalite.gguf import open_gguf
from llamalite.tokenizer import Tokenizer

SCHEMA = {"type": "object",
          "properties": {"city": {"type": "string", "maxLength": 24},
                         "population": {"type": "integer"},
                         "tags": {"type": "array", "items": {"enum": ["a", "b"]}}},
          "required": ["city", "population", "tags"], "additionalProperties": False}
REPLY = '{"city": "Paris", "population": 2100000, "tags": ["a"'
N_STEPS = 20


def _timed(fn):
    t0 = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0


def outlines(tok: Tokenizer) -> dict:
    def vocabulary():
        by_bytes: dict[bytes, list[int]] = {}
        for t in range(tok.n_vocab):
            raw = bytes(tok.token_bytes(t))
            if raw and t not in tok.eog_ids and not tok.is_control(t):
                by_bytes.setdefault(raw, []).append(t)
        return outlines_core.Vocabulary(sorted(tok.eog_ids)[0], by_bytes)
    vocab, t_vocab = _timed(vocabulary)
    regex = outlines_core.json_schema.build_regex_from_schema(json.dumps(SCHEMA))
    index, t_index = _timed(lambda: outlines_core.Index(regex, vocab))
    guide = outlines_core.Guide(index)
    t0 = time.perf_counter()
    for _ in range(N_STEPS):
        guide.advance(guide.get_tokens()[0])
    return {"outlines_vocab_s": t_vocab, "outlines_index_s": t_index,
            "outlines_step_ms": (time.perf_counter() - t0) / N_STEPS * 1e3}


def llguidance(tok: Tokenizer) -> dict:
    compiler = GrammarCompiler(tok, tok.n_vocab)
    _, t_vocab = _timed(compiler._ll_tokenizer)
    mask, t_compile = _timed(lambda: compiler.compile(llamalite.SamplingParams(json_schema=SCHEMA)))
    steps = tok.tokenize(REPLY, add_special=False)[:N_STEPS]
    t0 = time.perf_counter()
    for tid in steps:
        mask.compute()
        mask.consume(tid)
    return {"llguidance_vocab_s": t_vocab, "llguidance_compile_ms": t_compile * 1e3,
            "llguidance_mask_ms": (time.perf_counter() - t0) / len(steps) * 1e3}


def main() -> None:
    for name in ["smollm2-135m", "gemma3-270m"]:
        tok = Tokenizer.from_metadata(open_gguf(str(llamalite.pull(name))).metadata)
        row = {"model": name, "n_vocab": tok.n_vocab, **outlines(tok), **llguidance(tok)}
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}))


if __name__ == "__main__":
    main()
