"""Engine on the fake model: correctness against a KV-free reference, batching, chunked
prefill, prefix caching, admission, cancellation, preemption, the asyncio stream."""
from __future__ import annotations

import asyncio
import threading
import time

import pytest

from fakes import EOS, FakeParams, HashModel, fake_engine, reference_greedy
from llamalite.engine import QueueFull, RequestRejected


def prompts(n: int, length: int = 20) -> list[list[int]]:
    return [[(7 * i + 3 * j) % 90 + 32 for j in range(length + i)] for i in range(n)]


def wait_for(cond, timeout=5.0):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.005)
    return False


def test_single_request_matches_reference():
    with fake_engine() as eng:
        p = prompts(1)[0]
        out = eng.generate(p, FakeParams(max_tokens=24))
    assert out.token_ids == reference_greedy(p, 24)
    assert out.finish_reason == "length"
    assert out.text == bytes(out.token_ids).decode()
    assert (out.usage.prompt_tokens, out.usage.completion_tokens) == (len(p), 24)


def test_eight_prompts_batched_equal_alone():
    ps = prompts(8)
    with fake_engine(n_parallel=8, ctx_size=2048) as eng:
        together = eng.generate_many(ps, FakeParams(max_tokens=20))
        assert max(eng.model.batch_sizes) > 1
    for p, out in zip(ps, together):
        with fake_engine(n_parallel=1) as alone:
            assert alone.generate(p, FakeParams(max_tokens=20)).token_ids == out.token_ids
        assert out.token_ids == reference_greedy(p, 20)


def test_chunked_prefill_does_not_stall_decoding():
    model = HashModel()
    events = []
    with fake_engine(model=model, n_parallel=2, ctx_size=4096, max_batch_tokens=32) as eng:
        short = prompts(1)[0]
        long = [40 + (j % 50) for j in range(600)]
        done = threading.Event()

        def on_short(c):
            events.append(("short", c.finish_reason))
            if c.finish_reason:
                done.set()
        first_long = []
        eng.submit(short, FakeParams(max_tokens=10), on_short)
        assert wait_for(lambda: events)                       # short is decoding
        rid = eng.submit(long, FakeParams(max_tokens=2),
                         lambda c: first_long.append(c) or events.append(("long", c.finish_reason)))
        assert done.wait(5) and wait_for(lambda: any(c.finish_reason for c in first_long))
    assert max(model.batch_sizes) <= 32
    # The short request finished while the 600-token prompt was still in prefill.
    assert events.index(("short", "length")) < [e[0] for e in events].index("long")
    assert [t for c in first_long for t in c.token_ids] == reference_greedy(long, 2)
    assert rid


def test_prefix_cache_skips_shared_prompt():
    model = HashModel()
    system = [33 + (j % 60) for j in range(64)]
    with fake_engine(model=model, block_size=16) as eng:
        a = eng.generate(system + [50, 51, 52], FakeParams(max_tokens=4))
        before = model.computed_tokens
        b_prompt = system + [60, 61]
        b = eng.generate(b_prompt, FakeParams(max_tokens=4))
        computed_b = model.computed_tokens - before
        s = eng.stats()
    assert a.token_ids == reference_greedy(system + [50, 51, 52], 4)
    assert b.token_ids == reference_greedy(b_prompt, 4)
    assert computed_b == len(b_prompt) - 64 + 3      # the 64 shared tokens were skipped
    assert b.usage.cached_tokens == 64
    assert s.prefix_cache_hit_tokens == 64 and 0 < s.prefix_cache_hit_rate < 1
    assert s.kv_blocks_used == 0 and s.kv_blocks_cached > 0


def test_stop_conditions():
    p = prompts(1)[0]
    ref = reference_greedy(p, 30)
    text = bytes(ref).decode()
    with fake_engine() as eng:
        stop = text[10:13]
        out = eng.generate(p, FakeParams(max_tokens=30, stop=[stop, "\x00never"]))
        assert out.finish_reason == "stop" and out.text == text[:text.index(stop)]
        out = eng.generate(p, FakeParams(max_tokens=30, stop_token_ids=[ref[5]]))
        assert out.finish_reason == "stop" and out.token_ids == ref[:ref.index(ref[5])]
        assert out.usage.completion_tokens == ref.index(ref[5]) + 1
        # A logit bias that forces EOS ends with "stop"; ignore_eos runs to the length.
        out = eng.generate(p, FakeParams(max_tokens=5, logit_bias={EOS: 1e10}))
        assert out.finish_reason == "stop" and out.token_ids == [] and out.text == ""
        assert out.usage.completion_tokens == 1
        out = eng.generate(p, FakeParams(max_tokens=5, logit_bias={EOS: 1e10}, ignore_eos=True))
        assert out.finish_reason == "length" and out.token_ids == [EOS] * 5


def test_logprobs_are_reported():
    with fake_engine() as eng:
        out = eng.generate(prompts(1)[0], FakeParams(max_tokens=3, logprobs=2))
    assert len(out.logprobs) == 3
    for lp, t in zip(out.logprobs, out.token_ids):
        assert lp.token == t and lp.logprob <= 0 and lp.top_logprobs[0][0] == t


def test_rejections_before_queueing():
    with fake_engine(ctx_size=256) as eng:
        with pytest.raises(RequestRejected, match="empty"):
            eng.submit([], FakeParams(), print)
        with pytest.raises(RequestRejected, match="outside the vocabulary") as e:
            eng.submit([1, 99999], FakeParams(), print)
        assert e.value.code == "invalid_token_id"
        with pytest.raises(RequestRejected, match="n_prompt_tokens=300") as e:
            eng.submit([40] * 300, FakeParams(), print)
        assert e.value.details == {"n_prompt_tokens": 300, "n_ctx": 256}
        with pytest.raises(RequestRejected, match="max_tokens"):
            eng.submit([40] * 10, FakeParams(max_tokens=250), print)
        for bad in (0, -1, 2.5, True):
            with pytest.raises(RequestRejected, match="max_tokens"):
                eng.submit([40] * 10, FakeParams(max_tokens=bad), print)
        with pytest.raises(RequestRejected, match="logit_bias"):
            eng.submit([40], FakeParams(logit_bias={999: 1.0}), print)
        assert eng.stats().requests_rejected == 9
        assert eng.generate([40] * 10, FakeParams(max_tokens=None)).usage.completion_tokens == 246


def test_queue_full_is_refused():
    with fake_engine(model=HashModel(delay=0.02), n_parallel=1, max_queue=2) as eng:
        sink = []
        ids = [eng.submit([40, 41], FakeParams(max_tokens=50), sink.append)]
        assert wait_for(lambda: eng.stats().running == 1)
        ids += [eng.submit([40, 42], FakeParams(max_tokens=50), sink.append) for _ in range(2)]
        with pytest.raises(QueueFull):
            eng.submit([40], FakeParams(), sink.append)
        for rid in ids:
            eng.cancel(rid)
        assert wait_for(lambda: sum(c.finish_reason == "cancelled" for c in sink) == 3)


def test_cancel_frees_slot_and_blocks_within_a_step():
    model = HashModel(delay=0.01)
    with fake_engine(model=model, n_parallel=2) as eng:
        chunks = []
        rid = eng.submit(prompts(1, 40)[0], FakeParams(max_tokens=10_000 // 16), chunks.append)
        assert wait_for(lambda: len(chunks) >= 3)
        assert eng.stats().kv_blocks_used > 0
        steps = eng.stats().steps
        eng.cancel(rid)
        assert wait_for(lambda: eng.stats().running == 0)
        s = eng.stats()
        assert s.kv_blocks_used == 0 and s.requests_cancelled == 1
        assert s.steps <= steps + 1
        assert chunks[-1].finish_reason == "cancelled"


def test_closing_sync_iterator_cancels():
    with fake_engine(model=HashModel(delay=0.005)) as eng:
        it = eng.iter_stream(prompts(1)[0], FakeParams(max_tokens=500))
        next(it)
        it.close()
        assert wait_for(lambda: eng.stats().requests_cancelled == 1 and eng.stats().running == 0)


def test_preemption_when_pool_is_short_still_exact():
    """4 sequences that together outgrow a tiny pool: the newest are preempted and
    recomputed, and every output still equals the reference."""
    ps = prompts(4, 10)
    with fake_engine(n_parallel=4, ctx_size=128, block_size=8, max_batch_tokens=64) as eng:
        outs = eng.generate_many(ps, FakeParams(max_tokens=60))
        s = eng.stats()
    assert s.preemptions > 0
    for p, o in zip(ps, outs):
        assert o.token_ids == reference_greedy(p, 60)
    assert s.kv_blocks_used == 0


def test_waits_for_slots():
    ps = prompts(6)
    with fake_engine(n_parallel=2) as eng:
        outs = eng.generate_many(ps, FakeParams(max_tokens=8))
    assert [o.token_ids for o in outs] == [reference_greedy(p, 8) for p in ps]


def test_async_stream_and_cancel_by_task():
    async def main(eng):
        p = prompts(1)[0]
        chunks = [c async for c in eng.stream(p, FakeParams(max_tokens=12))]
        assert [t for c in chunks for t in c.token_ids] == reference_greedy(p, 12)
        assert chunks[-1].finish_reason == "length" and chunks[-1].usage.completion_tokens == 12

        async def consume():
            async for _ in eng.stream(p, FakeParams(max_tokens=5000)):
                pass
        task = asyncio.create_task(consume())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(200):
            if eng.stats().requests_cancelled == 1 and eng.stats().running == 0:
                break
            await asyncio.sleep(0.01)
        assert eng.stats().requests_cancelled == 1 and eng.stats().kv_blocks_used == 0

    with fake_engine(model=HashModel(delay=0.002), ctx_size=8192) as eng:
        asyncio.run(main(eng))


def test_async_streams_of_one_loop_share_a_wakeup_per_batch():
    """Chunks from the engine thread reach each stream in order, and the chunks handed
    over before the loop runs again cost one loop wakeup, not one each."""
    from llamalite.async_stream import _LoopInbox
    from llamalite.outputs import CompletionChunk

    async def main():
        loop = asyncio.get_running_loop()
        wakeups = []
        real = loop.call_soon_threadsafe
        loop.call_soon_threadsafe = lambda *a: (wakeups.append(a), real(*a))[1]
        inbox = _LoopInbox.of(loop)
        assert _LoopInbox.of(loop) is inbox
        qa, qb = asyncio.Queue(), asyncio.Queue()

        def engine_thread(n):   # one "step": a chunk for each of two streams, n times
            for i in range(n):
                inbox.put(qa, CompletionChunk(f"a{i}", [i], request_id="a"))
                inbox.put(qb, CompletionChunk(f"b{i}", [i], request_id="b"))

        t = threading.Thread(target=engine_thread, args=(3,))
        t.start()
        t.join()   # the loop has not run since: one batch of six
        assert len(wakeups) == 1
        got_a = [(await qa.get()).text for _ in range(3)]
        got_b = [(await qb.get()).text for _ in range(3)]
        assert got_a == ["a0", "a1", "a2"] and got_b == ["b0", "b1", "b2"]
        t = threading.Thread(target=engine_thread, args=(1,))   # the next batch wakes it again
        t.start()
        t.join()
        assert len(wakeups) == 2
        assert (await qa.get()).text == "a0" and (await qb.get()).text == "b0"
        return inbox

    inbox = asyncio.run(main())
    with pytest.raises(RuntimeError):   # a closed loop: refused, and nothing is kept
        inbox.put(asyncio.Queue(), CompletionChunk("c", [0], request_id="c"))
    assert inbox._pending == []


def test_forward_error_ends_requests_not_engine():
    class Broken(HashModel):
        fail = True

        def forward(self, *a):
            if self.fail:
                self.fail = False
                raise RuntimeError("boom")
            return super().forward(*a)
    with fake_engine(model=Broken()) as eng:
        chunks = list(eng.iter_stream([40, 41], FakeParams(max_tokens=3)))
        assert chunks[-1].finish_reason == "error" and "boom" in chunks[-1].error
        assert eng.generate([40, 41], FakeParams(max_tokens=3)).token_ids == reference_greedy([40, 41], 3)
        assert eng.stats().kv_blocks_used == 0


def test_seeded_sampling_same_alone_or_batched():
    """With the real sampler: a seeded request at temperature 0.8 draws the same tokens
    whether it runs alone or beside 7 others (each request owns its random stream)."""
    from llamalite.sampling import SamplingParams
    ps = prompts(8)

    def params(i):
        return SamplingParams(temperature=0.8, top_k=20, seed=100 + i, max_tokens=16)
    with fake_engine(n_parallel=8, sampler_factory=None) as eng:
        rids = []
        import queue as q_
        queues = [q_.Queue() for _ in ps]
        for i, (p, q) in enumerate(zip(ps, queues)):
            rids.append(eng.submit(p, params(i), q.put))
        together = []
        for q in queues:
            toks = []
            while True:
                c = q.get(timeout=10)
                toks += c.token_ids
                if c.finish_reason:
                    break
            together.append(toks)
        alone = [eng.generate(p, params(i)).token_ids for i, p in enumerate(ps)]
    assert together == alone
    assert len({tuple(t) for t in together}) == 8
