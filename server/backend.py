"""What the routes serve: one `LLM` (model, tokenizer, chat template, engine) and its names."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llamalite.engine import Engine
from llamalite.llm import LLM
from llamalite.sampling import SamplingParams

from .settings import Settings


@dataclass
class Backend:
    """One loaded model behind the HTTP routes: the Python API's `LLM`, so the server and
    `LLM.generate` share one loader, one engine and one output path."""

    llm: LLM
    name: str
    aliases: frozenset[str] = field(default_factory=frozenset)
    info: dict = field(default_factory=dict)

    @property
    def engine(self) -> Engine:
        return self.llm.engine

    @property
    def tokenizer(self) -> Any:
        return self.llm.tokenizer

    @property
    def n_vocab(self) -> int:
        return self.llm.n_vocab

    def knows_model(self, model: str | None) -> bool:
        """Clients may name the served id, the file name or leave "model" out."""
        return model is None or model == "" or model == self.name or model in self.aliases

    def chat_prompt(self, messages: list[dict]) -> list[int]:
        """The prompt ids of a conversation (raises TemplateError when it cannot render)."""
        return self.llm.chat_prompt_ids(messages)

    def text_prompt(self, text: str) -> list[int]:
        return self.llm.tokenize(text)

    def make_params(self, **fields: Any) -> SamplingParams:
        """Sampling parameters from validated request fields (ValueError/TypeError if bad)."""
        return self.llm.sampling_params(**fields)

    def piece(self, token: int) -> str:
        """A token's text on its own."""
        return bytes(self.llm.tokenizer.token_bytes(token)).decode("utf-8", errors="replace")

    def close(self) -> None:
        self.llm.close()


def backend_for(llm: LLM, settings: Settings) -> Backend:
    """The Backend serving `llm` under the names settings give."""
    path = Path(settings.model)
    return Backend(llm=llm, name=settings.served_name,
                   aliases=frozenset({path.name, path.stem, str(path)}),
                   info={"arch": getattr(llm.model, "arch", "unknown"), "n_vocab": llm.n_vocab,
                         "n_ctx": llm.n_ctx, "n_parallel": llm.engine.n_parallel})


def load_backend(settings: Settings) -> Backend:
    """Load the GGUF model named by settings (the Python API's loader) and start its engine."""
    llm = LLM(settings.model, n_ctx=settings.ctx_size, n_threads=settings.n_threads,
              n_parallel=settings.n_parallel, max_batch_tokens=settings.max_batch_tokens,
              max_queue=settings.max_queue)
    return backend_for(llm, settings)
