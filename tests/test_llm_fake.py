"""LLM's decode loop, streaming, chat shapes and scoring, on the small fakes of tests/fakes.py."""
from __future__ import annotations

import math

import numpy as np
import pytest
from fakes import BOS, EOS, FakeModel, fake_llm

TEXT = "Hello world. The end."


def test_greedy_generate_follows_the_script_and_stops_at_eos():
    llm = fake_llm(TEXT)
    out = llm.generate("Hello", temperature=0)
    assert out.text == " world. The end."
    assert out.finish_reason == "stop"
    assert out.token_ids == list(b" world. The end.")
    assert (out.usage.prompt_tokens, out.usage.completion_tokens) == (6, 17)   # EOS counted
    assert out.usage.total_tokens == 23


def test_max_tokens_gives_length():
    out = fake_llm(TEXT).generate("Hello", temperature=0, max_tokens=3)
    assert (out.text, out.finish_reason, out.usage.completion_tokens) == (" wo", "length", 3)


def test_stop_strings_and_stop_token_ids():
    llm = fake_llm(TEXT)
    out = llm.generate("Hello", temperature=0, stop=["The"])
    assert (out.text, out.finish_reason) == (" world. ", "stop")
    out = llm.generate("Hello", temperature=0, stop_token_ids=[ord(".")])
    assert (out.text, out.finish_reason) == (" world", "stop")


def test_held_back_text_is_released_at_eos_and_at_the_length_limit():
    llm = fake_llm("Hello wor#")
    out = llm.generate("Hello", temperature=0, stop=["###"])
    assert (out.text, out.finish_reason) == (" wor#", "stop")
    out = llm.generate("Hello", temperature=0, stop=["###"], max_tokens=5)
    assert (out.text, out.finish_reason) == (" wor#", "length")
    out = fake_llm("Hello ✓").generate("Hello", temperature=0, max_tokens=3)
    assert (out.text, out.finish_reason) == (" \ufffd", "length")   # a cut character


def test_ignore_eos_runs_to_max_tokens():
    out = fake_llm(TEXT).generate("Hello", temperature=0, ignore_eos=True, max_tokens=20)
    assert out.finish_reason == "length" and out.usage.completion_tokens == 20
    assert out.text.startswith(" world. The end.")


def test_stream_pieces_are_whole_characters_and_join_to_the_text():
    text = "Zoë says ✓ and 🙂 ok"
    llm = fake_llm(text)
    chunks = list(llm.generate("Zo", temperature=0, stream=True))
    assert all(c.finish_reason is None for c in chunks[:-1])
    assert chunks[-1].finish_reason == "stop" and chunks[-1].usage.completion_tokens > 0
    pieces = [c.text for c in chunks]
    assert "".join(pieces) == "ë says ✓ and 🙂 ok"
    assert "✓" in pieces and "🙂" in pieces and "\ufffd" not in "".join(pieces)
    assert llm.generate("Zo", temperature=0).text == "".join(pieces)


def test_prompt_as_token_ids_and_cache_reuse_is_exact():
    model = FakeModel(TEXT)
    from fakes import FakeChatTemplate, FakeStreamDecoder, FakeTokenizer
    from llamalite.llm import LLM
    llm = LLM._from_parts(model, FakeTokenizer(), FakeChatTemplate(), FakeStreamDecoder, n_ctx=64)
    a = llm.generate([BOS, *b"Hello"], temperature=0, max_tokens=5)
    model.calls.clear()
    b = llm.generate([BOS, *b"Hello world"], temperature=0, max_tokens=5)
    assert a.text == " worl" and b.text == ". The"
    # cached: BOS Hello " wor" (the last sampled 'l' was never fed), so the
    # prefill of BOS Hello " world" computes only "ld".
    assert model.calls[0] == 2
    # A different prompt throws the stale tail away: the fake model would say '?'.
    c = llm.generate([BOS, *b"Hello"], temperature=0, max_tokens=6)
    assert c.text == " world"


def test_long_prompt_is_prefilled_in_chunks_of_512():
    text = "abcdefghij" * 70
    model = FakeModel(text)
    from fakes import FakeChatTemplate, FakeStreamDecoder, FakeTokenizer
    from llamalite.llm import LLM
    llm = LLM._from_parts(model, FakeTokenizer(), FakeChatTemplate(), FakeStreamDecoder, n_ctx=1024)
    out = llm.generate(text[:600], temperature=0, max_tokens=4)
    assert out.text == text[600:604]
    assert model.calls[:2] == [512, 89] and model.calls[2:] == [1, 1, 1]


def test_prompt_longer_than_n_ctx_is_refused():
    llm = fake_llm(TEXT, n_ctx=8)
    with pytest.raises(ValueError, match=r"n_prompt_tokens=12.*n_ctx=8"):
        llm.generate("Hello world")
    with pytest.raises(ValueError, match=r"n_prompt_tokens=12.*n_ctx=8"):
        llm.generate("Hello world", stream=True)


def test_generation_stops_at_the_context_end():
    out = fake_llm(TEXT, n_ctx=10).generate("Hello", temperature=0, max_tokens=100)
    assert out.finish_reason == "length"
    assert out.usage.total_tokens == 11          # positions 0..9 fed, one more sampled


def test_bad_options_are_clear_errors():
    llm = fake_llm(TEXT)
    with pytest.raises(TypeError, match="unknown sampling option.*temprature"):
        llm.generate("Hi", temprature=0.5)
    with pytest.raises(ValueError, match="top_p"):
        llm.generate("Hi", top_p=2.0)
    with pytest.raises(ValueError, match="empty"):
        llm.generate([])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        llm.generate([1, 999])


def test_seeds_reproduce_and_llm_seed_makes_call_sequences_reproducible():
    kw = dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, max_tokens=12)
    a = fake_llm(TEXT, noise=3.0, peak=0.0).generate("H", seed=7, **kw).token_ids
    b = fake_llm(TEXT, noise=3.0, peak=0.0).generate("H", seed=7, **kw).token_ids
    assert a == b
    l1, l2 = fake_llm(TEXT, noise=3.0, peak=0.0, seed=1), fake_llm(TEXT, noise=3.0, peak=0.0, seed=1)
    assert [l1.generate("H", **kw).token_ids for _ in range(2)] == \
           [l2.generate("H", **kw).token_ids for _ in range(2)]


def test_logprobs_in_generate_and_chat():
    llm = fake_llm(TEXT)
    out = llm.generate("Hello", temperature=0, max_tokens=3, logprobs=2)
    assert [lp.token for lp in out.logprobs] == list(b" wo")
    assert all(lp.top_logprobs[0][0] == lp.token and len(lp.top_logprobs) == 2 for lp in out.logprobs)
    r = llm.chat([{"role": "user", "content": "x"}], temperature=0, max_tokens=2, logprobs=1)
    content = r["choices"][0]["logprobs"]["content"]
    assert len(content) == 2 and set(content[0]) == {"token", "logprob", "bytes", "top_logprobs"}
    assert content[0]["logprob"] <= 0


def test_chat_completion_shape():
    llm = fake_llm("<user>Hi\n<assistant>Hello there!")
    r = llm.chat([{"role": "user", "content": "Hi"}], temperature=0)
    assert r["object"] == "chat.completion" and r["id"].startswith("chatcmpl-")
    assert isinstance(r["created"], int) and r["model"] == "model"
    (choice,) = r["choices"]
    assert choice["message"] == {"role": "assistant", "content": "Hello there!"}
    assert choice["finish_reason"] == "stop" and choice["logprobs"] is None
    assert r["usage"]["prompt_tokens"] == len("<user>Hi\n<assistant>") + 1
    assert r["usage"]["total_tokens"] == r["usage"]["prompt_tokens"] + r["usage"]["completion_tokens"]


def test_chat_stream_chunks():
    llm = fake_llm("<user>Hi\n<assistant>Hello there!")
    chunks = list(llm.chat([{"role": "user", "content": "Hi"}], temperature=0, stream=True))
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "Hello there!"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["completion_tokens"] == len("Hello there!") + 1
    assert all(c["choices"][0]["finish_reason"] is None and c["usage"] is None for c in chunks[:-1])


def test_apply_chat_template_tokenize_detokenize():
    llm = fake_llm(TEXT)
    assert llm.apply_chat_template([{"role": "user", "content": "a"}]) == "<user>a\n<assistant>"
    assert llm.tokenize("ab") == [BOS, 97, 98]
    assert llm.tokenize("ab", add_special=False) == [97, 98]
    assert llm.detokenize([BOS, 97, 98, EOS]) == "ab"


def test_logits_are_teacher_forced_log_probabilities():
    model = FakeModel(TEXT)
    from fakes import FakeChatTemplate, FakeStreamDecoder, FakeTokenizer
    from llamalite.llm import LLM
    llm = LLM._from_parts(model, FakeTokenizer(), FakeChatTemplate(), FakeStreamDecoder, n_ctx=300)
    ids = [BOS, *TEXT.encode()] * 8                     # 176 tokens: two chunks of rows
    lp = llm.logits(ids)
    assert lp.shape == (len(ids), 258) and lp.dtype == np.float32
    np.testing.assert_allclose(np.exp(lp.astype(np.float64)).sum(axis=1), 1.0, rtol=1e-5)
    assert lp[:len(TEXT) + 1].argmax(axis=1).tolist() == [*TEXT.encode(), EOS]
    assert model.calls == [128, 48]


def test_perplexity_matches_the_definition():
    llm = fake_llm(TEXT, n_ctx=64)
    ids = llm.tokenize("Hello world")
    lp = llm.logits(ids)
    want = math.exp(-np.mean([lp[i, ids[i + 1]] for i in range(len(ids) - 1)]))
    assert llm.perplexity("Hello world") == pytest.approx(want, rel=1e-5)
    assert llm.perplexity("Hello world") < 1.5            # the fake knows this text well
    assert llm.perplexity("Hxllo world") > 2.0
    with pytest.raises(ValueError, match="at least 2 tokens"):
        fake_llm(TEXT).perplexity("")


def test_interleaved_streams_are_refused():
    llm = fake_llm(TEXT)
    s1 = llm.generate("Hello", temperature=0, stream=True)
    next(s1)
    llm.generate("Hello", temperature=0, max_tokens=2)
    with pytest.raises(RuntimeError, match="one stream at a time"):
        list(s1)
