"""`llamalite bench MODEL`: the model's own prompt and generation speed, like llama-bench."""
from __future__ import annotations

import json as _json
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import LlamaliteError
from ..speed import Config, format_table, parse_int_list, parse_parallel, run
from .main import app, fail


@app.command()
def bench(
    models: List[str] = typer.Argument(..., help="GGUF paths or model names."),
    threads: str = typer.Option(
        "2", "-t", "--threads", help="Thread counts; a list (1,2) gives a table each."),
    reps: int = typer.Option(5, "--reps", help="Repetitions (a fresh process each)."),
    n_prompt: int = typer.Option(512, "--n-prompt", help="Prompt tokens processed in one batch."),
    n_gen: int = typer.Option(128, "--n-gen", help="Tokens generated one at a time."),
    parallel: Optional[str] = typer.Option(
        None, "--parallel", help="Sequence counts for aggregate parallel generation, e.g. 1,4,8."),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write the report to this JSON file."),
    json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Measure prompt processing and generation speed, load-to-first-token time and peak
    memory (llama.cpp side by side and the machine's roofs: bench/compare.py, bench/kernels.py)."""
    try:
        cfg = Config(models=models, threads=parse_int_list(threads, "--threads"), reps=reps,
                     n_prompt=n_prompt, n_gen=n_gen, parallel=parse_parallel(parallel, default=[]))
    except ValueError as e:
        raise fail(str(e))
    if out is not None and (out.is_dir() or not out.parent.is_dir()):
        raise fail(f"--out {out}: give a file in an existing folder")
    log = (lambda msg: None) if json else (lambda msg: typer.echo(msg, err=True))
    try:
        report = run(cfg, log=log)
    except (LlamaliteError, RuntimeError) as e:
        raise fail(str(e))
    typer.echo(_json.dumps(report, indent=1) if json else format_table(report))
    if out is not None:
        out.write_text(_json.dumps(report, indent=1))
        typer.echo(f"written: {out}", err=True)
