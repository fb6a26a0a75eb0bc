"""`llamalite imatrix MODEL --text FILE -o imatrix.gguf`: an importance matrix for quantize."""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Optional

import typer

from ..errors import LlamaliteError
from ..gguf import GGUFError
from ..quant.imatrix import ImatrixInputError, collect
from ..quant.imatrix_file import save_dat, save_gguf
from .main import app, fail


@app.command()
def imatrix(
    model: Path = typer.Argument(..., metavar="MODEL.gguf", help="GGUF model to run (best: the F16/BF16 one you will quantize)."),
    text: Path = typer.Option(..., "--text", "-f", help="Calibration text (UTF-8)."),
    output: Path = typer.Option(Path("imatrix.gguf"), "--output", "-o",
                                help="Output file: llama.cpp's GGUF imatrix format, or the legacy "
                                     "format when the name ends in .dat."),
    chunk_size: int = typer.Option(512, "--chunk-size", "-c", min=1,
                                   help="Tokens per chunk (each chunk starts from an empty cache)."),
    chunks: Optional[int] = typer.Option(None, "--chunks", min=1, help="Use at most this many chunks."),
    threads: Optional[int] = typer.Option(None, "--threads", "-t", min=1, max=1024,
                                          help="Threads (default: the physical cores)."),
) -> None:
    """Sum the squared activations entering each layer weight over a text (llama-imatrix)."""
    try:
        body = text.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise fail(f"cannot read --text {text}: {getattr(e, 'strerror', None) or e}")

    def progress(i: int, n: int) -> None:
        sys.stderr.write(f"\rchunk {i}/{n}")
        if i == n:
            sys.stderr.write("\n")
        sys.stderr.flush()

    try:
        got = collect(model, body, chunk_size=chunk_size, n_chunks=chunks, n_threads=threads,
                      progress=progress)
        folder = output.parent if str(output.parent) else Path(".")
        fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".part", dir=folder)
        os.close(fd)
        try:
            if output.suffix == ".dat":
                save_dat(tmp, got.sums, got.counts, chunk_count=got.n_chunks,
                         chunk_size=got.chunk_size, dataset=str(text))
            else:
                save_gguf(tmp, got.sums, got.counts, chunk_count=got.n_chunks,
                          chunk_size=got.chunk_size, datasets=[str(text)])
            os.chmod(tmp, 0o644)
            os.replace(tmp, output)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except (ImatrixInputError, GGUFError, LlamaliteError, ValueError) as e:
        raise fail(str(e))
    except FileNotFoundError as e:
        raise fail(f"{e.filename}: no such file")
    except OSError as e:
        raise fail(f"cannot write {output}: {e.strerror or e}")
    typer.echo(f"wrote {output}: {len(got.sums)} weights, {got.n_chunks} chunks of {chunk_size} tokens")
