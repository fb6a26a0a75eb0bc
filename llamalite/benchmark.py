"""Side-by-side benchmark: llamalite against llama.cpp on the same GGUF file.

Each repetition runs in a fresh process (llamalite/bench_worker.py), the two
engines interleaved (A B B A ...), so load time and peak RSS are honest and slow
drift of a shared machine hits both alike. Beside the engines, the machine's
roofs are measured in the same run: read bandwidth on a buffer of the model's
size (decode streams every weight once per token) and the int8 dot-product peak
(prefill is matmul-bound). Each figure is reported as a fraction of its roof.

Several thread counts (threads=[1, 2]) give one full table each, every
configuration's repetitions interleaved with the others'. With parallel=[1, 4, 8]
a separate worker process per repetition also measures aggregate generation of P
sequences at once (decode steps only; see bench_worker.py) for both engines.

llama.cpp comes from llama-cpp-python installed in *another* environment (it is
never a dependency): pass its interpreter with --peer-python or the environment
variable LLAMALITE_PEER_PYTHON.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

WORKER = Path(__file__).with_name("bench_worker.py")
METRICS = ("load_s", "first_token_s", "pp_tok_s", "tg_tok_s", "peak_rss_mb")


@dataclass
class Config:
    models: list[str]
    threads: list[int] = field(default_factory=lambda: [2])  # one full table per count
    reps: int = 5
    n_prompt: int = 512
    n_gen: int = 128
    # Sequence counts for aggregate parallel generation ([] = skip); 1 is the scaling base.
    parallel: list[int] = field(default_factory=list)
    peer_python: Optional[str] = None
    out_dir: Path = field(default_factory=lambda: Path("bench/results"))

    def __post_init__(self) -> None:
        if isinstance(self.threads, int):
            self.threads = [self.threads]
        for name, values in (("threads", self.threads), ("parallel", self.parallel)):
            if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
                raise ValueError(f"{name} must be positive integers, got {values!r}")
        if not self.threads:
            raise ValueError("threads: give at least one thread count")
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


def _run_worker(python: str, engine: str, model: Path, cfg: Config, threads: int,
                parallel: bool = False) -> dict:
    cmd = [python, str(WORKER), "--engine", engine, "--model", str(model),
           "--threads", str(threads), "--n-prompt", str(cfg.n_prompt),
           "--n-gen", str(cfg.n_gen)]
    if parallel:
        cmd += ["--parallel", ",".join(map(str, cfg.parallel))]
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd="/")
    if res.returncode != 0:
        raise RuntimeError(f"{engine} worker failed on {model.name}: {res.stderr.strip()[-800:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def model_costs(path: Path) -> dict:
    """Weight bytes streamed per decoded token, and multiply-adds per prompt token.

    Decode computes logits for every token, so it reads every matmul weight, the
    output projection (or the tied token_embd) included. Prefill needs logits for
    its last row only, so the output projection is not part of its per-token work.
    """
    from .gguf import open_gguf

    with open_gguf(path) as g:
        output = "output.weight" if "output.weight" in g.tensors else "token_embd.weight"
        read_bytes = 0
        prompt_macs = 0
        for t in g.tensors.values():
            if len(t.shape) != 2:
                continue
            if t.name == "token_embd.weight" and output != t.name:
                continue  # a row gather, not a matmul
            read_bytes += t.nbytes
            if t.name != output:
                prompt_macs += t.shape[0] * t.shape[1]
    return dict(weight_bytes_per_token=read_bytes, macs_per_prompt_token=prompt_macs)


def measure_roofs(nbytes: int, threads: int, reps: int = 5) -> dict:
    """Read bandwidth (GB/s) on an nbytes buffer and int8 dot-product peak (GMAC/s)."""
    from . import _core

    bw = statistics.median(_core.bench_read_bandwidth(nbytes, threads, 3) for _ in range(reps))
    peak = statistics.median(_core.bench_int8_peak(threads) for _ in range(reps))
    return dict(read_gbps=bw, int8_gmacs=peak)


def _summary(values: list[float]) -> dict:
    return dict(median=statistics.median(values), min=min(values), max=max(values), n=len(values))


def _tasks(cfg: Config, engines: list[tuple[str, str]]) -> list[tuple[int, str, str, bool]]:
    """Every (threads, engine, python, parallel?) worker run of one repetition."""
    return [(t, engine, python, par) for t in cfg.threads for par in
            ([False, True] if cfg.parallel else [False]) for engine, python in engines]


def compare(cfg: Config, log=print) -> dict:
    """Run every configuration cfg.reps times, interleaved, and summarise (see format_table)."""
    from .registry import resolve_model

    engines = [("llamalite", sys.executable)]
    if cfg.peer_python:
        engines.append(("llamacpp", cfg.peer_python))
    report = dict(threads=cfg.threads, parallel=cfg.parallel, reps=cfg.reps,
                  n_prompt=cfg.n_prompt, n_gen=cfg.n_gen,
                  when=time.strftime("%Y-%m-%dT%H:%M:%S"), models={})
    for name in cfg.models:
        path = resolve_model(name)
        costs = model_costs(path)
        runs: dict[tuple[int, str, bool], list[dict]] = {}
        tasks = _tasks(cfg, engines)
        for r in range(cfg.reps):
            # A B C ... then ... C B A: slow drift of the machine hits every configuration alike.
            for threads, engine, python, par in (tasks if r % 2 == 0 else tasks[::-1]):
                res = _run_worker(python, engine, path, cfg, threads, parallel=par)
                runs.setdefault((threads, engine, par), []).append(res)
                what = (", ".join(f"P={p} {x['tok_s']:.1f}" for p, x in res["parallel"].items())
                        + " tok/s aggregate") if par else \
                    f"pp {res['pp_tok_s']:.1f} tok/s, tg {res['tg_tok_s']:.1f} tok/s"
                log(f"  {path.name} rep {r + 1}/{cfg.reps} {engine} {threads} thr: {what}")
        entry: dict = dict(path=str(path), costs=costs, by_threads={})
        for threads in cfg.threads:
            roofs = measure_roofs(costs["weight_bytes_per_token"], threads)
            per: dict = dict(roofs=roofs, engines={})
            for engine, _ in engines:
                per["engines"][engine] = _engine_stats(runs[(threads, engine, False)], costs, roofs)
            if cfg.parallel:
                per["parallel"] = _parallel_stats(
                    {e: runs[(threads, e, True)] for e, _ in engines}, cfg.parallel)
            entry["by_threads"][str(threads)] = per
        report["models"][name] = entry
    return report


def _engine_stats(runs: list[dict], costs: dict, roofs: dict) -> dict:
    stats = {m: _summary([x[m] for x in runs]) for m in METRICS}
    tg_gbps = stats["tg_tok_s"]["median"] * costs["weight_bytes_per_token"] / 1e9
    pp_gmacs = stats["pp_tok_s"]["median"] * costs["macs_per_prompt_token"] / 1e9
    stats["tg_fraction_of_read_roof"] = tg_gbps / roofs["read_gbps"]
    stats["pp_fraction_of_int8_peak"] = pp_gmacs / roofs["int8_gmacs"]
    return stats


def _parallel_stats(runs: dict[str, list[dict]], counts: list[int]) -> dict:
    """Per P: each engine's aggregate tok/s, its scaling (median at P / median at P=1),
    and llamalite / llama.cpp when both ran."""
    out: dict = {}
    for p in counts:
        row: dict = {}
        for engine, reps in runs.items():
            agg = _summary([x["parallel"][str(p)]["tok_s"] for x in reps])
            base = statistics.median(x["parallel"]["1"]["tok_s"] for x in reps)
            row[engine] = dict(tok_s=agg, scaling=agg["median"] / base)
        if "llamacpp" in row:
            row["ratio"] = row["llamalite"]["tok_s"]["median"] / row["llamacpp"]["tok_s"]["median"]
        out[str(p)] = row
    return out


def _cell(x: dict, fmt: str = "{:.1f}") -> str:
    return f"{fmt.format(x['median'])} [{fmt.format(x['min'])}-{fmt.format(x['max'])}]"


def _by_threads(report: dict, entry: dict) -> dict:
    """The per-thread-count results of a model (reports before --threads lists had one)."""
    if "by_threads" in entry:
        return entry["by_threads"]
    return {str(report["threads"]): entry}


def format_table(report: dict) -> str:
    """The report as text: per thread count, the speed table and the parallel table."""
    counts = report["threads"] if isinstance(report["threads"], list) else [report["threads"]]
    lines = [f"reps={report['reps']} (median [min-max])  pp={report['n_prompt']} tokens  "
             f"tg={report['n_gen']} tokens"]
    for threads in counts:
        lines += ["", f"threads={threads}",
                  f"{'model':<14}{'engine':<11}{'pp tok/s':>24}{'tg tok/s':>22}"
                  f"{'load->1st s':>13}{'peak RSS MB':>13}{'tg/roof':>9}{'pp/peak':>9}"]
        for name, entry in report["models"].items():
            per = _by_threads(report, entry)[str(threads)]
            lines += _speed_rows(name, entry, per)
        if any("parallel" in _by_threads(report, e)[str(threads)]
               for e in report["models"].values()):
            lines += _parallel_rows(report, threads)
    return "\n".join(lines)


def _speed_rows(name: str, entry: dict, per: dict) -> list[str]:
    lines = []
    for engine, s in per["engines"].items():
        lines.append(f"{name:<14}{engine:<11}{_cell(s['pp_tok_s']):>24}{_cell(s['tg_tok_s']):>22}"
                     f"{s['first_token_s']['median']:>13.3f}{s['peak_rss_mb']['median']:>13.0f}"
                     f"{s['tg_fraction_of_read_roof']:>9.1%}{s['pp_fraction_of_int8_peak']:>9.1%}")
    e = per["engines"]
    if "llamacpp" in e:
        ratio_pp = e["llamalite"]["pp_tok_s"]["median"] / e["llamacpp"]["pp_tok_s"]["median"]
        ratio_tg = e["llamalite"]["tg_tok_s"]["median"] / e["llamacpp"]["tg_tok_s"]["median"]
        lines.append(f"{'':<14}llamalite / llama.cpp: pp {ratio_pp:.2f}x, tg {ratio_tg:.2f}x")
    r = per["roofs"]
    lines.append(f"{'':<14}roofs: read {r['read_gbps']:.1f} GB/s on "
                 f"{entry['costs']['weight_bytes_per_token'] / 1e6:.0f} MB, "
                 f"int8 {r['int8_gmacs']:.0f} GMAC/s")
    return lines


def _parallel_rows(report: dict, threads: int) -> list[str]:
    lines = [f"parallel generation, threads={threads}: aggregate tok/s of P sequences, "
             f"{report['n_gen']} greedy tokens each, one forward per step (decode steps only); "
             f"scaling = aggregate at P / at P=1",
             f"{'model':<14}{'P':>3}{'llamalite tok/s':>24}{'llama.cpp tok/s':>24}"
             f"{'ratio':>8}{'scaling lite':>14}{'scaling cpp':>13}"]
    for name, entry in report["models"].items():
        par = _by_threads(report, entry)[str(threads)].get("parallel", {})
        for p, row in par.items():
            lite, cpp = row["llamalite"], row.get("llamacpp")
            lines.append(
                f"{name:<14}{p:>3}{_cell(lite['tok_s']):>24}"
                f"{_cell(cpp['tok_s']) if cpp else '-':>24}"
                f"{format(row['ratio'], '.2f') + 'x' if cpp else '-':>8}"
                f"{format(lite['scaling'], '.2f') + 'x':>14}"
                f"{format(cpp['scaling'], '.2f') + 'x' if cpp else '-':>13}")
    return lines


def save(report: dict, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"compare-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2))
    return path
