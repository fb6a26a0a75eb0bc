"""`llamalite quantize IN.gguf OUT.gguf TYPE`: a quantized copy of a GGUF model."""
from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path
from typing import Optional

import typer

from ..errors import LlamaliteError
from ..gguf import GGUFError, open_gguf
from ..quant.imatrix_file import ImatrixError, load as load_imatrix
from ..quant.plan import ALIASES, FILE_TYPES, Options, PlanError, tensor_type, type_name
from ..quant.quantize import (Progress, QuantizeError, RequantizeWarning, bits_per_weight,
                              imatrix_requirement, plan_for, quantize as run_quantize, summary)
from .main import app, fail

_TYPES = ", ".join(list(FILE_TYPES) + [f"{a} (= {m})" for a, m in ALIASES.items()])


def _mb(n: int) -> str:
    return f"{n / 2**20:.2f} MiB"


class _Bar:
    """tensor n of N, bytes converted, ETA: one line on stderr, redrawn in place."""

    def __init__(self) -> None:
        self.last = 0.0

    def __call__(self, p: Progress) -> None:
        now = time.perf_counter()
        if p.index < p.n_tensors and now - self.last < 0.2:
            return
        self.last = now
        frac = p.bytes_done / p.bytes_total if p.bytes_total else 1.0
        eta = p.elapsed_s * (1 - frac) / frac if frac > 0 else 0.0
        bar = "#" * int(24 * frac)
        sys.stderr.write(f"\r[{bar:<24}] tensor {p.index}/{p.n_tensors} "
                         f"{p.bytes_done / 2**20:8.1f}/{p.bytes_total / 2**20:.1f} MiB "
                         f"ETA {eta:5.1f} s  {p.name[:40]:<40}")
        if p.index == p.n_tensors:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _print_plan(plan) -> None:
    for s in plan.steps:
        shape = "x".join(str(d) for d in s.shape)
        note = "  (row length does not fit the mix's type: fallback)" if s.fallback else ""
        typer.echo(f"{s.name:<36} {shape:>16}  {type_name(s.type_in):>6} -> "
                   f"{type_name(s.type_out):<6} {_mb(s.bytes_out):>12}{note}")


def _print_summary(plan) -> None:
    typer.echo(f"{'type':<8} {'tensors':>7} {'before':>12} {'after':>12} {'bits/weight':>11}")
    for name, n, b_in, b_out, n_el in summary(plan):
        typer.echo(f"{name:<8} {n:>7} {_mb(b_in):>12} {_mb(b_out):>12} "
                   f"{bits_per_weight(b_out, n_el):>11.2f}")
    typer.echo(f"{'total':<8} {len(plan.steps):>7} {_mb(plan.bytes_in):>12} "
               f"{_mb(plan.bytes_out):>12} {bits_per_weight(plan.bytes_out, plan.n_elements):>11.2f}"
               f"   ({bits_per_weight(plan.bytes_in, plan.n_elements):.2f} before)")


@app.command()
def quantize(
    src: Path = typer.Argument(..., metavar="IN.gguf", help="Input GGUF model (F32, F16 or BF16; a quantized "
                               "input is requantized, with a warning)."),
    dst: Path = typer.Argument(..., metavar="OUT.gguf", help="Output GGUF file (written whole or not at all)."),
    qtype: str = typer.Argument(..., metavar="TYPE", help=f"Type or mix, as llama-quantize: {_TYPES}."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (tensor, shape, "
                                 "type in -> type out) and the output size; write nothing."),
    output_tensor_type: Optional[str] = typer.Option(None, "--output-tensor-type",
                                                     help="Type of output.weight (and of tied embeddings)."),
    token_embedding_type: Optional[str] = typer.Option(None, "--token-embedding-type",
                                                       help="Type of token_embd.weight."),
    leave_output_tensor: bool = typer.Option(False, "--leave-output-tensor",
                                             help="Keep output.weight as it is in the input."),
    pure: bool = typer.Option(False, "--pure", help="The mix's default type for every "
                              "quantizable tensor (no per-tensor choices)."),
    imatrix: Optional[Path] = typer.Option(None, "--imatrix", help="Importance matrix "
                                           "(llama.cpp GGUF or legacy .dat, e.g. from llamalite imatrix)."),
    threads: Optional[int] = typer.Option(None, "--threads", "-t", min=1, max=1024,
                                          help="Threads that quantize the rows of a tensor "
                                               "(default: the physical cores; the output is the same)."),
) -> None:
    """Write a quantized copy of a GGUF model with llama-quantize's per-tensor choices."""
    try:
        opts = Options(
            output_tensor_type=tensor_type(output_tensor_type) if output_tensor_type else None,
            token_embedding_type=tensor_type(token_embedding_type) if token_embedding_type else None,
            leave_output_tensor=leave_output_tensor, pure=pure, has_imatrix=imatrix is not None)
        im = load_imatrix(imatrix) if imatrix is not None else None
        if dry_run:
            with open_gguf(src) as g:
                plan = plan_for(g, qtype, opts)
            _print_plan(plan)
            _print_summary(plan)
            if imatrix_requirement(plan) and im is None:
                typer.echo(f"warning: {plan.file_type.name} needs --imatrix to be written", err=True)
            return
        if threads is None:
            from .. import _core
            threads = _core.default_thread_count()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RequantizeWarning)
            plan = run_quantize(src, dst, qtype, opts=opts, imatrix=im, imatrix_path=imatrix,
                                n_threads=threads, progress=_Bar())
        for w in caught:
            typer.echo(f"warning: {w.message}", err=True)
    except (PlanError, QuantizeError, ImatrixError, GGUFError, LlamaliteError) as e:
        raise fail(str(e))
    except FileNotFoundError as e:
        raise fail(f"{e.filename}: no such file")
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        raise fail(f"interrupted; {dst} was not written")
    _print_summary(plan)
    typer.echo(f"wrote {dst} ({plan.file_type.name})")
