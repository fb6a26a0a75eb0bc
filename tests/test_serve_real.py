"""The engine and the server on the real models: batch invariance with 8 prompts, prefix
caching that does not change outputs, llama.cpp's greedy tokens, `llamalite serve` end to end
with the openai client."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import NEAR_TIE

from llamalite.engine import Engine
from llamalite.sampling import SamplingParams

DATA = Path(__file__).parent / "data"
GOLDEN = json.loads((DATA / "golden.json").read_text())
EXTRA_PROMPTS = [
    "List three primary colors:",
    "In 1969, the first humans",
    "import numpy as np\n",
    "The quick brown fox",
]
N_TOKENS = 32


def load(path: Path):
    from llamalite.model import Model
    from llamalite.tokenizer import Tokenizer
    model = Model.load(str(path))
    return model, Tokenizer.from_metadata(model.gguf.metadata)


@pytest.fixture(scope="module", params=["smollm2-135m", "gemma3-270m"])
def real(request):
    import llamalite
    name = request.param
    model, tok = load(llamalite.pull(name))
    return name, model, tok


def greedy(n: int = N_TOKENS) -> SamplingParams:
    return SamplingParams(temperature=0.0, max_tokens=n, ignore_eos=True)


def test_batch_invariance_eight_prompts(real):
    """At temperature 0 each of 8 different prompts gives the same 32 tokens alone and
    beside the 7 others (and llama.cpp's tokens up to its first near tie, see NEAR_TIE)."""
    name, model, tok = real
    golden = GOLDEN["models"][name]
    prompts = [c["prompt_ids"] for c in golden]
    prompts += [tok.tokenize(p, add_special=True) for p in EXTRA_PROMPTS]
    assert len(prompts) == 8
    with Engine(model, tok, n_parallel=8, ctx_size=8 * 64) as eng:
        together = [c.token_ids for c in eng.generate_many(prompts, greedy())]
        assert eng.stats().kv_blocks_used == 0
    with Engine(model, tok, n_parallel=1, ctx_size=128) as eng:
        alone = [eng.generate(p, greedy()).token_ids for p in prompts]
    assert together == alone
    for case, ids in zip(golden, together):
        sure = next((i for i, gap in enumerate(case["top1_gap"]) if gap < NEAR_TIE[name]), N_TOKENS)
        assert ids[:sure] == case["ids"][:sure], case["prompt"]


def test_prefix_cache_reuses_a_long_system_prompt_exactly(real):
    name, model, tok = real
    system = tok.tokenize("You are a careful assistant. " * 120, add_special=True)[:500]
    assert len(system) == 500
    q1 = system + tok.tokenize(" Question: what is 2+2?", add_special=False)
    q2 = system + tok.tokenize(" Question: name a planet.", add_special=False)
    with Engine(model, tok, n_parallel=2, ctx_size=1024) as eng:
        eng.generate(q1, greedy(4))
        cached = eng.generate(q2, greedy(8))
        s = eng.stats()
    with Engine(model, tok, n_parallel=1, ctx_size=1024) as fresh:
        uncached = fresh.generate(q2, greedy(8))
    assert cached.usage.cached_tokens == 496           # 31 full blocks of 16
    assert cached.token_ids == uncached.token_ids
    assert s.prefix_cache_hit_tokens == 496


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_llamalite_serve_end_to_end_with_openai(smollm2_path):
    import httpx
    import openai
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as cwd, open(Path(cwd) / "log", "wb+") as log:
        proc = subprocess.Popen([sys.executable, "-m", "llamalite.cli.main", "serve",
                                 str(smollm2_path), "--port", str(port), "--parallel", "2",
                                 "--ctx-size", "1024", "--api-key", "k", "--log-level", "warning"],
                                cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
        try:
            for _ in range(600):
                try:
                    if httpx.get(url + "/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None, (Path(cwd) / "log").read_text()
                time.sleep(0.1)
            client = openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0)
            model_id = client.models.list().data[0].id
            kw = dict(model=model_id, max_tokens=24, temperature=0)
            whole = client.completions.create(prompt="The capital of France is", **kw)
            parts = [c.choices[0].text for c in client.completions.create(
                prompt="The capital of France is", stream=True, **kw) if c.choices]
            assert "".join(parts) == whole.choices[0].text and "Paris" in whole.choices[0].text
            golden = GOLDEN["models"]["smollm2-135m"][0]
            ids = httpx.post(url + "/tokenize", json={"content": golden["prompt"]},
                             headers={"Authorization": "Bearer k"}).json()["tokens"]
            assert ids == golden["prompt_ids"]
            msgs = [{"role": "user", "content": "Say hello in French."}]
            chat = client.chat.completions.create(messages=msgs, **kw)
            streamed = "".join(c.choices[0].delta.content or "" for c in
                               client.chat.completions.create(messages=msgs, stream=True, **kw)
                               if c.choices)
            assert streamed == chat.choices[0].message.content
            # Tool calls round-trip on the real model, streamed and not.
            weather = {"type": "function", "function": {"name": "get_weather", "parameters": {
                "type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                "required": ["city"], "additionalProperties": False}}}
            msgs = [{"role": "user", "content": "What is the weather in Paris?"}]
            tk = dict(model=model_id, max_tokens=80, temperature=0, tools=[weather],
                      tool_choice="required", parallel_tool_calls=False)
            r = client.chat.completions.create(messages=msgs, **tk)
            (call,) = r.choices[0].message.tool_calls
            assert r.choices[0].finish_reason == "tool_calls"
            assert call.function.name == "get_weather"
            assert isinstance(json.loads(call.function.arguments)["city"], str)
            deltas = [d for c in client.chat.completions.create(messages=msgs, stream=True, **tk)
                      for ch in c.choices for d in (ch.delta.tool_calls or [])]
            assert [(d.function.name, d.function.arguments) for d in deltas] == \
                [(call.function.name, call.function.arguments)]
            msgs += [r.choices[0].message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 C"}]
            after = client.chat.completions.create(messages=msgs, model=model_id, max_tokens=16,
                                                   temperature=0, tools=[weather])
            assert after.choices[0].finish_reason in ("stop", "length", "tool_calls")
            metrics = httpx.get(url + "/metrics", headers={"Authorization": "Bearer k"}).text
            assert "llamalite_generation_tokens_total" in metrics
        finally:
            proc.terminate()
            proc.wait(20)
