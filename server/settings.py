"""Server settings: everything `llamalite serve` can be told, with the defaults."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MiB = 1024 * 1024


@dataclass
class Settings:
    """Options of one server process.

    model:        path of the GGUF file (or a registry name resolved by the CLI)
    model_name:   the id clients use in "model" (default: the file name without .gguf)
    n_parallel:   sequences decoded together
    ctx_size:     total KV-cache tokens shared by all sequences
    max_queue:    requests allowed to wait for a slot; more get 429
    api_key:      if set, every route but /health needs "Authorization: Bearer KEY"
    max_body_bytes: request bodies above this get 413 before they are parsed; None: 8 bytes
                  per prompt character (room for JSON escapes), at least 1 MiB. JSON decoding
                  holds the GIL, so this bounds how long one body can pause the event loop
    max_prompt_chars: a prompt (text, all messages' contents, /tokenize content, or a list
                  of token ids) longer than this gets 400 before it is tokenized; None: 32
                  characters per token of ctx_size (a prompt must fit the context anyway, and
                  the tokenizer's time grows with the characters, up to ~40 us each)
    cpu_workers:  threads that parse, render and tokenize requests off the event loop (at
                  most this many at once; more requests wait their turn)
    header_timeout_s: a connection that has not sent a whole request head this long after
                  it opened (or after the first byte of a later request) gets 408 and is closed
    body_timeout_s: a body not all received this long after its head gets 408 (closed)
    allowed_hosts: Host header values accepted besides localhost, 127.0.0.1, [::1], the
                  --host value and the address the connection came in on; "*" accepts any
    cors_origins: origins that get CORS headers (and preflight answers); "*" is any origin
    """
    model: str = ""
    model_name: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    n_parallel: int = 4
    ctx_size: int = 4096
    max_batch_tokens: int = 512
    max_queue: int = 64
    n_threads: int | None = None
    api_key: str | None = None
    max_body_bytes: int | None = None
    retry_after_s: int = 1
    max_prompt_chars: int | None = None
    cpu_workers: int = 2
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    allowed_hosts: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()

    @property
    def prompt_chars_limit(self) -> int:
        return self.max_prompt_chars or 32 * self.ctx_size

    @property
    def body_bytes_limit(self) -> int:
        return self.max_body_bytes or max(MiB, 8 * self.prompt_chars_limit)

    @property
    def served_name(self) -> str:
        """The model id shown by /v1/models."""
        if self.model_name:
            return self.model_name
        name = Path(self.model).name
        return name[:-5] if name.endswith(".gguf") else (name or "llamalite")
