"""`llamalite serve MODEL`: the OpenAI-compatible HTTP server."""
from __future__ import annotations

from typing import Optional

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
) -> None:
    """Serve MODEL over HTTP (OpenAI-compatible /v1/chat/completions, /v1/completions, ...)."""
    import uvicorn

    from ..server.app import create_app
    from ..server.settings import Settings

    for name, value, low in (("--parallel", parallel, 1), ("--ctx-size", ctx_size, 16),
                             ("--max-queue", max_queue, 0), ("--port", port, 0)):
        if value < low:
            raise fail(f"{name} must be at least {low}, got {value}")
    if batch_tokens < parallel:
        raise fail(f"--batch-tokens ({batch_tokens}) must be at least --parallel ({parallel})")
    try:
        path = resolve_model(model)
    except LlamaliteError as e:
        raise fail(str(e))
    settings = Settings(model=str(path), model_name=alias, host=host, port=port,
                        n_parallel=parallel, ctx_size=ctx_size, max_batch_tokens=batch_tokens,
                        max_queue=max_queue, n_threads=threads, api_key=api_key)
    typer.echo(f"llamalite serve: {path.name} on http://{host}:{port} "
               f"(parallel={parallel}, ctx-size={ctx_size})", err=True)
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level,
                timeout_graceful_shutdown=5)
