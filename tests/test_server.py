"""The HTTP server, live on loopback (uvicorn in a thread) over the fake model: OpenAI shapes
through the `openai` package (sync and async, streaming and not), every bad input with its
status, auth, 429, 413, loading, disconnects checked through the engine's counters."""
from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import numpy as np
import openai
import pytest

from fakes import BOS, FakeChatTemplate, HashModel, fake_backend, reference_greedy
from server_fakes import LiveServer
from llamalite.server.app import create_app
from llamalite.server.settings import Settings

NAME = "fake-model"


def fake_factory(model: HashModel | None = None, gate: threading.Event | None = None,
                 **llm_kw):
    def factory(settings: Settings):
        if gate is not None:
            gate.wait(30)
        return fake_backend(settings, model=model, name=NAME, **llm_kw)
    return factory


def serve(settings: Settings | None = None, **kw) -> LiveServer:
    settings = settings or Settings(model=NAME + ".gguf", ctx_size=2048)
    return LiveServer(create_app(settings, fake_factory(**kw))).start()


def engine_of(srv: LiveServer):
    return srv.server.config.app.state.llamalite.backend.engine


@pytest.fixture(scope="module")
def srv():
    s = serve()
    yield s
    s.stop()


def chat_ids(messages) -> list[int]:
    return [BOS] + list(FakeChatTemplate().render(messages).encode())


def expected_text(ids: list[int], n: int) -> str:
    return bytes(reference_greedy(ids, n)).decode()


MSGS = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]


def assert_idle(srv: LiveServer) -> None:
    eng = engine_of(srv)
    end = time.time() + 5
    while time.time() < end and (eng.stats().running or eng.stats().kv_blocks_used):
        time.sleep(0.01)
    s = eng.stats()
    assert (s.running, s.waiting, s.kv_blocks_used) == (0, 0, 0)


# --- OpenAI client ----------------------------------------------------------------------

def test_openai_sync_chat_and_stream(srv):
    client = openai.OpenAI(base_url=srv.url + "/v1", api_key="none", max_retries=0)
    r = client.chat.completions.create(model=NAME, messages=MSGS, max_tokens=12, temperature=0)
    assert r.choices[0].message.content == expected_text(chat_ids(MSGS), 12)
    assert r.choices[0].finish_reason == "length"
    assert r.usage.prompt_tokens == len(chat_ids(MSGS)) and r.usage.completion_tokens == 12
    parts, usage = [], None
    for chunk in client.chat.completions.create(model=NAME, messages=MSGS, max_tokens=12,
                                                temperature=0, stream=True,
                                                stream_options={"include_usage": True}):
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            parts.append(c.delta.content or "")
    assert "".join(parts) == r.choices[0].message.content
    assert usage.completion_tokens == 12
    assert_idle(srv)


def test_openai_async_chat_and_completions(srv):
    async def main():
        client = openai.AsyncOpenAI(base_url=srv.url + "/v1", api_key="none", max_retries=0)
        prompts = [f"prompt number {i}" for i in range(5)]
        results = await asyncio.gather(*[client.completions.create(
            model=NAME, prompt=p, max_tokens=10, temperature=0) for p in prompts])
        for p, r in zip(prompts, results):
            assert r.choices[0].text == expected_text([BOS] + list(p.encode()), 10)
        stream = await client.chat.completions.create(model=NAME, messages=MSGS, max_tokens=9,
                                                      temperature=0, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == expected_text(chat_ids(MSGS), 9)
        await client.close()
    asyncio.run(main())


def test_completions_token_prompt_stop_and_logprobs(srv):
    ids = [BOS] + list(b"tokens as a prompt")
    ref = expected_text(ids, 20)
    client = openai.OpenAI(base_url=srv.url + "/v1", api_key="none", max_retries=0)
    r = client.completions.create(model=NAME, prompt=ids, max_tokens=20, temperature=0,
                                  stop=[ref[8:10]], logprobs=2)
    c = r.choices[0]
    assert c.text == ref[:ref.index(ref[8:10])] and c.finish_reason == "stop"
    assert len(c.logprobs.tokens) == len(c.logprobs.token_logprobs) >= len(c.text)
    assert all(len(t) == 2 for t in c.logprobs.top_logprobs)
    r = httpx.post(srv.url + "/v1/chat/completions", json={
        "messages": MSGS, "max_tokens": 3, "logprobs": True, "top_logprobs": 3}).json()
    content = r["choices"][0]["logprobs"]["content"]
    assert len(content) == 3 and len(content[0]["top_logprobs"]) == 3
    assert "".join(x["token"] for x in content) == r["choices"][0]["message"]["content"]


def test_raw_sse_format(srv):
    with httpx.stream("POST", srv.url + "/v1/completions", json={
            "prompt": "abc", "max_tokens": 5, "stream": True, "temperature": 0}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = r.read().decode("utf-8")
    events = [e for e in raw.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e[6:]) for e in events[:-1]]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert "".join(c["choices"][0]["text"] for c in chunks) == expected_text(
        [BOS] + list(b"abc"), 5)


def test_models_tokenize_detokenize_health_metrics(srv):
    assert httpx.get(srv.url + "/health").json() == {"status": "ok"}
    m = httpx.get(srv.url + "/v1/models").json()
    assert m["object"] == "list" and m["data"][0]["id"] == NAME
    toks = httpx.post(srv.url + "/tokenize", json={"content": "hé"}).json()["tokens"]
    assert toks == list("hé".encode())
    pieces = httpx.post(srv.url + "/tokenize",
                        json={"content": "a", "add_special": True, "with_pieces": True}).json()
    assert [p["id"] for p in pieces["tokens"]] == [BOS, ord("a")]
    assert httpx.post(srv.url + "/detokenize", json={"tokens": toks}).json() == {"content": "hé"}
    text = httpx.get(srv.url + "/metrics").text
    for name in ("requests_running", "requests_waiting", "prompt_tokens_total",
                 "generation_tokens_total", "time_to_first_token_seconds_bucket",
                 "inter_token_latency_seconds_count", "kv_blocks_used", "prefix_cache_hit_rate"):
        assert f"llamalite_{name}" in text


def test_prefix_cache_visible_in_usage(srv):
    system = {"role": "system", "content": "a long shared system prompt " * 4}
    for q in ("first question", "second question"):
        r = httpx.post(srv.url + "/v1/chat/completions", json={
            "messages": [system, {"role": "user", "content": q}], "max_tokens": 2}).json()
    assert r["usage"]["prompt_tokens_details"]["cached_tokens"] >= 96


# --- bad input --------------------------------------------------------------------------

def post_raw(srv, path, content: bytes, headers=None):
    return httpx.post(srv.url + path, content=content,
                      headers={"content-type": "application/json", **(headers or {})})


def assert_error(r: httpx.Response, status: int, *words: str) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    for w in words:
        assert w in err["message"], err
    return err


@pytest.mark.parametrize("body, words", [
    ({"messages": "hi"}, ["messages"]),
    ({}, ["'messages' is required"]),
    ({"messages": []}, ["non-empty"]),
    ({"messages": [{"role": "wizard", "content": "x"}]}, ["role", "wizard"]),
    ({"messages": [{"role": "user", "content": 5}]}, ["content"]),
    ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, ["text"]),
    ({"messages": MSGS, "max_tokens": 0}, ["max_tokens"]),
    ({"messages": MSGS, "max_tokens": -3}, ["max_tokens"]),
    ({"messages": MSGS, "max_tokens": 1.5}, ["max_tokens"]),
    ({"messages": MSGS, "max_tokens": "10"}, ["max_tokens"]),
    ({"messages": MSGS, "max_tokens": 10 ** 12}, ["max_tokens", "n_ctx=2048"]),
    ({"messages": MSGS, "temperature": "hot"}, ["temperature"]),
    ({"messages": MSGS, "top_p": 3}, ["top_p"]),
    ({"messages": MSGS, "stream": "yes"}, ["stream"]),
    ({"messages": MSGS, "n": 2}, ["'n'"]),
    ({"messages": MSGS, "stop": [1, 2]}, ["stop"]),
    ({"messages": MSGS, "logit_bias": {"99999": 1}}, ["out of range"]),
    ({"messages": MSGS, "logit_bias": {"abc": 1}}, ["token id"]),
    ({"messages": MSGS, "top_logprobs": 2}, ["logprobs"]),
])
def test_bad_chat_requests_are_400(srv, body, words):
    assert_error(httpx.post(srv.url + "/v1/chat/completions", json=body), 400, *words)


@pytest.mark.parametrize("body, words", [
    ({"prompt": [1, 2, 99999]}, ["99999", "out of range"]),
    ({"prompt": [-1]}, ["out of range"]),
    ({"prompt": ["a", "b"]}, ["one prompt"]),
    ({"prompt": 12}, ["prompt"]),
    ({"prompt": "x", "echo": True}, ["echo"]),
    ({"max_tokens": 3}, ["'prompt' is required"]),
])
def test_bad_completion_requests_are_400(srv, body, words):
    assert_error(httpx.post(srv.url + "/v1/completions", json=body), 400, *words)


def test_prompt_longer_than_context(srv):
    err = assert_error(httpx.post(srv.url + "/v1/completions",
                                  json={"prompt": "x" * 3000, "max_tokens": 1}),
                       400, "n_prompt_tokens=3001", "n_ctx=2048")
    assert err["code"] == "context_length_exceeded" and err["param"] == "prompt"


def test_malformed_json_bad_utf8_and_non_object(srv):
    assert_error(post_raw(srv, "/v1/chat/completions", b'{"messages": [}'), 400, "JSON")
    assert_error(post_raw(srv, "/v1/chat/completions", b'{"messages": "\xff\xfe"}'), 400, "UTF-8")
    assert_error(post_raw(srv, "/v1/completions", b"[1, 2]"), 400, "object")
    assert_error(post_raw(srv, "/v1/completions", b'{"prompt": "a\\udcff"}'), 400, "surrogate")
    assert_error(post_raw(srv, "/tokenize", b'{"content": 3}'), 400, "content")
    assert_error(post_raw(srv, "/detokenize", b'{"tokens": [1, 300]}'), 400, "out of range")


def test_body_over_limit_is_413(srv):
    big = b'{"prompt": "' + b"a" * (8 * 1024 * 1024) + b'"}'
    assert_error(post_raw(srv, "/v1/completions", big), 413, "limit")


def test_unknown_model_and_route_are_404(srv):
    err = assert_error(httpx.post(srv.url + "/v1/chat/completions",
                                  json={"model": "gpt-9", "messages": MSGS}), 404, "gpt-9")
    assert err["code"] == "model_not_found"
    assert httpx.post(srv.url + "/v1/completions", json={
        "model": NAME + ".gguf", "prompt": "a", "max_tokens": 1}).status_code == 200
    assert_error(httpx.get(srv.url + "/v2/nothing"), 404)
    client = openai.OpenAI(base_url=srv.url + "/v1", api_key="none", max_retries=0)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-9", messages=MSGS)


def test_server_keeps_serving_after_bad_input(srv):
    test_malformed_json_bad_utf8_and_non_object(srv)
    r = httpx.post(srv.url + "/v1/completions", json={"prompt": "ok", "max_tokens": 4})
    assert r.status_code == 200
    assert_idle(srv)


# --- auth, loading, queue ---------------------------------------------------------------

def test_api_key():
    s = serve(Settings(model="m.gguf", ctx_size=512, api_key="sekrit"))
    try:
        assert httpx.get(s.url + "/health").status_code == 200
        for path in ("/v1/models", "/metrics"):
            assert_error(httpx.get(s.url + path), 401, "API key")
        assert_error(httpx.get(s.url + "/v1/models", headers={"Authorization": "Bearer nope"}), 401)
        assert httpx.get(s.url + "/v1/models",
                         headers={"Authorization": "Bearer sekrit"}).status_code == 200
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=s.url + "/v1", api_key="wrong", max_retries=0).models.list()
        good = openai.OpenAI(base_url=s.url + "/v1", api_key="sekrit", max_retries=0)
        assert good.completions.create(model=NAME, prompt="a", max_tokens=2).choices[0].text
    finally:
        s.stop()


def test_health_is_503_while_loading():
    gate = threading.Event()
    app = create_app(Settings(model="m.gguf", ctx_size=512), fake_factory(gate=gate))
    s = LiveServer(app).start(wait_ready=False)
    try:
        r = httpx.get(s.url + "/health")
        assert r.status_code == 503 and r.json()["status"] == "loading"
        assert_error(httpx.post(s.url + "/v1/completions", json={"prompt": "a"}), 503, "loading")
        gate.set()
        end = time.time() + 10
        while httpx.get(s.url + "/health").status_code != 200 and time.time() < end:
            time.sleep(0.02)
        assert httpx.get(s.url + "/health").status_code == 200
    finally:
        gate.set()
        s.stop()


class GatedModel(HashModel):
    """HashModel whose forward waits for `go` (so a request stays running until released)."""

    def __init__(self) -> None:
        super().__init__()
        self.go = threading.Event()

    def forward(self, *args):
        assert self.go.wait(30), "never released"
        return super().forward(*args)


def test_full_queue_gets_429_with_retry_after():
    model = GatedModel()
    s = serve(Settings(model="m.gguf", ctx_size=512, n_parallel=1, max_queue=1), model=model)
    try:
        eng = engine_of(s)
        results: list[int] = []

        def call():
            results.append(httpx.post(s.url + "/v1/completions", timeout=30,
                                      json={"prompt": "slow", "max_tokens": 15}).status_code)
        threads = [threading.Thread(target=call) for _ in range(2)]
        threads[0].start()
        end = time.time() + 30
        while eng.stats().running < 1 and time.time() < end:
            time.sleep(0.005)
        threads[1].start()
        while eng.stats().waiting < 1 and time.time() < end:
            time.sleep(0.005)
        try:
            r = httpx.post(s.url + "/v1/completions", json={"prompt": "x", "max_tokens": 1})
        finally:
            model.go.set()
        err = assert_error(r, 429)
        assert r.headers["retry-after"] == "1" and err["code"] == "queue_full"
        for t in threads:
            t.join(30)
        assert results == [200, 200]
    finally:
        model.go.set()
        s.stop()


# --- disconnects ------------------------------------------------------------------------

def wait_cancelled(eng, n: int) -> None:
    end = time.time() + 5
    while time.time() < end and (eng.stats().requests_cancelled < n or eng.stats().running):
        time.sleep(0.005)
    s = eng.stats()
    assert s.requests_cancelled == n and s.running == 0 and s.kv_blocks_used == 0


def test_disconnects_cancel_streaming_prefill_and_plain():
    model = HashModel(delay=0.02)
    s = serve(Settings(model="m.gguf", ctx_size=4096, n_parallel=2), model=model,
              max_batch_tokens=16)
    eng = engine_of(s)
    try:
        # 1. streaming, during decode: read two events, hang up.
        with httpx.stream("POST", s.url + "/v1/completions", timeout=30, json={
                "prompt": "go", "max_tokens": 3000, "stream": True}) as r:
            lines = r.iter_lines()
            next(lines), next(lines)
        wait_cancelled(eng, 1)
        # 2. streaming, during prefill (1,000 prompt tokens at 16 a step): hang up early.
        generated = eng.stats().generated_tokens
        with httpx.stream("POST", s.url + "/v1/completions", timeout=30, json={
                "prompt": "p" * 1000, "max_tokens": 5, "stream": True}) as r:
            end = time.time() + 5
            while eng.stats().running == 0 and time.time() < end:
                time.sleep(0.005)
            assert eng.stats().running == 1
        wait_cancelled(eng, 2)
        assert eng.stats().generated_tokens == generated   # it never reached decoding
        # 3. not streaming: the client times out and goes away.
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(s.url + "/v1/completions", timeout=0.3,
                       json={"prompt": "wait", "max_tokens": 3000})
        wait_cancelled(eng, 3)
        # Still serving.
        assert httpx.post(s.url + "/v1/completions",
                          json={"prompt": "ok", "max_tokens": 2}).status_code == 200
    finally:
        s.stop()


# --- the command line ---------------------------------------------------------------------

def test_serve_cli_rejects_bad_options():
    from conftest import run_cli
    r = run_cli("serve", "/nonexistent/model.gguf")
    assert r.returncode == 1 and "not found" in r.stderr
    r = run_cli("serve", "smollm2-135m", "--parallel", "0")
    assert r.returncode == 1 and "--parallel must be at least 1" in r.stderr
    r = run_cli("serve", "smollm2-135m", "--parallel", "8", "--batch-tokens", "4")
    assert r.returncode == 1 and "--batch-tokens" in r.stderr


# --- UTF-8 across token boundaries ----------------------------------------------------------

class Utf8ScriptModel(HashModel):
    """Emits the UTF-8 bytes of SCRIPT one token per position, whatever the prompt."""

    SCRIPT = "héllo wörld ✓ 日本語 ".encode()

    def forward(self, kv, tokens, positions, seq_ids, block_tables, logit_rows):
        out = np.full((len(logit_rows), self.n_vocab), -10.0, dtype=np.float32)
        for r, i in enumerate(logit_rows):
            out[r, self.SCRIPT[(int(positions[i]) + 1) % len(self.SCRIPT)]] = 10.0
        return out


def test_stream_chunks_are_whole_utf8_characters():
    s = serve(Settings(model="m.gguf", ctx_size=512), model=Utf8ScriptModel())
    try:
        n = len(Utf8ScriptModel.SCRIPT)
        body = {"prompt": [BOS] + [65] * (n - 1), "max_tokens": 2 * n, "temperature": 0}
        whole = httpx.post(s.url + "/v1/completions", json=body).json()["choices"][0]["text"]
        assert whole == Utf8ScriptModel.SCRIPT.decode() * 2
        with httpx.stream("POST", s.url + "/v1/completions", json={**body, "stream": True}) as r:
            raw = r.read()
        texts = []
        for event in raw.split(b"\n\n"):
            if event and event != b"data: [DONE]":
                texts.append(json.loads(event[6:].decode("utf-8", errors="strict"))
                             ["choices"][0]["text"])
        assert "".join(texts) == whole
        assert any(len(t.encode()) > 1 for t in texts) and "\ufffd" not in whole
    finally:
        s.stop()
