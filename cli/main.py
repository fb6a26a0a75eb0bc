"""The `llamalite` command: pull, list (more commands register in this app)."""
from __future__ import annotations

import sys

import typer

from ..errors import LlamaliteError
from ..registry import MODELS, cache_dir, list_cached, pull as _pull

app = typer.Typer(
    help="llamalite: run quantized GGUF language models on the CPU.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def fail(message: str) -> "typer.Exit":
    """Print a one-line error (no traceback) and return the exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=1)


class _Progress:
    """A one-line progress display on stderr."""

    def __init__(self) -> None:
        self.stage = ""

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self.stage:
            if self.stage:
                sys.stderr.write("\n")
            self.stage = stage
        if total:
            pct = 100.0 * done / total
            sys.stderr.write(f"\r{stage}: {done / 1e6:7.1f} / {total / 1e6:.1f} MB ({pct:5.1f}%)")
        elif done:
            sys.stderr.write(f"\r{stage}: {done / 1e6:7.1f} MB")   # size not known (yet)
        else:
            sys.stderr.write(f"\r{stage} ...")
        sys.stderr.flush()

    def close(self) -> None:
        if self.stage:
            sys.stderr.write("\n")
            sys.stderr.flush()


@app.command()
def pull(name: str = typer.Argument(..., help=f"Model name: {', '.join(MODELS)}"),
         force: bool = typer.Option(False, "--force", help="Download again even if cached.")) -> None:
    """Fetch a model by name into the local cache (once) and print its path."""
    progress = _Progress()
    try:
        path = _pull(name, force=force, progress=progress)
    except LlamaliteError as e:
        progress.close()
        raise fail(str(e))
    progress.close()
    typer.echo(str(path))


@app.command("list")
def list_models() -> None:
    """Show the models in the local cache with their sizes."""
    cached = {name: (path, size) for name, path, size in list_cached()}
    typer.echo(f"cache: {cache_dir()}")
    for name, spec in MODELS.items():
        if name in cached:
            path, size = cached[name]
            typer.echo(f"  {name:<14} {size / 1e6:8.1f} MB  {path}")
        else:
            typer.echo(f"  {name:<14} {'-':>8}     (not pulled: llamalite pull {name})")


def main() -> None:
    app()


# Command modules register on `app` (one import line each).
from . import info  # noqa: E402,F401
from . import run  # noqa: E402,F401
from . import serve  # noqa: E402,F401
from . import bench  # noqa: E402,F401
from . import quantize  # noqa: E402,F401
from . import imatrix  # noqa: E402,F401

if __name__ == "__main__":
    # Under `python -m llamalite.cli.main` this file runs as __main__, but the command
    # modules register on `app` of the importable llamalite.cli.main: run that one.
    from llamalite.cli.main import main as _main
    _main()
