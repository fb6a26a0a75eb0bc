"""The friendly Python API: `LLM` loads a model once and generates text, chats and scores.

>>> import llamalite
>>> llm = llamalite.LLM("smollm2-135m", n_ctx=2048)          # doctest: +SKIP
>>> llm.generate("The capital of France is", temperature=0, max_tokens=8).text  # doctest: +SKIP
' Paris.\\n\\nThe United States has'
>>> for chunk in llm.generate("Count: 1, 2,", stream=True, max_tokens=8):  # doctest: +SKIP
...     print(chunk.text, end="", flush=True)
>>> llm.chat([{"role": "user", "content": "Hi!"}])["choices"][0]["message"]["content"]  # doctest: +SKIP

One sequence at a time: the prompt is prefilled in chunks of up to 512 tokens,
then each step feeds one token to `Model.forward` (one C++ call per step, whatever
the layer count). The KV cache of the last call is kept, so a prompt that starts
with the previous conversation only computes its new tokens.
"""
from __future__ import annotations

import math
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator, Optional, Sequence, Union

import numpy as np

from .registry import ProgressFn, resolve_model
from .sampling import Sampler, SamplingParams
from .stopping import StopStrings

__all__ = ["LLM", "Completion", "CompletionChunk", "TokenLogprob", "Usage", "Timings"]

PREFILL_CHUNK = 512      # tokens per forward call while prefilling
LOGITS_CHUNK = 128       # tokens per forward call when every row needs logits
KV_BLOCK_SIZE = 16       # tokens per KV cache block

_SAMPLING_FIELDS = tuple(SamplingParams.__dataclass_fields__)


@dataclass
class Usage:
    """Token counts of one call, as in OpenAI's `usage`."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    def as_dict(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.total_tokens}


@dataclass
class TokenLogprob:
    """The log-probability of one generated token and of the top alternatives."""

    token: int
    logprob: float
    top_logprobs: list[tuple[int, float]]      # [(token id, logprob)], best first


@dataclass
class Completion:
    """The result of `LLM.generate` (without streaming)."""

    text: str
    token_ids: list[int]                       # generated ids (an end-of-generation id excluded)
    finish_reason: str                         # "stop" | "length"
    usage: Usage
    logprobs: Optional[list[TokenLogprob]] = None


@dataclass
class CompletionChunk:
    """One piece of a streamed generation: whole UTF-8 characters only.

    The last chunk has `finish_reason` and `usage` set (its text may be empty).
    """

    text: str
    token_ids: list[int]
    finish_reason: Optional[str] = None
    usage: Optional[Usage] = None
    logprobs: Optional[list[TokenLogprob]] = None


@dataclass
class Timings:
    """Where the time of the last generation went (seconds)."""

    load_s: float = 0.0
    prompt_tokens: int = 0                     # tokens actually computed (after cache reuse)
    prompt_s: float = 0.0
    generated_tokens: int = 0
    generate_s: float = 0.0
    first_token_s: float = 0.0                 # from the call to the first sampled token

    def summary(self) -> str:
        def rate(n: int, s: float) -> str:
            return f"{n / s:.1f} tok/s" if s > 0 else "-"
        return (f"load {self.load_s * 1e3:.0f} ms | prompt {self.prompt_tokens} tokens "
                f"{self.prompt_s * 1e3:.0f} ms ({rate(self.prompt_tokens, self.prompt_s)}) | "
                f"generation {self.generated_tokens} tokens {self.generate_s * 1e3:.0f} ms "
                f"({rate(self.generated_tokens, self.generate_s)}) | "
                f"first token {self.first_token_s * 1e3:.0f} ms")


class LLM:
    """A loaded model with its tokenizer, chat template, KV cache and a decode loop.

    >>> llm = LLM("gemma3-270m", n_ctx=1024, seed=0)            # doctest: +SKIP
    >>> out = llm.generate("Water boils at", temperature=0, max_tokens=12)  # doctest: +SKIP
    >>> out.finish_reason, out.usage.completion_tokens          # doctest: +SKIP
    ('length', 12)
    """

    def __init__(
        self,
        model: Union[str, os.PathLike],
        *,
        # --- context and compute ---
        n_ctx: int = 4096,
        n_threads: Optional[int] = None,
        precise: bool = False,
        # --- defaults ---
        seed: Optional[int] = None,
        # --- diagnostics ---
        verbose: bool = False,
        progress: Optional[ProgressFn] = None,
    ) -> None:
        """Load `model`: a GGUF path or a registry name (pulled on first use).

        `seed` makes the calls that give no seed of their own reproducible as a
        sequence; `n_threads` defaults to the core's choice (the physical cores).
        `precise=True` loads the model in precise mode (`Model.load(precise=True)`:
        float32 activations in every matmul and a float32 KV cache; slower, for
        debugging and accuracy checks).
        """
        from .chat_template import ChatTemplate
        from .model import Model
        from .tokenizer import StreamDecoder, Tokenizer

        _check_n_ctx(n_ctx)
        t0 = time.perf_counter()
        path = resolve_model(model, progress=progress)
        loaded = Model.load(str(path), n_threads=n_threads, precise=precise)
        metadata = loaded.gguf.metadata
        tokenizer = Tokenizer.from_metadata(metadata)
        template = ChatTemplate.from_metadata(metadata, loaded.arch)
        name = str(model) if not Path(str(model)).expanduser().is_file() else Path(path).stem
        self._setup(loaded, tokenizer, template, n_ctx=n_ctx, seed=seed, verbose=verbose,
                    name=name)
        self._new_decoder = StreamDecoder
        self.model_path = Path(path)
        self.timings.load_s = time.perf_counter() - t0
        self._log(f"loaded {self.model_path.name} ({loaded.arch}, n_vocab {self.n_vocab}) "
                  f"in {self.timings.load_s * 1e3:.0f} ms")

    @classmethod
    def _from_parts(cls, model: Any, tokenizer: Any, chat_template: Any,
                    stream_decoder: Callable[[Any], Any], *, n_ctx: int = 4096,
                    seed: Optional[int] = None, name: str = "model") -> "LLM":
        """An LLM over already-built parts (the unit tests use small fakes)."""
        self = cls.__new__(cls)
        self._setup(model, tokenizer, chat_template, n_ctx=n_ctx, seed=seed, verbose=False,
                    name=name)
        self._new_decoder = stream_decoder
        self.model_path = None
        return self

    def _setup(self, model: Any, tokenizer: Any, chat_template: Any, *, n_ctx: int,
               seed: Optional[int], verbose: bool, name: str) -> None:
        _check_n_ctx(n_ctx)
        self.model = model
        self.tokenizer = tokenizer
        self.chat_template = chat_template
        self.n_ctx = n_ctx
        self.n_vocab = int(model.n_vocab)
        self.model_name = name
        self.verbose = verbose
        self.timings = Timings()
        self._seeds = np.random.default_rng(seed)
        n_blocks = -(-n_ctx // KV_BLOCK_SIZE)
        self._kv = model.new_kv_cache(n_blocks, block_size=KV_BLOCK_SIZE)
        self._block_table = np.arange(n_blocks, dtype=np.int32).reshape(1, n_blocks)  # [1, n_blocks]
        self._cached: list[int] = []       # tokens whose K/V sit at positions 0.. in the cache
        self._active: object = None        # the running decode loop (one at a time)

    # --- text <-> tokens ---

    def tokenize(self, text: str, *, add_special: bool = True,
                 parse_special: bool = False) -> list[int]:
        """Token ids of `text` (with BOS when the model wants one and add_special is set).

        >>> llm.tokenize("Hello world")                          # doctest: +SKIP
        [19556, 905]
        """
        return list(self.tokenizer.tokenize(text, add_special=add_special,
                                            parse_special=parse_special))

    def detokenize(self, ids: Sequence[int]) -> str:
        """The text of `ids`.

        >>> llm.detokenize(llm.tokenize("Hello world"))          # doctest: +SKIP
        'Hello world'
        """
        return self.tokenizer.detokenize(list(ids))

    def apply_chat_template(self, messages: Sequence[dict], *, add_generation_prompt: bool = True,
                            tools: Optional[list] = None) -> str:
        """The prompt text the model's chat template makes of `messages`.

        >>> llm.apply_chat_template([{"role": "user", "content": "Hi"}])  # doctest: +SKIP
        '<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n'
        """
        return self.chat_template.render(list(messages), add_generation_prompt=add_generation_prompt,
                                         tools=tools)

    # --- generation ---

    def generate(self, prompt: Union[str, Sequence[int]], *, stream: bool = False,
                 **sampling: Any) -> Union[Completion, Iterator[CompletionChunk]]:
        """Continue `prompt` (text, tokenized with BOS, or a list of token ids).

        `sampling` takes the fields of `SamplingParams` (temperature, top_k, top_p,
        min_p, repeat_penalty, ..., max_tokens, stop, logprobs). With stream=True the
        result is an iterator of `CompletionChunk`s, the last one carrying
        finish_reason and usage.

        >>> out = llm.generate("1, 2, 3,", temperature=0, max_tokens=6, stop=["6"])  # doctest: +SKIP
        >>> out.text, out.finish_reason                          # doctest: +SKIP
        (' 4, 5, ', 'stop')
        """
        ids = self.tokenize(prompt) if isinstance(prompt, str) else [int(t) for t in prompt]
        params = self._params(sampling)
        chunks = self._stream(ids, params)
        if stream:
            return chunks
        return _collect(chunks)

    def chat(self, messages: Sequence[dict], *, stream: bool = False,
             tools: Optional[list] = None,
             **sampling: Any) -> Union[dict, Iterator[dict]]:
        """Answer a conversation; OpenAI-shaped `chat.completion` (or `.chunk`s when streaming).

        >>> r = llm.chat([{"role": "user", "content": "Say hi"}], max_tokens=16)  # doctest: +SKIP
        >>> r["object"], r["choices"][0]["message"]["role"]      # doctest: +SKIP
        ('chat.completion', 'assistant')
        """
        ids = self._chat_prompt_ids(messages, tools)
        params = self._params(sampling)
        completion_id = "chatcmpl-" + uuid.uuid4().hex[:24]
        created = int(time.time())
        chunks = self._stream(ids, params)
        if stream:
            return self._chat_chunks(chunks, completion_id, created, params.logprobs is not None)
        out = _collect(chunks)
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": self.model_name,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": out.text},
                "finish_reason": out.finish_reason,
                "logprobs": self._openai_logprobs(out.logprobs),
            }],
            "usage": out.usage.as_dict(),
        }

    # --- many requests at once (the continuous-batching engine) ---

    def engine(self, *, n_parallel: int = 4, ctx_size: Optional[int] = None,
               max_batch_tokens: int = 512) -> Any:
        """The batching `Engine` over this model (started on first use, then reused).

        ctx_size is the KV pool shared by all sequences (default: n_ctx); each sequence
        may hold up to min(n_ctx, ctx_size) tokens. Do not run `generate` on the same LLM
        while engine requests are in flight: both drive the one model.
        """
        from .engine import Engine
        eng = getattr(self, "_engine", None)
        if eng is None:
            eng = Engine(self.model, self.tokenizer, n_parallel=n_parallel,
                         ctx_size=ctx_size or self.n_ctx, n_ctx=self.n_ctx,
                         max_batch_tokens=max_batch_tokens, decoder_factory=self._new_decoder)
            self._engine = eng
        return eng

    def generate_batch(self, prompts: Sequence[Union[str, Sequence[int]]],
                       **sampling: Any) -> list[Completion]:
        """Generate for many prompts at once; they share forward steps (continuous batching).

        Results come back in the order of `prompts`. At temperature 0 each result equals
        what `generate` gives for that prompt alone.

        >>> outs = llm.generate_batch(["The sky is", "Grass is"], temperature=0, max_tokens=8)  # doctest: +SKIP
        >>> [o.text for o in outs]                               # doctest: +SKIP
        """
        eng = self.engine()
        ids = [self._prompt_ids(p) for p in prompts]
        params = self._params(dict(sampling))
        return [self._from_engine(c) for c in eng.generate_many(ids, params)]

    async def astream(self, prompt: Union[str, Sequence[int]],
                      **sampling: Any) -> "AsyncIterator[CompletionChunk]":
        """Stream one generation to asyncio code; many may run at once (they batch).

        >>> async for chunk in llm.astream("Once upon a time", max_tokens=32):  # doctest: +SKIP
        ...     print(chunk.text, end="")
        Cancelling the consuming task (or breaking out and closing the generator)
        cancels the request and frees its KV blocks.
        """
        eng = self.engine()
        stream = eng.stream(self._prompt_ids(prompt), self._params(dict(sampling)))
        try:
            async for c in stream:
                yield CompletionChunk(
                    text=c.text, token_ids=list(c.token_ids), finish_reason=c.finish_reason,
                    usage=Usage(c.usage.prompt_tokens, c.usage.completion_tokens,
                                c.usage.total_tokens) if c.usage else None,
                    logprobs=[TokenLogprob(x.token, x.logprob, x.top_logprobs)
                              for x in c.logprobs] if c.logprobs is not None else None)
                if c.finish_reason == "error":
                    raise RuntimeError(c.error or "generation failed")
        finally:
            stream.cancel()

    async def agenerate(self, prompt: Union[str, Sequence[int]], **sampling: Any) -> Completion:
        """The awaitable form of `generate` (batched with other concurrent calls)."""
        chunks = [c async for c in self.astream(prompt, **sampling)]
        return _collect(iter(chunks))

    def close(self) -> None:
        """Stop the batching engine's thread (if it was started)."""
        eng = getattr(self, "_engine", None)
        if eng is not None:
            eng.shutdown()
            self._engine = None

    def _prompt_ids(self, prompt: Union[str, Sequence[int]]) -> list[int]:
        return self.tokenize(prompt) if isinstance(prompt, str) else [int(t) for t in prompt]

    def _from_engine(self, c: Any) -> Completion:
        lps = None
        if c.logprobs is not None:
            lps = [TokenLogprob(x.token, x.logprob, x.top_logprobs) for x in c.logprobs]
        return Completion(c.text, list(c.token_ids), c.finish_reason,
                          Usage(c.usage.prompt_tokens, c.usage.completion_tokens,
                                c.usage.total_tokens), lps)

    # --- scoring ---

    def logits(self, ids: Sequence[int]) -> np.ndarray:
        """Teacher-forced log-probabilities: float32 [len(ids), n_vocab].

        Row i is log P(next token | ids[:i+1]); so `out[i, ids[i+1]]` scores ids[i+1].

        >>> lp = llm.logits(llm.tokenize("The sky is blue"))      # doctest: +SKIP
        >>> lp.shape                                             # doctest: +SKIP
        (4, 49152)
        """
        ids = self._check_ids(ids)
        out = np.empty((len(ids), self.n_vocab), dtype=np.float32)   # [n_tokens, n_vocab]
        for start, logits in self._teacher_forced(ids):
            out[start:start + len(logits)] = _log_softmax(logits)
        return out

    def perplexity(self, text: str) -> float:
        """exp(mean negative log-likelihood) of every token of `text` after the first.

        The text is tokenized as llama.cpp's perplexity tool does (BOS when the
        model's file asks for it). A text longer than n_ctx is scored in
        consecutive windows of n_ctx tokens, each from an empty cache.

        >>> llm.perplexity(open("tests/data/english.txt").read())  # doctest: +SKIP
        29.47
        """
        ids = self.tokenize(text)
        if len(ids) < 2:
            raise ValueError(f"perplexity needs at least 2 tokens, the text has {len(ids)}")
        nll_sum, n_scored = 0.0, 0
        for w in range(0, len(ids), self.n_ctx):
            window = ids[w:w + self.n_ctx]
            if len(window) < 2:
                break
            for start, logits in self._teacher_forced(window):
                rows = np.arange(start, min(start + len(logits), len(window) - 1))
                if len(rows) == 0:
                    continue
                x = logits[: len(rows)].astype(np.float64)
                m = x.max(axis=1)
                lse = m + np.log(np.exp(x - m[:, None]).sum(axis=1))
                targets = np.asarray(window, dtype=np.int64)[rows + 1]
                nll_sum += float((lse - x[np.arange(len(rows)), targets]).sum())
                n_scored += len(rows)
        return math.exp(nll_sum / n_scored)

    # --- internals: the decode loop ---

    def _params(self, sampling: dict) -> SamplingParams:
        unknown = sorted(set(sampling) - set(_SAMPLING_FIELDS))
        if unknown:
            raise TypeError(f"unknown sampling option(s) {', '.join(unknown)}; "
                            f"known: {', '.join(_SAMPLING_FIELDS)}")
        params = SamplingParams(**sampling)
        if params.seed is None:
            params.seed = int(self._seeds.integers(0, 2**63 - 1))
        params.validate(self.n_vocab)
        return params

    def _chat_prompt_ids(self, messages: Sequence[dict], tools: Optional[list]) -> list[int]:
        text = self.apply_chat_template(messages, add_generation_prompt=True, tools=tools)
        ids = self.tokenize(text, add_special=True, parse_special=True)
        bos = getattr(self.tokenizer, "bos_id", None)
        if bos is not None and len(ids) >= 2 and ids[0] == bos and ids[1] == bos:
            ids = ids[1:]   # the template wrote BOS itself: keep one
        return ids

    def _check_ids(self, ids: Sequence[int]) -> list[int]:
        ids = [int(t) for t in ids]
        if not ids:
            raise ValueError("the prompt is empty: at least one token is needed")
        if len(ids) > self.n_ctx:
            raise ValueError(f"the prompt has n_prompt_tokens={len(ids)}, more than the context "
                             f"n_ctx={self.n_ctx}; shorten it or load the model with a larger n_ctx")
        bad = [t for t in ids if not 0 <= t < self.n_vocab]
        if bad:
            raise ValueError(f"token id {bad[0]} is outside the vocabulary [0, {self.n_vocab})")
        return ids

    def _forward(self, tokens: Sequence[int], start: int, logit_rows: np.ndarray) -> np.ndarray:
        """One forward call for tokens at positions start.. of the single sequence."""
        n = len(tokens)
        logits = self.model.forward(
            self._kv,
            np.asarray(tokens, dtype=np.int32),                  # [n]
            np.arange(start, start + n, dtype=np.int32),         # [n] positions
            np.zeros(n, dtype=np.int32),                         # [n] sequence 0
            self._block_table,                                   # [1, n_blocks]
            logit_rows.astype(np.int32),                         # [n_rows]
        )
        self._cached[start:] = list(tokens)
        return logits

    def _prefill(self, ids: list[int]) -> np.ndarray:
        """Bring the cache to hold `ids`, reusing the cached common prefix; last row's logits."""
        reuse = _common_prefix(self._cached, ids)
        reuse = min(reuse, len(ids) - 1)            # the last token must run to give logits
        del self._cached[reuse:]
        logits = None
        for start in range(reuse, len(ids), PREFILL_CHUNK):
            chunk = ids[start:start + PREFILL_CHUNK]
            logits = self._forward(chunk, start, np.array([len(chunk) - 1]))
        return logits[0]

    def _teacher_forced(self, ids: list[int]) -> Iterator[tuple[int, np.ndarray]]:
        """(start, logits [n, n_vocab]) for every position of ids, from an empty cache."""
        self._cached.clear()
        self._active = None
        for start in range(0, len(ids), LOGITS_CHUNK):
            chunk = ids[start:start + LOGITS_CHUNK]
            yield start, self._forward(chunk, start, np.arange(len(chunk)))

    def _stream(self, prompt_ids: list[int], params: SamplingParams) -> Iterator[CompletionChunk]:
        """The decode loop: prefill, then sample / detokenize / stop-check one token per step."""
        prompt_ids = self._check_ids(prompt_ids)
        return self._decode_loop(prompt_ids, params, self._new_decoder(self.tokenizer))

    def _decode_loop(self, prompt_ids: list[int], params: SamplingParams,
                     decoder: Any) -> Iterator[CompletionChunk]:
        t_start = time.perf_counter()
        me = self._active = object()
        timings = Timings(load_s=self.timings.load_s)
        self.timings = timings
        n_reused = min(_common_prefix(self._cached, prompt_ids), len(prompt_ids) - 1)
        logits = self._prefill(prompt_ids)
        timings.prompt_tokens = len(prompt_ids) - n_reused
        timings.prompt_s = time.perf_counter() - t_start

        sampler = Sampler(params, self.n_vocab)
        stops = StopStrings(params.stop)
        end_ids = set(params.stop_token_ids)
        if not params.ignore_eos:
            end_ids |= set(getattr(self.tokenizer, "eog_ids", ()))
        history = list(prompt_ids)
        n_generated = 0
        finish = "length"
        t_gen = time.perf_counter()
        while True:
            result = sampler.sample(logits, history)
            n_generated += 1
            if n_generated == 1:
                timings.first_token_s = time.perf_counter() - t_start
            lp = None
            if params.logprobs is not None:
                lp = [TokenLogprob(result.token, result.logprob, result.top_logprobs or [])]
            if result.token in end_ids:
                finish = "stop"
                break
            history.append(result.token)
            text, hit_stop = stops.push(decoder.push(result.token))
            yield CompletionChunk(text, [result.token], logprobs=lp)
            if hit_stop:
                finish = "stop"
                break
            # The next token would sit at position len(history) - 1.
            if (params.max_tokens is not None and n_generated >= params.max_tokens) \
                    or len(history) > self.n_ctx:
                break
            if self._active is not me:
                raise RuntimeError("another generation started on this LLM while this stream "
                                   "was being read; consume one stream at a time")
            logits = self._forward([result.token], len(history) - 1, np.array([0]))[0]
        # Text held back (a partial character, a possible stop-string start) is
        # released unless a stop string ended the generation.
        tail = "" if stops.stopped else stops.push(decoder.flush())[0] + stops.flush()
        timings.generated_tokens = n_generated
        timings.generate_s = time.perf_counter() - t_gen
        if self.verbose:
            self._log(timings.summary())
        usage = Usage(len(prompt_ids), n_generated, len(prompt_ids) + n_generated)
        yield CompletionChunk(tail, [], finish_reason=finish, usage=usage)

    # --- internals: OpenAI shapes ---

    def _chat_chunks(self, chunks: Iterator[CompletionChunk], completion_id: str, created: int,
                     want_logprobs: bool) -> Iterator[dict]:
        def chunk(delta: dict, finish: Optional[str], logprobs: Any, usage: Any) -> dict:
            return {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                    "model": self.model_name,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish,
                                 "logprobs": logprobs}],
                    "usage": usage}

        yield chunk({"role": "assistant", "content": ""}, None, None, None)
        for c in chunks:
            lp = self._openai_logprobs(c.logprobs) if want_logprobs else None
            if c.finish_reason is None:
                if c.text or lp:
                    yield chunk({"content": c.text}, None, lp, None)
            else:
                delta = {"content": c.text} if c.text else {}
                yield chunk(delta, c.finish_reason, lp, c.usage.as_dict())

    def _openai_logprobs(self, logprobs: Optional[list[TokenLogprob]]) -> Optional[dict]:
        if logprobs is None:
            return None

        def entry(tid: int, lp: float) -> dict:
            raw = bytes(self.tokenizer.token_bytes(tid))
            return {"token": raw.decode("utf-8", errors="replace"), "logprob": lp,
                    "bytes": list(raw)}

        return {"content": [{**entry(t.token, t.logprob),
                             "top_logprobs": [entry(i, lp) for i, lp in t.top_logprobs]}
                            for t in logprobs]}

    def _log(self, message: str) -> None:
        if self.verbose:
            print(f"llamalite: {message}", file=sys.stderr, flush=True)

    def __repr__(self) -> str:
        return f"LLM({self.model_name!r}, n_ctx={self.n_ctx}, n_vocab={self.n_vocab})"


def _check_n_ctx(n_ctx: object) -> None:
    if isinstance(n_ctx, bool) or not isinstance(n_ctx, int) or n_ctx < 1:
        raise ValueError(f"n_ctx must be a positive integer, got {n_ctx!r}")


def _collect(chunks: Iterator[CompletionChunk]) -> Completion:
    texts: list[str] = []
    ids: list[int] = []
    logprobs: Optional[list[TokenLogprob]] = None
    last = None
    for c in chunks:
        texts.append(c.text)
        ids.extend(c.token_ids)
        if c.logprobs is not None:
            logprobs = (logprobs or []) + c.logprobs
        last = c
    assert last is not None and last.finish_reason is not None and last.usage is not None
    return Completion("".join(texts), ids, last.finish_reason, last.usage, logprobs)


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _log_softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax, float32 out, float64 normaliser."""
    m = x.max(axis=-1, keepdims=True)
    lse = m.astype(np.float64) + np.log(np.exp(x - m).sum(axis=-1, keepdims=True, dtype=np.float64))
    return (x - lse).astype(np.float32)
