"""`llamalite bench MODEL`: prompt and generation speed, optionally beside llama.cpp."""
from __future__ import annotations

import json as _json
import os
from pathlib import Path
from typing import List, Optional

import typer

from ..benchmark import Config, compare, format_table, parse_int_list, parse_parallel, save
from ..errors import LlamaliteError
from .main import app, fail


@app.command()
def bench(
    models: List[str] = typer.Argument(..., help="GGUF paths or model names."),
    compare_peer: bool = typer.Option(
        False, "--compare", help="Run llama.cpp (llama-cpp-python) side by side, interleaved."),
    peer_python: Optional[str] = typer.Option(
        None, "--peer-python", envvar="LLAMALITE_PEER_PYTHON",
        help="Python interpreter of the environment that has llama-cpp-python."),
    threads: str = typer.Option(
        "2", "-t", "--threads", help="Threads for both engines; a list (1,2) gives a table each."),
    reps: int = typer.Option(5, "--reps", help="Repetitions per engine (fresh process each)."),
    n_prompt: int = typer.Option(512, "--n-prompt", help="Prompt tokens processed in one batch."),
    n_gen: int = typer.Option(128, "--n-gen", help="Tokens generated one at a time."),
    parallel: Optional[str] = typer.Option(
        None, "--parallel", help="Sequence counts for aggregate parallel generation, e.g. 1,4,8 "
        "(the default with --compare; 0 to skip)."),
    out: Path = typer.Option(Path("bench/results"), "--out", help="Folder for the JSON report."),
    json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Measure prompt processing and generation speed, load-to-first-token time and peak
    memory, beside the machine's read-bandwidth and int8 roofs (and llama.cpp with --compare)."""
    if compare_peer and not peer_python:
        raise fail("--compare needs the interpreter that has llama-cpp-python: "
                   "--peer-python PATH or LLAMALITE_PEER_PYTHON")
    if peer_python and not os.path.exists(peer_python):
        raise fail(f"--peer-python {peer_python}: no such file")
    try:
        thread_counts = parse_int_list(threads, "--threads")
        counts = parse_parallel(parallel, default=[1, 4, 8] if compare_peer else [])
    except ValueError as e:
        raise fail(str(e))
    cfg = Config(models=models, threads=thread_counts, reps=reps, n_prompt=n_prompt,
                 n_gen=n_gen, parallel=counts,
                 peer_python=peer_python if compare_peer else None, out_dir=out)
    log = (lambda msg: None) if json else (lambda msg: typer.echo(msg, err=True))
    try:
        report = compare(cfg, log=log)
    except (LlamaliteError, RuntimeError) as e:
        raise fail(str(e))
    path = save(report, cfg.out_dir)
    typer.echo(_json.dumps(report, indent=1) if json else format_table(report))
    typer.echo(f"written: {path}", err=True)
