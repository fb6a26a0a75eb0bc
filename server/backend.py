"""What the routes serve: the engine plus the model's tokenizer, chat template and names."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from llamalite.engine import Engine

from .settings import Settings


@dataclass
class Backend:
    """One loaded model behind the HTTP routes.

    make_params: builds sampling parameters from the validated request fields
    (llamalite.sampling.SamplingParams in production).
    """
    engine: Engine
    tokenizer: Any
    template: Any
    make_params: Callable[..., Any]
    name: str
    aliases: frozenset[str] = field(default_factory=frozenset)
    info: dict = field(default_factory=dict)

    @property
    def n_vocab(self) -> int:
        return self.engine.n_vocab

    def knows_model(self, model: str | None) -> bool:
        """Clients may name the served id, the file name or leave "model" out."""
        return model is None or model == "" or model == self.name or model in self.aliases

    def chat_prompt(self, messages: list[dict]) -> list[int]:
        """Render messages with the chat template and tokenize (special tokens parsed)."""
        if self.template is None:
            raise ValueError("this model has no chat template; use /v1/completions")
        text = self.template.render(messages, add_generation_prompt=True)
        ids = list(self.tokenizer.tokenize(text, add_special=True, parse_special=True))
        bos = getattr(self.tokenizer, "bos_id", None)
        if bos is not None and len(ids) > 1 and ids[0] == ids[1] == bos:
            ids = ids[1:]                   # the template already wrote BOS
        return ids

    def text_prompt(self, text: str) -> list[int]:
        return list(self.tokenizer.tokenize(text, add_special=True, parse_special=False))

    def piece(self, token: int) -> str:
        """A token's text on its own (for logprobs)."""
        return self.tokenizer.detokenize([token])

    def piece_bytes(self, token: int) -> bytes:
        """A token's raw bytes (part of a UTF-8 character, for byte tokens)."""
        token_bytes = getattr(self.tokenizer, "token_bytes", None)
        return token_bytes(token) if token_bytes is not None else self.piece(token).encode()

    def close(self) -> None:
        self.engine.shutdown()


def load_backend(settings: Settings) -> Backend:
    """Load the GGUF model named by settings and start its engine."""
    from llamalite.chat_template import ChatTemplate
    from llamalite.model import Model
    from llamalite.sampling import SamplingParams
    from llamalite.tokenizer import Tokenizer

    model = Model.load(settings.model, n_threads=settings.n_threads)
    metadata = model.gguf.metadata
    tokenizer = Tokenizer.from_metadata(metadata)
    try:
        template = ChatTemplate.from_metadata(metadata, model.arch)
    except Exception:
        template = None
    engine = Engine(model, tokenizer, n_parallel=settings.n_parallel, ctx_size=settings.ctx_size,
                    block_size=settings.block_size, max_batch_tokens=settings.max_batch_tokens,
                    max_queue=settings.max_queue)
    path = Path(settings.model)
    return Backend(engine=engine, tokenizer=tokenizer, template=template,
                   make_params=SamplingParams, name=settings.served_name,
                   aliases=frozenset({path.name, path.stem, str(path)}),
                   info={"arch": model.arch, "n_vocab": engine.n_vocab, "n_ctx": engine.n_ctx,
                         "n_parallel": engine.n_parallel})
