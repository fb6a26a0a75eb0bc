"""`llamalite info MODEL`: what a GGUF file holds, read from its header only."""
from __future__ import annotations

import json as _json
from typing import Any

import typer

from ..errors import LlamaliteError
from ..gguf import open_gguf
from ..model_info import ARCH_FAMILIES, ModelSummary, summarize, tensor_table
from ..registry import resolve_model
from .main import app, fail


def _human(n: float, unit: str = "") -> str:
    for suffix in ("", "K", "M", "G", "T"):
        if abs(n) < 1000 or suffix == "T":
            return f"{n:.1f}{suffix}{unit}" if suffix else f"{int(n)}{unit}"
        n /= 1000
    return str(n)


def _show_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if hasattr(v, "tolist"):
        items = v.tolist()
        shown = ", ".join(str(x) for x in items[:8])
        return f"[{shown}{', ...' if len(items) > 8 else ''}] ({len(items)} values)"
    if isinstance(v, list):
        return f"[{len(v)} arrays]"
    return str(v)


def _print_summary(s: ModelSummary) -> None:
    echo = typer.echo
    echo(f"model          {s.path}")
    echo(f"file           {s.file_size / 1e6:.1f} MB, GGUF v{s.gguf_version}, "
         f"{s.n_tensors} tensors")
    if s.name:
        echo(f"name           {s.name}")
    echo(f"architecture   {s.architecture or '(not set)'}")
    echo(f"family         {s.family or 'not supported by llamalite (it runs: ' + ', '.join(ARCH_FAMILIES) + ')'}")
    echo(f"parameters     {_human(s.n_params)} ({s.n_params:,})")
    ft = f"{s.file_type}, " if s.file_type else ""
    echo(f"quantization   {ft}{s.bits_per_weight:.2f} bits per weight")
    if s.n_expert:
        echo(f"experts        {s.n_expert} per layer, {s.n_expert_used} used per token")
    echo(f"hyperparameters ({s.architecture}.*):")
    for k, v in s.hyperparameters.items():
        echo(f"  {k:<38} {_show_value(v)}")
    echo("tensor types:")
    echo(f"  {'type':<8} {'tensors':>7} {'parameters':>14} {'bytes':>14} {'share':>6}")
    for u in s.type_mix:
        share = 100.0 * u.nbytes / s.tensor_bytes if s.tensor_bytes else 0.0
        echo(f"  {u.type:<8} {u.n_tensors:>7} {u.n_params:>14,} {u.nbytes:>14,} {share:>5.1f}%")
    if s.tokenizer_model:
        pre = f", pre={s.tokenizer_pre}" if s.tokenizer_pre else ""
        merges = f", {s.n_merges:,} merges" if s.n_merges is not None else ""
        vocab = f"{s.vocab_size:,}" if s.vocab_size is not None else "no"
        echo(f"tokenizer      {s.tokenizer_kind} (model={s.tokenizer_model}{pre}), "
             f"{vocab} tokens{merges}")
        if s.special_tokens:
            echo("special tokens " + ", ".join(f"{k}={v}" for k, v in s.special_tokens.items()))
    else:
        echo("tokenizer      (none in file)")
    echo(f"chat template  {'yes' if s.has_chat_template else 'no'}")


def _print_tensors(rows: list[dict]) -> None:
    echo = typer.echo
    width = max([len(r["name"]) for r in rows] + [4])
    echo(f"{'name':<{width}}  {'type':<7} {'shape':<20} {'bytes':>13} {'offset':>13}")
    for r in rows:
        shape = " x ".join(str(d) for d in r["shape"])
        echo(f"{r['name']:<{width}}  {r['type']:<7} {shape:<20} {r['nbytes']:>13,} "
             f"{r['offset']:>13,}")


@app.command()
def info(model: str = typer.Argument(..., help="A GGUF file or a registry name."),
         tensors: bool = typer.Option(False, "--tensors", help="Also list every tensor."),
         json: bool = typer.Option(False, "--json", help="Print one JSON object instead.")
         ) -> None:
    """Show a model's architecture, size, hyperparameters, quantization and tokenizer."""
    try:
        path = resolve_model(model)
    except LlamaliteError as e:
        raise fail(str(e))
    try:
        with open_gguf(path) as g:
            summary = summarize(g)
            rows = tensor_table(g) if tensors else None
    except LlamaliteError as e:
        raise fail(f"{path}: {e}")
    except OSError as e:
        raise fail(f"cannot read {model}: {e.strerror or e}")
    if json:
        out = summary.to_dict()
        if rows is not None:
            out["tensors"] = rows
        typer.echo(_json.dumps(out, ensure_ascii=False))
        return
    _print_summary(summary)
    if rows is not None:
        typer.echo("")
        _print_tensors(rows)
