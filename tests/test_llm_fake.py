"""LLM's decode loop, streaming, chat shapes and scoring, on the small fakes of tests/fakes.py."""
from __future__ import annotations

import math

import numpy as np
import pytest
from fakes import BOS, EOS, N_VOCAB, ScriptModel, fake_llm

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


def test_prompt_as_token_ids_and_prefix_cache_reuse_is_exact():
    text = "The quick brown fox jumps over the lazy dog. " * 3
    model = ScriptModel(text)
    from fakes import FakeChatTemplate, FakeStreamDecoder, FakeTokenizer
    from llamalite.llm import LLM
    llm = LLM._from_parts(model, FakeTokenizer(), FakeChatTemplate(), FakeStreamDecoder, n_ctx=256)
    a = llm.generate([BOS, *text[:40].encode()], temperature=0, max_tokens=5)
    assert a.text == text[40:45] and a.usage.cached_tokens == 0
    model.calls.clear()
    # The first call left 44 computed tokens: two full blocks of 16 are cached, so a
    # longer prompt over the same start computes only its tokens after position 32.
    b = llm.generate([BOS, *text[:60].encode()], temperature=0, max_tokens=5)
    assert b.text == text[60:65] and b.usage.cached_tokens == 32
    assert model.calls[0] == 61 - 32
    # The fake would answer '?' had a block of another prefix been reused.
    c = llm.generate([BOS, *text[1:50].encode()], temperature=0, max_tokens=3)
    assert c.usage.cached_tokens == 0 and c.text == "???"
    llm.close()


def test_long_prompt_is_prefilled_in_chunks_of_512():
    text = "abcdefghij" * 70
    model = ScriptModel(text)
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
    """A sequence holds n_ctx tokens, prompt and reply together."""
    llm = fake_llm(TEXT, n_ctx=10)
    out = llm.generate("Hello", temperature=0)               # 6 prompt tokens
    assert out.finish_reason == "length" and out.usage.total_tokens == 10
    assert out.text == " wor"
    with pytest.raises(ValueError, match=r"max_tokens \(100\) exceeds the context"):
        llm.generate("Hello", temperature=0, max_tokens=100)
    out = llm.generate("Hello wo", temperature=0)            # 9 tokens: room for one
    assert (out.text, out.usage.total_tokens) == ("r", 10)
    with pytest.raises(ValueError, match=r"n_prompt_tokens=10, n_ctx=10"):
        llm.generate("Hello wor")


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
    body, finish, usage = chunks[:-2], chunks[-2], chunks[-1]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in body) == "Hello there!"
    assert finish["choices"][0]["finish_reason"] == "stop" and finish["choices"][0]["delta"] == {}
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == len("Hello there!") + 1
    assert all(c["choices"][0]["finish_reason"] is None and c["usage"] is None for c in body)


def test_apply_chat_template_tokenize_detokenize():
    llm = fake_llm(TEXT)
    assert llm.apply_chat_template([{"role": "user", "content": "a"}]) == "<user>a\n<assistant>"
    assert llm.tokenize("ab") == [BOS, 97, 98]
    assert llm.tokenize("ab", add_special=False) == [97, 98]
    assert llm.detokenize([BOS, 97, 98, EOS]) == "ab"


def test_logits_are_teacher_forced_log_probabilities():
    model = ScriptModel(TEXT)
    from fakes import FakeChatTemplate, FakeStreamDecoder, FakeTokenizer
    from llamalite.llm import LLM
    llm = LLM._from_parts(model, FakeTokenizer(), FakeChatTemplate(), FakeStreamDecoder, n_ctx=300)
    ids = [BOS, *TEXT.encode()] * 8                     # 176 tokens: two chunks of rows
    lp = llm.logits(ids)
    assert lp.shape == (len(ids), N_VOCAB) and lp.dtype == np.float32
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


def test_interleaved_streams_both_finish():
    """Streams read in turns are separate requests to the one engine."""
    llm = fake_llm(TEXT)
    s1 = llm.generate("Hello", temperature=0, stream=True)
    first = next(s1)
    other = llm.generate("Hello world.", temperature=0, max_tokens=4)
    assert other.text == " The"
    rest = list(s1)
    assert first.text + "".join(c.text for c in rest) == " world. The end."
    llm.close()


def _run_path(llm, path: str, prompt: str, **kw):
    """One request through one front end; (text, finish_reason, total_tokens)."""
    import asyncio
    if path == "generate":
        out = llm.generate(prompt, temperature=0, **kw)
    elif path == "stream":
        from llamalite.outputs import join_chunks
        out = join_chunks(list(llm.generate(prompt, temperature=0, stream=True, **kw)))
    elif path == "batch":
        (out,) = llm.generate_batch([prompt], temperature=0, **kw)
    else:
        out = asyncio.run(llm.agenerate(prompt, temperature=0, **kw))
    return out.text, out.finish_reason, out.usage.total_tokens


@pytest.mark.parametrize("path", ["generate", "stream", "batch", "async"])
def test_context_limit_is_the_same_on_every_path(path):
    llm = fake_llm(TEXT, n_ctx=10)
    try:
        assert _run_path(llm, path, "Hello") == (" wor", "length", 10)
        assert _run_path(llm, path, "Hello wo") == ("r", "length", 10)
        with pytest.raises(ValueError, match=r"n_prompt_tokens=10, n_ctx=10"):
            _run_path(llm, path, "Hello wor")
        with pytest.raises(ValueError, match=r"max_tokens \(5\) exceeds the context"):
            _run_path(llm, path, "Hello", max_tokens=5)
    finally:
        llm.close()


def test_chat_context_limit_matches_generate():
    llm = fake_llm("<user>Hi\n<assistant>Hello there!", n_ctx=24)
    r = llm.chat([{"role": "user", "content": "Hi"}], temperature=0)   # 20 prompt tokens
    assert r["choices"][0]["finish_reason"] == "length" and r["usage"]["total_tokens"] == 24
    with pytest.raises(ValueError, match="n_ctx=24"):
        llm.chat([{"role": "user", "content": "Hi there you"}], temperature=0)
    llm.close()


def test_a_dropped_llm_stops_its_engine_thread():
    import gc
    import threading
    llm = fake_llm(TEXT)
    llm.generate("Hello", temperature=0, max_tokens=2)
    thread = llm.engine._thread
    assert thread.is_alive()
    del llm
    gc.collect()
    thread.join(10)
    assert not thread.is_alive()
    assert thread not in threading.enumerate()


def test_a_stream_never_read_is_cancelled_when_dropped():
    import gc
    llm = fake_llm(TEXT, delay=0.002)
    try:
        stream = llm.generate("Hello", temperature=0, ignore_eos=True, max_tokens=1000,
                              stream=True)
        del stream                            # never iterated
        gc.collect()
        out = llm.generate("Hello", temperature=0, max_tokens=3)   # the engine goes on
        assert out.text == " wo"
        for _ in range(500):                  # the cancel lands within a step or two
            s = llm.engine.stats()
            if s.requests_cancelled == 1 and s.running == 0:
                break
            llm.generate("H", temperature=0, max_tokens=1)
        assert (s.requests_cancelled, s.running) == (1, 0)
    finally:
        llm.close()
