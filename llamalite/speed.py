"""A model's own speed, measured the way llama-bench measures it (`llamalite bench`).

One repetition runs in a fresh process (`python -m llamalite.speed ...`, which
prints one JSON object), so load time and peak RSS are honest: nothing is
cached in the interpreter. Each repetition does:

- load: Model.load and a KV cache for the run;
- load -> first token: a one-token prompt right after load;
- pp: a prompt of n_prompt random token ids processed in one batch;
- tg: n_gen tokens generated one at a time from those ids (the next input is a
  fixed token, so sampling is not part of the figure);
- peak RSS of the process.

With parallel counts (--parallel 1,4,8) a separate process per repetition
measures aggregate generation instead: for each P, P sequences with short
distinct prompts (random token ids, 6-9 tokens) are prefilled together, then
n_gen decode steps follow, each ONE Model.forward (the call the batching
engine's step makes) carrying one token of every sequence; the next input of
each sequence is the argmax of its logits. Only the decode steps are timed:
aggregate tok/s = P * n_gen / (time from the first decode step to the end of
the last, greedy argmax included).

Several thread counts give one table each; every configuration's repetitions
are interleaved with the others' (A B C ... then ... C B A), so slow drift of a
shared machine hits them alike. run() takes further engines (bench/compare.py
adds llama.cpp); the prompts come from prompt_ids() and parallel_prompts(),
which import nothing but numpy, so another engine's worker can load this file
by path and give its engine the same token ids.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

METRICS = ("load_s", "first_token_s", "pp_tok_s", "tg_tok_s", "peak_rss_mb")
SEED = 1234


@dataclass
class Config:
    models: list[str]
    threads: list[int] = field(default_factory=lambda: [2])  # one full table per count
    reps: int = 5
    n_prompt: int = 512
    n_gen: int = 128
    # Sequence counts for aggregate parallel generation ([] = skip); 1 is the scaling base.
    parallel: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if isinstance(self.threads, int):
            self.threads = [self.threads]
        for name, values in (("threads", self.threads), ("parallel", self.parallel)):
            if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
                raise ValueError(f"{name} must be positive integers, got {values!r}")
        if not self.threads:
            raise ValueError("threads: give at least one thread count")
        for name in ("reps", "n_prompt", "n_gen"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.parallel and 1 not in self.parallel:
            self.parallel = [1, *self.parallel]   # the single stream is the scaling base


def parse_int_list(text: str, option: str) -> list[int]:
    """'1,2' -> [1, 2]: a comma-separated list of distinct positive integers, in order."""
    out: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise ValueError(f"{option}: expected comma-separated positive integers "
                             f"such as 1,2 but got {text!r}")
        if int(part) not in out:
            out.append(int(part))
    return out


def parse_parallel(text: Optional[str], default: list[int]) -> list[int]:
    """--parallel: None -> default; '0', 'none' or 'off' -> [] (skip); else a list with 1."""
    if text is None:
        return list(default)
    if str(text).strip().lower() in ("0", "none", "off", ""):
        return []
    values = parse_int_list(text, "--parallel")
    return values if 1 in values else [1, *values]


# --- the prompts (numpy only: other engines' workers load this file by path) ---


def prompt_ids(n_vocab: int, n: int, seed: int = SEED) -> np.ndarray:
    """n random token ids (int64), away from the ends of the vocabulary."""
    return np.random.default_rng(seed).integers(10, n_vocab - 10, n)


def parallel_prompts(n_seq: int, n_vocab: int, seed: int = SEED) -> list[list[int]]:
    """n_seq short distinct prompts of random token ids (lengths 6-9, one rng per sequence)."""
    out = []
    for s in range(n_seq):
        rng = np.random.default_rng([seed, s])
        out.append(rng.integers(10, n_vocab - 10, 6 + s % 4).tolist())
    return out


def rss_peak_mb() -> float:
    """This process's peak resident memory in MiB (Windows: the peak working set)."""
    if sys.platform == "win32":
        return _windows_peak_working_set() / 2**20
    import resource  # POSIX only
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024.0  # macOS: bytes; Linux: KiB


def _windows_peak_working_set() -> int:
    import ctypes
    from ctypes import wintypes

    class Counters(ctypes.Structure):  # PROCESS_MEMORY_COUNTERS
        _fields_ = [("cb", wintypes.DWORD), ("PageFaultCount", wintypes.DWORD),
                    *((name, ctypes.c_size_t) for name in (
                        "PeakWorkingSetSize", "WorkingSetSize", "QuotaPeakPagedPoolUsage",
                        "QuotaPagedPoolUsage", "QuotaPeakNonPagedPoolUsage", "QuotaNonPagedPoolUsage",
                        "PagefileUsage", "PeakPagefileUsage"))]

    kernel32 = ctypes.WinDLL("kernel32")
    kernel32.GetCurrentProcess.restype = wintypes.HANDLE
    counters = Counters()
    counters.cb = ctypes.sizeof(Counters)
    if not kernel32.K32GetProcessMemoryInfo(kernel32.GetCurrentProcess(), ctypes.byref(counters),
                                            counters.cb):
        raise ctypes.WinError()
    return counters.PeakWorkingSetSize


def parallel_result(n_seq: int, n_gen: int, decode_s: float) -> dict:
    return dict(tok_s=n_seq * n_gen / decode_s, decode_s=decode_s, n_tokens=n_seq * n_gen)


# --- one repetition, in this process ---


def measure(model_path: str, threads: int, n_prompt: int, n_gen: int, seed: int = SEED) -> dict:
    """Load, load -> first token, pp and tg of one fresh model (see the module docstring)."""
    from .model import Model

    t0 = time.perf_counter()
    model = Model.load(model_path, n_threads=threads)
    block = 16
    n_ctx = n_prompt + n_gen + 16
    n_blocks = (n_ctx + block - 1) // block
    kv = model.new_kv_cache(n_blocks, block)
    load_s = time.perf_counter() - t0
    table = np.arange(n_blocks, dtype=np.int32)[None, :]
    prompt = prompt_ids(model.n_vocab, n_prompt, seed).astype(np.int32)

    def step(tokens: np.ndarray, start: int) -> np.ndarray:
        n = len(tokens)
        return model.forward(kv, tokens, np.arange(start, start + n, dtype=np.int32),
                             np.zeros(n, np.int32), table, np.array([n - 1], np.int32))

    step(prompt[:1], 0)
    first_s = time.perf_counter() - t0
    t = time.perf_counter()
    step(prompt, 0)
    pp_s = time.perf_counter() - t
    t = time.perf_counter()
    for i in range(n_gen):
        step(prompt[i % n_prompt: i % n_prompt + 1], n_prompt + i)
    tg_s = time.perf_counter() - t
    return dict(load_s=load_s, first_token_s=first_s, pp_tok_s=n_prompt / pp_s,
                tg_tok_s=n_gen / tg_s, peak_rss_mb=rss_peak_mb())


def lite_parallel(model, prompts: list[list[int]], n_gen: int,
                  block: int = 16) -> tuple[list[list[int]], float]:
    """Greedy generation of n_gen tokens for every prompt at once.

    The prompts (all but their last token) are prefilled in one forward call; then
    each of the n_gen decode steps is one Model.forward over one token per sequence
    (the last prompt token first), and each sequence's next token is the argmax of
    its logits row. Returns (tokens [P][n_gen], seconds spent in the decode steps)."""
    n_seq = len(prompts)
    per_seq = max(len(p) for p in prompts) + n_gen
    blocks_per_seq = (per_seq + block - 1) // block
    kv = model.new_kv_cache(n_seq * blocks_per_seq, block)
    # [P, blocks_per_seq]: sequence s owns blocks s*blocks_per_seq ...
    tables = np.arange(n_seq * blocks_per_seq, dtype=np.int32).reshape(n_seq, blocks_per_seq)
    pre_tok = np.concatenate([np.asarray(p[:-1], np.int32) for p in prompts])
    pre_pos = np.concatenate([np.arange(len(p) - 1, dtype=np.int32) for p in prompts])
    pre_seq = np.concatenate([np.full(len(p) - 1, s, np.int32) for s, p in enumerate(prompts)])
    model.forward(kv, pre_tok, pre_pos, pre_seq, tables, np.array([len(pre_tok) - 1], np.int32))
    tokens = np.array([p[-1] for p in prompts], np.int32)          # [P] next input per sequence
    positions = np.array([len(p) - 1 for p in prompts], np.int32)  # [P]
    seq_ids = np.arange(n_seq, dtype=np.int32)                     # [P]
    rows = np.arange(n_seq, dtype=np.int32)                        # [P] logits for every token
    out = np.empty((n_gen, n_seq), np.int32)                       # [n_gen, P]
    t = time.perf_counter()
    for i in range(n_gen):
        logits = model.forward(kv, tokens, positions + i, seq_ids, tables, rows)  # [P, n_vocab]
        tokens = np.argmax(logits, axis=1).astype(np.int32)
        out[i] = tokens
    decode_s = time.perf_counter() - t
    return out.T.tolist(), decode_s


def measure_parallel(model_path: str, threads: int, counts: list[int], n_gen: int,
                     seed: int = SEED) -> dict:
    """Aggregate decode tok/s of P sequences at once, for each P in counts."""
    from .model import Model

    model = Model.load(model_path, n_threads=threads)
    res = {}
    for n_seq in counts:
        _, decode_s = lite_parallel(model, parallel_prompts(n_seq, model.n_vocab, seed), n_gen)
        res[str(n_seq)] = parallel_result(n_seq, n_gen, decode_s)
    return dict(parallel=res, peak_rss_mb=rss_peak_mb())


# --- repetitions in fresh processes, interleaved ---

# An engine turns (model path, threads, config, parallel?) into the command of one
# repetition's worker, which prints one JSON object as its last line.
CommandFn = Callable[[Path, int, Config, bool], list]


def worker_command(model: Path, threads: int, cfg: Config, parallel: bool) -> list:
    """The command of one llamalite repetition (this module as a worker)."""
    cmd = [sys.executable, "-m", "llamalite.speed", "--model", str(model),
           "--threads", str(threads), "--n-prompt", str(cfg.n_prompt), "--n-gen", str(cfg.n_gen)]
    if parallel:
        cmd += ["--parallel", ",".join(map(str, cfg.parallel))]
    return cmd


def run_worker(cmd: list, engine: str, model: Path) -> dict:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    # cwd "/": no folder named llamalite in the current directory can shadow the package
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd="/")
    if res.returncode != 0:
        raise RuntimeError(f"{engine} worker failed on {model.name}: {res.stderr.strip()[-800:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def summary(values: list[float]) -> dict:
    return dict(median=statistics.median(values), min=min(values), max=max(values), n=len(values))


def engine_stats(runs: list[dict]) -> dict:
    return {m: summary([x[m] for x in runs]) for m in METRICS}


def parallel_stats(runs: dict[str, list[dict]], counts: list[int]) -> dict:
    """Per P: each engine's aggregate tok/s and its scaling (median at P / median at P=1)."""
    out: dict = {}
    for p in counts:
        row: dict = {}
        for engine, reps in runs.items():
            agg = summary([x["parallel"][str(p)]["tok_s"] for x in reps])
            base = statistics.median(x["parallel"]["1"]["tok_s"] for x in reps)
            row[engine] = dict(tok_s=agg, scaling=agg["median"] / base)
        out[str(p)] = row
    return out


def run(cfg: Config, engines: Optional[dict[str, CommandFn]] = None,
        log: Callable[[str], None] = print) -> dict:
    """Every configuration cfg.reps times, interleaved, summarised per model and thread
    count: {models: {name: {path, by_threads: {threads: {engines, parallel?}}}}}."""
    from .registry import resolve_model

    engines = engines or {"llamalite": worker_command}
    report = dict(threads=cfg.threads, parallel=cfg.parallel, reps=cfg.reps,
                  n_prompt=cfg.n_prompt, n_gen=cfg.n_gen,
                  when=time.strftime("%Y-%m-%dT%H:%M:%S"), models={})
    tasks = [(t, engine, par) for t in cfg.threads
             for par in ([False, True] if cfg.parallel else [False]) for engine in engines]
    for name in cfg.models:
        path = resolve_model(name).resolve()   # absolute: the workers run in another folder
        runs: dict[tuple[int, str, bool], list[dict]] = {}
        for r in range(cfg.reps):
            # A B C ... then ... C B A: slow drift of the machine hits every configuration alike.
            for threads, engine, par in (tasks if r % 2 == 0 else tasks[::-1]):
                res = run_worker(engines[engine](path, threads, cfg, par), engine, path)
                runs.setdefault((threads, engine, par), []).append(res)
                what = (", ".join(f"P={p} {x['tok_s']:.1f}" for p, x in res["parallel"].items())
                        + " tok/s aggregate") if par else \
                    f"pp {res['pp_tok_s']:.1f} tok/s, tg {res['tg_tok_s']:.1f} tok/s"
                log(f"  {path.name} rep {r + 1}/{cfg.reps} {engine} {threads} thr: {what}")
        entry: dict = dict(path=str(path), by_threads={})
        for threads in cfg.threads:
            per: dict = dict(engines={e: engine_stats(runs[(threads, e, False)]) for e in engines})
            if cfg.parallel:
                per["parallel"] = parallel_stats({e: runs[(threads, e, True)] for e in engines},
                                                 cfg.parallel)
            entry["by_threads"][str(threads)] = per
        report["models"][name] = entry
    return report


# --- the table ---


def cell(x: dict, fmt: str = "{:.1f}") -> str:
    """median [min-max]"""
    return f"{fmt.format(x['median'])} [{fmt.format(x['min'])}-{fmt.format(x['max'])}]"


def render(header: list[str], rows: list, n_left: int = 1) -> list[str]:
    """A text table whose columns are as wide as their widest cell plus a gap of two,
    so no cell ever runs into the next: the first n_left columns left-aligned, the
    rest right-aligned. A row that is a str is a note, indented to the second column."""
    cells = [header, *(r for r in rows if not isinstance(r, str))]
    widths = [max(len(r[i]) for r in cells) + 2 for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "".join(f"{c:<{w}}" if i < n_left else f"{c:>{w}}"
                       for i, (c, w) in enumerate(zip(row, widths)))

    return [" " * widths[0] + r if isinstance(r, str) else line(r) for r in [header, *rows]]


def format_table(report: dict) -> str:
    """The report of run() as text: per thread count, the speed table and, with
    parallel counts, the aggregate generation table."""
    lines = [f"reps={report['reps']} (median [min-max])  pp={report['n_prompt']} tokens  "
             f"tg={report['n_gen']} tokens"]
    for threads in report["threads"]:
        rows = []
        for name, entry in report["models"].items():
            s = entry["by_threads"][str(threads)]["engines"]["llamalite"]
            rows.append([name, cell(s["pp_tok_s"]), cell(s["tg_tok_s"]),
                         f"{s['first_token_s']['median']:.3f}", f"{s['peak_rss_mb']['median']:.0f}"])
        lines += ["", f"threads={threads}",
                  *render(["model", "pp tok/s", "tg tok/s", "load->1st s", "peak RSS MB"], rows)]
        if report.get("parallel"):
            rows = []
            for name, entry in report["models"].items():
                for p, row in entry["by_threads"][str(threads)].get("parallel", {}).items():
                    lite = row["llamalite"]
                    rows.append([name, p, cell(lite["tok_s"]), f"{lite['scaling']:.2f}x"])
            lines += ["", f"parallel generation, threads={threads}: aggregate tok/s of P sequences, "
                      f"{report['n_gen']} greedy tokens each, one forward per step (decode steps "
                      f"only); scaling = aggregate at P / at P=1",
                      *render(["model", "P", "tok/s", "scaling"], rows)]
    return "\n".join(lines)


# --- the worker ---


def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(prog="python -m llamalite.speed",
                                description="One repetition of `llamalite bench`; prints one JSON object.")
    p.add_argument("--model", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--n-prompt", type=int, default=512)
    p.add_argument("--n-gen", type=int, default=128)
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--parallel", type=lambda s: parse_int_list(s, "--parallel"), default=None,
                   help="comma-separated sequence counts: measure aggregate generation only")
    a = p.parse_args(argv)
    if a.parallel:
        res = measure_parallel(a.model, a.threads, a.parallel, a.n_gen, a.seed)
    else:
        res = measure(a.model, a.threads, a.n_prompt, a.n_gen, a.seed)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
