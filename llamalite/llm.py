"""The friendly Python API: `LLM` loads a model once and generates text, chats and scores.

>>> import llamalite
>>> llm = llamalite.LLM("smollm2-135m", n_ctx=2048)          # doctest: +SKIP
>>> llm.generate("The capital of France is", temperature=0, max_tokens=8).text  # doctest: +SKIP
' Paris.\\n\\nThe United States has'
>>> for chunk in llm.generate("Count: 1, 2,", stream=True, max_tokens=8):  # doctest: +SKIP
...     print(chunk.text, end="", flush=True)
>>> llm.chat([{"role": "user", "content": "Hi!"}])["choices"][0]["message"]["content"]  # doctest: +SKIP

Every generating call (`generate`, `chat`, streaming, `generate_batch`, `astream`) is a
request to the one engine (engine.py) that owns the model's paged KV pool and prefix
cache; calls from several threads or tasks batch together in its steps. `logits` and
`perplexity` score a given text by teacher forcing: they call the model directly, with a
short-lived cache of their own, between the engine's steps.
"""
from __future__ import annotations

import math
import os
import sys
import time
import weakref
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator, Optional, Sequence, Union

import numpy as np

from .engine import Engine
from .errors import EngineError, GrammarError, TemplateError
from .grammar import schema_of_response_format
from .tools import ToolPlan, plan_tools
from .openai_format import OpenAIShape
from .outputs import Completion, CompletionChunk, Timings, TokenLogprob, Usage, join_chunks
from .registry import ProgressFn, resolve_model
from .sampling import SamplingParams

__all__ = ["LLM", "LoadedModel", "load_model", "Completion", "CompletionChunk", "TokenLogprob",
           "Usage", "Timings"]

LOGITS_CHUNK = 128       # tokens per forward call when every row needs logits
KV_BLOCK_SIZE = 16       # tokens per KV cache block

_SAMPLING_FIELDS = tuple(SamplingParams.__dataclass_fields__)


# --- loading ---------------------------------------------------------------------------

@dataclass
class LoadedModel:
    """A model file made ready: weights, tokenizer and chat template.

    chat_template is None when the file's template cannot be used (template_error says
    why); plain completion still works.
    """

    model: Any
    tokenizer: Any
    chat_template: Any
    template_error: Optional[str]
    path: Path
    name: str                                  # the registry name or the file's stem


def load_model(model: Union[str, os.PathLike], *, n_threads: Optional[int] = None,
               precise: bool = False, progress: Optional[ProgressFn] = None,
               n_ctx: Optional[int] = None) -> LoadedModel:
    """Resolve `model` (a GGUF path or a registry name, pulled on first use) and load it.
    n_ctx: the longest sequence it will serve (Model.load; LongRoPE's factor choice).

    The one loader of the Python API, the CLI and the server.
    """
    from .chat_template import ChatTemplate
    from .model import Model
    from .tokenizer import Tokenizer

    path = resolve_model(model, progress=progress)
    loaded = Model.load(str(path), n_threads=n_threads, precise=precise, n_ctx=n_ctx)
    metadata = loaded.gguf.metadata
    tokenizer = Tokenizer.from_metadata(metadata)
    template, template_error = None, None
    try:
        template = ChatTemplate.from_metadata(metadata, loaded.arch)
    except TemplateError as e:
        template_error = str(e)
    name = str(model) if not Path(str(model)).expanduser().is_file() else Path(path).stem
    return LoadedModel(loaded, tokenizer, template, template_error, Path(path), name)


@dataclass
class PreparedChat:
    """A chat request made ready (LLM.prepare_chat)."""

    prompt_ids: list[int]
    sampling: dict                           # SamplingParams fields, constraint included
    plan: ToolPlan                           # reads tool calls out of the reply


# --- the API ---------------------------------------------------------------------------

class LLM:
    """A loaded model with its tokenizer, chat template and generation engine.

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
        # --- batching ---
        n_parallel: int = 4,
        max_batch_tokens: int = 512,
        max_queue: int = 64,
        # --- defaults ---
        seed: Optional[int] = None,
        # --- diagnostics ---
        verbose: bool = False,
        progress: Optional[ProgressFn] = None,
    ) -> None:
        """Load `model`: a GGUF path or a registry name (pulled on first use).

        n_ctx: tokens of KV cache, shared by the sequences that run at once; one sequence
        holds at most n_ctx tokens (prompt and reply together; fewer if the model was
        trained on a shorter context). n_parallel: sequences decoded together;
        max_batch_tokens: tokens per forward step (prompts are prefilled in chunks of
        it); max_queue: requests allowed to wait for a slot. `seed` makes the calls that
        give no seed of their own reproducible as a sequence; `n_threads` defaults to the
        core's choice (the physical cores). `precise=True` loads the model in precise
        mode (float32 activations in every matmul and a float32 KV cache; slower, for
        debugging and accuracy checks).
        """
        from .tokenizer import StreamDecoder

        _check_n_ctx(n_ctx)
        t0 = time.perf_counter()
        loaded = load_model(model, n_threads=n_threads, precise=precise, progress=progress,
                            n_ctx=n_ctx)
        self._setup(loaded.model, loaded.tokenizer, loaded.chat_template, StreamDecoder,
                    n_ctx=n_ctx, n_parallel=n_parallel, max_batch_tokens=max_batch_tokens,
                    max_queue=max_queue, seed=seed, verbose=verbose, name=loaded.name)
        self.template_error = loaded.template_error
        self.model_path: Optional[Path] = loaded.path
        self.load_s = time.perf_counter() - t0
        self._log(f"loaded {self.model_path.name} ({loaded.model.arch}, n_vocab {self.n_vocab}) "
                  f"in {self.load_s * 1e3:.0f} ms")
        if self.template_error:
            self._log(f"chat is unavailable: {self.template_error}")

    @classmethod
    def _from_parts(cls, model: Any, tokenizer: Any, chat_template: Any,
                    stream_decoder: Callable[[Any], Any], *, n_ctx: int = 4096,
                    n_parallel: int = 4, max_batch_tokens: int = 512, max_queue: int = 64,
                    seed: Optional[int] = None, name: str = "model") -> "LLM":
        """An LLM over already-built parts (the unit tests use small fakes)."""
        self = cls.__new__(cls)
        self._setup(model, tokenizer, chat_template, stream_decoder, n_ctx=n_ctx,
                    n_parallel=n_parallel, max_batch_tokens=max_batch_tokens,
                    max_queue=max_queue, seed=seed, verbose=False, name=name)
        self.template_error = None if chat_template is not None else "no chat template"
        self.model_path = None
        self.load_s = 0.0
        return self

    def _setup(self, model: Any, tokenizer: Any, chat_template: Any,
               stream_decoder: Callable[[Any], Any], *, n_ctx: int, n_parallel: int,
               max_batch_tokens: int, max_queue: int, seed: Optional[int], verbose: bool,
               name: str) -> None:
        _check_n_ctx(n_ctx)
        self.model = model
        self.tokenizer = tokenizer
        self.chat_template = chat_template
        self.n_vocab = int(model.n_vocab)
        self.model_name = name
        self.verbose = verbose
        self.timings = Timings()              # of the last request made by generate / chat
        self._seeds = np.random.default_rng(seed)
        self._engine: Optional[Engine] = Engine(
            model, tokenizer, n_parallel=n_parallel, ctx_size=n_ctx, n_ctx=n_ctx,
            block_size=KV_BLOCK_SIZE, max_batch_tokens=max_batch_tokens, max_queue=max_queue,
            decoder_factory=stream_decoder)
        self.n_ctx = self._engine.n_ctx       # per sequence, capped by the training context
        # An LLM dropped without close() stops its engine thread when collected.
        weakref.finalize(self, self._engine.shutdown)

    @property
    def engine(self) -> Engine:
        """The engine every generating call submits to (its `stats()` feed /metrics)."""
        if self._engine is None:
            raise EngineError("this LLM was closed")
        return self._engine

    def close(self) -> None:
        """Stop the engine's thread; unfinished requests end with an error."""
        if self._engine is not None:
            self._engine.shutdown()
            self._engine = None

    def __enter__(self) -> "LLM":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

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
        return self._template().render(list(messages), add_generation_prompt=add_generation_prompt,
                                       tools=tools)

    def chat_prompt_ids(self, messages: Sequence[dict], *, tools: Optional[list] = None) -> list[int]:
        """The prompt ids `chat` sends for `messages` (the template's own markup makes the
        special tokens; one BOS)."""
        from .chat_template import chat_prompt_ids
        return chat_prompt_ids(self._template(), self.tokenizer, list(messages), tools=tools)

    def _template(self) -> Any:
        if self.chat_template is None:
            raise TemplateError(f"this model's chat template cannot be used "
                                f"({self.template_error}); use generate() for plain completion")
        return self.chat_template

    # --- generation ---

    def sampling_params(self, **sampling: Any) -> SamplingParams:
        """Validated `SamplingParams` from keyword options (unknown names are errors); a
        missing seed is drawn from the LLM's own seed sequence."""
        unknown = sorted(set(sampling) - set(_SAMPLING_FIELDS))
        if unknown:
            raise TypeError(f"unknown sampling option(s) {', '.join(unknown)}; "
                            f"known: {', '.join(_SAMPLING_FIELDS)}")
        params = SamplingParams(**sampling)
        if params.seed is None:
            params.seed = int(self._seeds.integers(0, 2**63 - 1))
        params.validate(self.n_vocab)
        return params

    def generate(self, prompt: Union[str, Sequence[int]], *, stream: bool = False,
                 **sampling: Any) -> Union[Completion, Iterator[CompletionChunk]]:
        """Continue `prompt` (text, tokenized with BOS, or a list of token ids).

        `sampling` takes the fields of `SamplingParams` (temperature, top_k, top_p,
        min_p, repeat_penalty, ..., max_tokens, stop, logprobs, and json_schema or
        grammar to constrain the reply to JSON under a schema or to a GBNF grammar).
        Without max_tokens the reply stops at SamplingParams' default or where the
        context is full, whichever comes first; a max_tokens that cannot fit is an error. With stream=True the
        result is an iterator of `CompletionChunk`s, the last one carrying
        finish_reason and usage. Bad options and prompts raise here, before any work.

        >>> out = llm.generate("1, 2, 3,", temperature=0, max_tokens=6, stop=["6"])  # doctest: +SKIP
        >>> out.text, out.finish_reason                          # doctest: +SKIP
        (' 4, 5, ', 'stop')
        """
        chunks = self._submit(self._prompt_ids(prompt), sampling)
        return chunks if stream else _collect(chunks)

    def chat(self, messages: Sequence[dict], *, stream: bool = False,
             tools: Optional[list] = None, tool_choice: Any = None,
             parallel_tool_calls: bool = True, response_format: Optional[dict] = None,
             **sampling: Any) -> Union[dict, Iterator[dict]]:
        """Answer a conversation; OpenAI-shaped `chat.completion` (or `.chunk`s when streaming:
        a role chunk, content chunks, a finish chunk and a usage chunk).

        tools, tool_choice, parallel_tool_calls: OpenAI's. Calls come back as
        `message.tool_calls` with finish_reason "tool_calls"; under "required" or a named
        function the call format is enforced by a grammar (tools.py). With tools a
        streamed reply is held back until it ends, then sent as content or call deltas.

        response_format: OpenAI's {"type": "json_object"} or {"type": "json_schema",
        "json_schema": {"schema": {...}}}: the reply is JSON, enforced token by token
        (like the json_schema and grammar options of `generate`).

        >>> r = llm.chat([{"role": "user", "content": "Say hi"}], max_tokens=16)  # doctest: +SKIP
        >>> r["object"], r["choices"][0]["message"]["role"]      # doctest: +SKIP
        ('chat.completion', 'assistant')
        """
        prepared = self.prepare_chat(messages, tools=tools, tool_choice=tool_choice,
                                     parallel_tool_calls=parallel_tool_calls,
                                     response_format=response_format, sampling=sampling)
        plan = prepared.plan
        chunks = self._submit(prepared.prompt_ids, prepared.sampling)
        shape = OpenAIShape("chat", self.model_name, self.tokenizer.token_bytes)
        if not plan.parses_calls:
            return _openai_stream(shape, chunks) if stream else shape.whole(_collect(chunks))
        if stream:
            return _openai_tool_stream(shape, chunks, plan)
        out = _collect(chunks)
        content, calls = plan.parse(out.text)
        return shape.whole(out, calls, content)

    def prepare_chat(self, messages: Sequence[dict], *, tools: Optional[list] = None,
                     tool_choice: Any = None, parallel_tool_calls: bool = True,
                     response_format: Optional[dict] = None,
                     sampling: Optional[dict] = None) -> "PreparedChat":
        """What `chat` (and the server's chat route) sends: the prompt ids, the sampling
        options with the request's constraint (response_format's schema, or the grammar
        that forces a required tool call), and the tool plan that reads the reply.
        GrammarError naming the field for bad tools, tool_choice or response_format."""
        sampling = dict(sampling or {})
        template = self._template()
        plan = plan_tools(tools, tool_choice, template.source,
                          parallel_tool_calls=parallel_tool_calls)
        constraint = {"json_schema": schema_of_response_format(response_format),
                      "grammar": plan.grammar}
        given = [k for k in ("json_schema", "grammar") if sampling.get(k) is not None]
        if sum(v is not None for v in constraint.values()) + len(given) > 1:
            field = ("response_format" if response_format is not None
                     else "tool_choice" if plan.grammar is not None else "grammar")
            raise GrammarError("one constraint per request: response_format, a required tool "
                               "call, json_schema or grammar", param=field)
        sampling.update({k: v for k, v in constraint.items() if v is not None})
        ids = self.chat_prompt_ids(plan.messages(list(messages), template.source),
                                   tools=plan.tools or None)
        return PreparedChat(ids, sampling, plan)

    def generate_batch(self, prompts: Sequence[Union[str, Sequence[int]]],
                       **sampling: Any) -> list[Completion]:
        """Generate for many prompts at once; they share forward steps (continuous batching).

        Results come back in the order of `prompts`. At temperature 0 each result equals
        what `generate` gives for that prompt alone.

        >>> outs = llm.generate_batch(["The sky is", "Grass is"], temperature=0, max_tokens=8)  # doctest: +SKIP
        >>> [o.text for o in outs]                               # doctest: +SKIP
        """
        ids = [self._prompt_ids(p) for p in prompts]
        params = [self._params_for(i, sampling) for i in ids]
        return self.engine.generate_many(ids, params)

    async def astream(self, prompt: Union[str, Sequence[int]],
                      **sampling: Any) -> "AsyncIterator[CompletionChunk]":
        """Stream one generation to asyncio code; many may run at once (they batch).

        >>> async for chunk in llm.astream("Once upon a time", max_tokens=32):  # doctest: +SKIP
        ...     print(chunk.text, end="")
        Cancelling the consuming task (or breaking out and closing the generator)
        cancels the request and frees its KV blocks.
        """
        ids = self._prompt_ids(prompt)
        stream = self.engine.stream(ids, self._params_for(ids, sampling))
        try:
            async for c in stream:
                if c.finish_reason == "error":
                    raise EngineError(c.error or "generation failed")
                yield c
        finally:
            stream.cancel()

    async def agenerate(self, prompt: Union[str, Sequence[int]], **sampling: Any) -> Completion:
        """The awaitable form of `generate` (batched with other concurrent calls)."""
        return join_chunks([c async for c in self.astream(prompt, **sampling)])

    def _prompt_ids(self, prompt: Union[str, Sequence[int]]) -> list[int]:
        return self.tokenize(prompt) if isinstance(prompt, str) else [int(t) for t in prompt]

    def _params_for(self, prompt_ids: Sequence[int], sampling: dict) -> SamplingParams:
        params = self.sampling_params(**sampling)
        if "max_tokens" not in sampling and params.max_tokens is not None:
            # The default length gives way to the context; an explicit one is checked.
            params.max_tokens = max(1, min(params.max_tokens, self.n_ctx - len(prompt_ids)))
        return params

    def _submit(self, prompt_ids: list[int], sampling: dict) -> Iterator[CompletionChunk]:
        chunks = self.engine.iter_stream(prompt_ids, self._params_for(prompt_ids, sampling))
        return self._follow(chunks)

    def _follow(self, chunks: Iterator[CompletionChunk]) -> Iterator[CompletionChunk]:
        """Pass a request's chunks on; keep its timings; an "error" end raises."""
        with closing(chunks):
            for c in chunks:
                if c.finish_reason == "error":
                    raise EngineError(c.error or "generation failed")
                if c.timings is not None:
                    self.timings = c.timings
                    self._log(c.timings.summary())
                yield c

    # --- scoring (teacher forcing: the model directly, not the engine) ---

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

    def _check_ids(self, ids: Sequence[int]) -> list[int]:
        ids = [int(t) for t in ids]
        if not ids:
            raise ValueError("the text to score is empty: at least one token is needed")
        if len(ids) > self.n_ctx:
            raise ValueError(f"the text has n_prompt_tokens={len(ids)}, more than the context "
                             f"n_ctx={self.n_ctx}; shorten it or load the model with a larger n_ctx")
        bad = [t for t in ids if not 0 <= t < self.n_vocab]
        if bad:
            raise ValueError(f"token id {bad[0]} is outside the vocabulary [0, {self.n_vocab})")
        return ids

    def _teacher_forced(self, ids: list[int]) -> Iterator[tuple[int, np.ndarray]]:
        """(start, logits [n, n_vocab]) for every position of ids, from an empty cache.

        The cache is this call's own (one sequence of len(ids) tokens); each forward call
        takes the engine's forward lock, so scoring interleaves with generation steps."""
        engine = self.engine
        n_blocks = -(-len(ids) // KV_BLOCK_SIZE)
        kv = self.model.new_kv_cache(n_blocks, block_size=KV_BLOCK_SIZE)
        table = np.arange(n_blocks, dtype=np.int32).reshape(1, n_blocks)   # [1, n_blocks]
        for start in range(0, len(ids), LOGITS_CHUNK):
            chunk = ids[start:start + LOGITS_CHUNK]
            n = len(chunk)
            with engine.forward_lock:
                logits = self.model.forward(
                    kv,
                    np.asarray(chunk, dtype=np.int32),                   # [n]
                    np.arange(start, start + n, dtype=np.int32),         # [n] positions
                    np.zeros(n, dtype=np.int32),                         # [n] sequence 0
                    table,                                               # [1, n_blocks]
                    np.arange(n, dtype=np.int32))                        # [n] every row
            yield start, logits

    def _log(self, message: str) -> None:
        if self.verbose:
            print(f"llamalite: {message}", file=sys.stderr, flush=True)

    def __repr__(self) -> str:
        return f"LLM({self.model_name!r}, n_ctx={self.n_ctx}, n_vocab={self.n_vocab})"


def _check_n_ctx(n_ctx: object) -> None:
    if isinstance(n_ctx, bool) or not isinstance(n_ctx, int) or n_ctx < 2:
        raise ValueError(f"n_ctx must be an integer >= 2, got {n_ctx!r}")


def _openai_stream(shape: OpenAIShape, chunks: Iterator[CompletionChunk]) -> Iterator[dict]:
    with closing(chunks):
        yield shape.chunk("", role=True)
        usage = None
        for c in chunks:
            yield from shape.events(c)
            if c.finish_reason is not None:
                usage = c.usage
        yield shape.usage_chunk(usage)


def _openai_tool_stream(shape: OpenAIShape, chunks: Iterator[CompletionChunk],
                        plan: Any) -> Iterator[dict]:
    with closing(chunks):
        yield shape.chunk("", role=True)
        out = _collect(chunks)
        content, calls = plan.parse(out.text)
        yield from shape.tool_reply_events(out, calls, content)
        yield shape.usage_chunk(out.usage)


def _collect(chunks: Iterator[CompletionChunk]) -> Completion:
    return join_chunks(list(chunks))


def _log_softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax, float32 out, float64 normaliser."""
    m = x.max(axis=-1, keepdims=True)
    lse = m.astype(np.float64) + np.log(np.exp(x - m).sum(axis=-1, keepdims=True, dtype=np.float64))
    return (x - lse).astype(np.float32)
