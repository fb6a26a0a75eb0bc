"""LLM.generate_batch and the asyncio API (astream/agenerate) over the engine, on the
script fake of tests/fakes.py: batched results equal single-sequence `generate`."""
from __future__ import annotations

import asyncio

from fakes import fake_llm

TEXT = "Hello world. The end of a longer script, with more words to decode."
PROMPTS = ["H", "Hello", "Hello world.", "Hello world. The end", "Goodbye", "Hello wor",
           "Hel", "Hello world. The"]


def test_generate_batch_equals_generate_alone():
    llm = fake_llm(TEXT)
    alone = [llm.generate(p, temperature=0, max_tokens=80) for p in PROMPTS]
    batch = llm.generate_batch(PROMPTS, temperature=0, max_tokens=80)
    try:
        for a, b in zip(alone, batch):
            assert (b.text, b.token_ids, b.finish_reason) == (a.text, a.token_ids, a.finish_reason)
            assert (b.usage.prompt_tokens, b.usage.completion_tokens) == \
                (a.usage.prompt_tokens, a.usage.completion_tokens)
        assert batch[1].text == TEXT[len("Hello"):] and batch[1].finish_reason == "stop"
        assert max(llm.model.calls[-20:]) > 1          # steps really carried several tokens
    finally:
        llm.close()


def test_generate_batch_seeded_sampling_and_logprobs():
    llm = fake_llm(TEXT, noise=3.0, peak=2.0)
    try:
        kw = dict(temperature=1.0, seed=7, max_tokens=12, logprobs=2)
        alone = [llm.generate(p, **kw) for p in PROMPTS[:4]]
        batch = llm.generate_batch(PROMPTS[:4], **kw)
        assert [b.token_ids for b in batch] == [a.token_ids for a in alone]
        for a, b in zip(alone, batch):
            assert [x.token for x in b.logprobs] == [x.token for x in a.logprobs]
            assert [round(x.logprob, 5) for x in b.logprobs] == [round(x.logprob, 5) for x in a.logprobs]
    finally:
        llm.close()


def test_async_streams_run_together_and_cancel():
    # 2 ms a step: the 200-token request cannot end on its own before the cancel lands
    llm = fake_llm(TEXT, delay=0.002)

    async def main():
        outs = await asyncio.gather(*[llm.agenerate(p, temperature=0, max_tokens=30)
                                      for p in PROMPTS])
        pieces = [c.text async for c in llm.astream("Hello", temperature=0)]
        assert "".join(pieces) == TEXT[len("Hello"):]
        agen = llm.astream("Goodbye", temperature=0, ignore_eos=True, max_tokens=200)
        await agen.__anext__()
        await agen.aclose()                 # leaving early cancels the request
        for _ in range(200):
            s = llm.engine.stats()
            if s.requests_cancelled == 1 and s.running == 0:
                break
            await asyncio.sleep(0.01)
        return outs
    try:
        outs = asyncio.run(main())
        for p, o in zip(PROMPTS, outs):
            assert o.text == llm.generate(p, temperature=0, max_tokens=30).text
        s = llm.engine.stats()
        assert s.requests_cancelled == 1 and s.kv_blocks_used == 0
    finally:
        llm.close()
