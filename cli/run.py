"""`llamalite run MODEL`: chat with a model in the terminal, or answer one prompt (-p).

    llamalite run smollm2-135m                       # interactive chat (/reset, /exit)
    llamalite run smollm2-135m -p "Why is the sky blue?"   # one answer on stdout
    echo "Once upon a time" | llamalite run gemma3-270m --raw -p -   # plain completion

Only the model's text goes to stdout; the pull progress, prompts, notices and
--verbose timings go to stderr, so `-p` is usable in pipes.
"""
from __future__ import annotations

import sys
import time
from typing import Iterator, Optional

import typer

from ..errors import LlamaliteError
from ..registry import resolve_model
from .main import _Progress, app, fail

HELP = "commands: /reset (forget the conversation), /exit (or Ctrl-D); Ctrl-C stops a reply"


@app.command()
def run(
    model: str = typer.Argument(..., help="A GGUF file or a model name (pulled on first use)."),
    prompt: Optional[str] = typer.Option(None, "-p", "--prompt",
                                         help="Answer this prompt once and exit ('-': read stdin)."),
    raw: bool = typer.Option(False, "--raw", help="Plain text completion, no chat template."),
    system: Optional[str] = typer.Option(None, "--system", help="A system message for the chat."),
    # --- sampling ---
    temp: float = typer.Option(0.8, "--temp", help="Temperature (0: greedy)."),
    top_k: int = typer.Option(40, "--top-k", help="Keep the k most likely tokens (0: off)."),
    top_p: float = typer.Option(0.95, "--top-p", help="Nucleus sampling mass (1: off)."),
    min_p: float = typer.Option(0.05, "--min-p", help="Minimum probability relative to the best."),
    repeat_penalty: float = typer.Option(1.0, "--repeat-penalty", help="Repetition penalty (1: off)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (default: random)."),
    max_tokens: int = typer.Option(512, "-n", "--max-tokens", help="Most tokens per reply."),
    # --- compute ---
    threads: Optional[int] = typer.Option(None, "-t", "--threads", help="CPU threads."),
    ctx_size: int = typer.Option(4096, "-c", "--ctx-size", help="Context length in tokens."),
    verbose: bool = typer.Option(False, "--verbose", help="Print load time and speeds to stderr."),
) -> None:
    """Chat with a model interactively, or answer one prompt with -p."""
    t_open = time.perf_counter()
    from ..llm import LLM

    progress = _Progress()
    try:
        path = resolve_model(model, progress=progress)
        progress.close()
        llm = LLM(path, n_ctx=ctx_size, n_threads=threads, seed=seed)
    except LlamaliteError as e:
        progress.close()
        raise fail(str(e))
    except (ValueError, OSError) as e:
        raise fail(f"cannot load {model}: {e}")
    llm.model_name = model
    sampling = dict(temperature=temp, top_k=top_k, top_p=top_p, min_p=min_p,
                    repeat_penalty=repeat_penalty, max_tokens=max_tokens)
    try:
        llm.sampling_params(**sampling)
    except (TypeError, ValueError) as e:
        raise fail(str(e))
    session = _Session(llm, sampling, raw=raw, system=system, verbose=verbose, t_open=t_open)
    if prompt is not None:
        text = sys.stdin.read() if prompt == "-" else prompt
        try:
            ok = session.answer(text)
        except KeyboardInterrupt:
            sys.stdout.write("\n")
            raise typer.Exit(code=130)
        if not ok:
            raise typer.Exit(code=1)
        return
    session.interactive()


class _Session:
    """One terminal session: the conversation so far and how to print replies."""

    def __init__(self, llm, sampling: dict, *, raw: bool, system: Optional[str], verbose: bool,
                 t_open: float) -> None:
        self.llm = llm
        self.sampling = sampling
        self.raw = raw
        self.system = system
        self.verbose = verbose
        self.t_open = t_open
        self.first_piece_s = 0.0
        self.messages: list[dict] = []
        self.reset()

    def reset(self) -> None:
        self.messages = [{"role": "system", "content": self.system}] if self.system else []

    def answer(self, text: str) -> bool:
        """Stream the reply to `text` to stdout; False (and a notice) if it could not run."""
        if self.raw:
            pieces = self._raw_pieces(text)
        else:
            self.messages.append({"role": "user", "content": text})
            pieces = self._chat_pieces()
        reply: list[str] = []
        try:
            for piece in pieces:
                if not reply and self.t_open is not None:
                    self.first_piece_s = time.perf_counter() - self.t_open
                reply.append(piece)
                sys.stdout.write(piece)
                sys.stdout.flush()
        except ValueError as e:                  # the conversation no longer fits n_ctx
            if not self.raw:
                self.messages.pop()
            _note(f"error: {e}" + ("" if self.raw else " (use /reset to start over)"))
            return False
        except KeyboardInterrupt:
            pieces.close()
            sys.stdout.write("\n")
            sys.stdout.flush()
            _note("[reply stopped]")
            self._keep(reply)
            raise
        sys.stdout.write("\n")
        sys.stdout.flush()
        self._keep(reply)
        if self.verbose:
            _note(f"load {self.llm.load_s * 1e3:.0f} ms | " + self.llm.timings.summary()
                  + (f" | open to first token {self.first_piece_s * 1e3:.0f} ms"
                     if self.t_open is not None else ""))
        self.t_open = None                        # only the first reply measures the open time
        return True

    def interactive(self) -> None:
        tty = sys.stdin.isatty()
        if tty:
            _note(HELP)
        while True:
            if tty:
                sys.stderr.write("> ")
                sys.stderr.flush()
            try:
                line = sys.stdin.readline()
            except KeyboardInterrupt:
                sys.stderr.write("\n")
                return
            if not line:                          # end of input
                return
            line = line.rstrip("\n")
            command = line.strip()
            if command in ("/exit", "/quit"):
                return
            if command == "/reset":
                self.reset()
                _note("[conversation reset]")
                continue
            if command in ("/help", "/?"):
                _note(HELP)
                continue
            if not command:
                continue
            try:
                self.answer(line)
            except KeyboardInterrupt:
                continue

    def _keep(self, reply: list[str]) -> None:
        if not self.raw:
            self.messages.append({"role": "assistant", "content": "".join(reply)})

    def _chat_pieces(self) -> Iterator[str]:
        for chunk in self.llm.chat(self.messages, stream=True, **self.sampling):
            text = chunk["choices"][0]["delta"].get("content") if chunk["choices"] else None
            if text:
                yield text

    def _raw_pieces(self, text: str) -> Iterator[str]:
        for chunk in self.llm.generate(text, stream=True, **self.sampling):
            if chunk.text:
                yield chunk.text


def _note(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
