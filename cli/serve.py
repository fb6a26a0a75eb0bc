"""`llamalite serve MODEL`: the OpenAI-compatible HTTP server."""
from __future__ import annotations

from typing import List, Optional

import typer

from ..errors import LlamaliteError
from ..registry import resolve_model
from .main import app, fail


@app.command()
def serve(
    model: str = typer.Argument(..., help="GGUF file or registry name (smollm2-135m, ...)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8080, "--port", help="TCP port."),
    parallel: int = typer.Option(4, "--parallel", "-np", help="Sequences decoded together."),
    ctx_size: int = typer.Option(4096, "--ctx-size", "-c",
                                 help="Total KV-cache tokens, shared by all sequences."),
    api_key: Optional[str] = typer.Option(None, "--api-key",
                                          help="Require 'Authorization: Bearer KEY'."),
    max_queue: int = typer.Option(64, "--max-queue", help="Waiting requests before 429."),
    batch_tokens: int = typer.Option(512, "--batch-tokens",
                                     help="Token budget of one step (decodes + prefill chunk)."),
    threads: Optional[int] = typer.Option(None, "--threads", "-t",
                                          help="Compute threads (default: physical cores)."),
    alias: Optional[str] = typer.Option(None, "--alias", help="Model id shown to clients."),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level."),
    allowed_hosts: Optional[List[str]] = typer.Option(
        None, "--allowed-hosts", help="Host header values accepted besides localhost and the "
        "listening address (repeatable or comma-separated; '*' accepts any)."),
    cors_origin: Optional[List[str]] = typer.Option(
        None, "--cors-origin", help="Origin allowed to call from a web page (repeatable; "
        "'*' allows any). Without it no CORS headers are sent."),
    max_prompt_chars: Optional[int] = typer.Option(
        None, "--max-prompt-chars", help="Longest prompt in characters, 400 beyond "
        "(default: 32 per token of --ctx-size)."),
    header_timeout: float = typer.Option(10.0, "--header-timeout",
                                         help="Seconds to receive a request head (408 after)."),
    body_timeout: float = typer.Option(60.0, "--body-timeout",
                                       help="Seconds to receive a request body (408 after)."),
    cpu_workers: int = typer.Option(2, "--cpu-workers",
                                    help="Threads that parse and tokenize requests."),
) -> None:
    """Serve MODEL over HTTP (OpenAI-compatible /v1/chat/completions, /v1/completions, ...)."""
    import uvicorn

    from ..server.app import create_app, protocol_for
    from ..server.settings import Settings

    for name, value, low in (("--parallel", parallel, 1), ("--ctx-size", ctx_size, 16),
                             ("--max-queue", max_queue, 0), ("--port", port, 0),
                             ("--max-prompt-chars", 1 if max_prompt_chars is None else max_prompt_chars, 1),
                             ("--cpu-workers", cpu_workers, 1)):
        if value < low:
            raise fail(f"{name} must be at least {low}, got {value}")
    for name, value in (("--header-timeout", header_timeout), ("--body-timeout", body_timeout)):
        if not value > 0:
            raise fail(f"{name} must be a positive number of seconds, got {value}")
    hosts = tuple(h.strip() for item in allowed_hosts or [] for h in item.split(",") if h.strip())
    if batch_tokens < parallel:
        raise fail(f"--batch-tokens ({batch_tokens}) must be at least --parallel ({parallel})")
    try:
        path = resolve_model(model)
    except LlamaliteError as e:
        raise fail(str(e))
    settings = Settings(model=str(path), model_name=alias, host=host, port=port,
                        n_parallel=parallel, ctx_size=ctx_size, max_batch_tokens=batch_tokens,
                        max_queue=max_queue, n_threads=threads, api_key=api_key,
                        allowed_hosts=hosts, cors_origins=tuple(cors_origin or []),
                        max_prompt_chars=max_prompt_chars, header_timeout_s=header_timeout,
                        body_timeout_s=body_timeout, cpu_workers=cpu_workers)
    typer.echo(f"llamalite serve: {path.name} on http://{host}:{port} "
               f"(parallel={parallel}, ctx-size={ctx_size})", err=True)
    app = create_app(settings)
    uvicorn.run(app, host=host, port=port, log_level=log_level, http=protocol_for(app),
                timeout_graceful_shutdown=5)
