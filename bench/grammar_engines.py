"""llguidance (what llamalite uses) beside outlines-core on the real vocabularies: the
vocabulary set-up, the compile time of one JSON schema, and the time to find the allowed
tokens per step (llguidance: a whole-vocabulary bit mask; outlines-core: the allowed ids).

    pip install outlines-core && python bench/grammar_engines.py

XGrammar is not measured: its wheel requires PyTorch, transformers and triton.
"""
import json, time, sys
import numpy as np
import llamalite
from llamalite.gguf import open_gguf
from llamalite.tokenizer import Tokenizer
import outlines_core as oc
SCHEMA = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 24},
          "population": {"type": "integer"}, "tags": {"type": "array", "items": {"enum": ["a", "b"]}}},
          "required": ["city", "population", "tags"], "additionalProperties": False}
for name in ["smollm2-135m", "gemma3-270m"]:
    tok = Tokenizer.from_metadata(open_gguf(str(llamalite.pull(name))).metadata)
    eos = sorted(tok.eog_ids)[0]
    t0 = time.perf_counter()
    m = {}
    for t in range(tok.n_vocab):
        if t in tok.eog_ids or tok.is_control(t): continue
        b = bytes(tok.token_bytes(t))
        if not b: continue
        m.setdefault(b, []).append(t)
    vocab = oc.Vocabulary(eos, m)
    t_vocab = time.perf_counter() - t0
    regex = oc.json_schema.build_regex_from_schema(json.dumps(SCHEMA))
    t0 = time.perf_counter(); index = oc.Index(regex, vocab); t_index = time.perf_counter() - t0
    guide = oc.Guide(index)
    t0 = time.perf_counter(); n = 0
    for _ in range(20):
        allowed = guide.get_tokens(); guide.advance(allowed[0]); n += 1
    t_step = (time.perf_counter() - t0) / n
    from llamalite.grammar import GrammarCompiler
    gc = GrammarCompiler(tok, tok.n_vocab)
    t0 = time.perf_counter(); gc._ll_tokenizer(); t_ll_vocab = time.perf_counter() - t0
    t0 = time.perf_counter(); mask = gc.compile(llamalite.SamplingParams(json_schema=SCHEMA)); t_ll_compile = time.perf_counter() - t0
    t0 = time.perf_counter()
    for tid in tok.tokenize('{"city": "Paris", "population": 2100000, "tags": ["a"', add_special=False)[:20]:
        mask.compute(); mask.consume(tid)
    t_ll_step = (time.perf_counter() - t0) / 20
    print(json.dumps({"model": name, "n_vocab": tok.n_vocab,
        "outlines_vocab_s": round(t_vocab, 3), "outlines_index_s": round(t_index, 3), "outlines_step_ms": round(t_step * 1e3, 3),
        "llguidance_vocab_s": round(t_ll_vocab, 3), "llguidance_compile_ms": round(t_ll_compile * 1e3, 2), "llguidance_mask_ms": round(t_ll_step * 1e3, 3)}))
