"""Side-by-side benchmark: llamalite against llama.cpp on the same GGUF file.

Each repetition runs in a fresh process (llamalite/bench_worker.py), the two
engines interleaved (A B B A ...), so load time and peak RSS are honest and slow
drift of a shared machine hits both alike. Beside the engines, the machine's
roofs are measured in the same run: read bandwidth on a buffer of the model's
size (decode streams every weight once per token) and the int8 dot-product peak
(prefill is matmul-bound). Each figure is reported as a fraction of its roof.

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
    threads: int = 2
    reps: int = 5
    n_prompt: int = 512
    n_gen: int = 128
    peer_python: Optional[str] = None
    out_dir: Path = field(default_factory=lambda: Path("bench/results"))


def _run_worker(python: str, engine: str, model: Path, cfg: Config) -> dict:
    cmd = [python, str(WORKER), "--engine", engine, "--model", str(model),
           "--threads", str(cfg.threads), "--n-prompt", str(cfg.n_prompt),
           "--n-gen", str(cfg.n_gen)]
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


def compare(cfg: Config, log=print) -> dict:
    from .registry import resolve_model

    engines = [("llamalite", sys.executable)]
    if cfg.peer_python:
        engines.append(("llamacpp", cfg.peer_python))
    report = dict(threads=cfg.threads, reps=cfg.reps, n_prompt=cfg.n_prompt, n_gen=cfg.n_gen,
                  when=time.strftime("%Y-%m-%dT%H:%M:%S"), models={})
    for name in cfg.models:
        path = resolve_model(name)
        costs = model_costs(path)
        runs: dict[str, list[dict]] = {e: [] for e, _ in engines}
        for r in range(cfg.reps):
            order = engines if r % 2 == 0 else engines[::-1]
            for engine, python in order:
                runs[engine].append(_run_worker(python, engine, path, cfg))
                log(f"  {path.name} rep {r + 1}/{cfg.reps} {engine}: "
                    f"pp {runs[engine][-1]['pp_tok_s']:.1f} tok/s, "
                    f"tg {runs[engine][-1]['tg_tok_s']:.1f} tok/s")
        roofs = measure_roofs(costs["weight_bytes_per_token"], cfg.threads)
        entry: dict = dict(path=str(path), costs=costs, roofs=roofs, engines={})
        for engine in runs:
            stats = {m: _summary([x[m] for x in runs[engine]]) for m in METRICS}
            tg_gbps = stats["tg_tok_s"]["median"] * costs["weight_bytes_per_token"] / 1e9
            pp_gmacs = stats["pp_tok_s"]["median"] * costs["macs_per_prompt_token"] / 1e9
            stats["tg_fraction_of_read_roof"] = tg_gbps / roofs["read_gbps"]
            stats["pp_fraction_of_int8_peak"] = pp_gmacs / roofs["int8_gmacs"]
            entry["engines"][engine] = stats
        report["models"][name] = entry
    return report


def format_table(report: dict) -> str:
    lines = [f"threads={report['threads']}  reps={report['reps']} (median [min-max])  "
             f"pp={report['n_prompt']} tokens  tg={report['n_gen']} tokens"]
    hdr = f"{'model':<14}{'engine':<11}{'pp tok/s':>24}{'tg tok/s':>22}{'load->1st s':>13}" \
          f"{'peak RSS MB':>13}{'tg/roof':>9}{'pp/peak':>9}"
    lines.append(hdr)
    for name, entry in report["models"].items():
        for engine, s in entry["engines"].items():
            def cell(m, fmt="{:.1f}"):
                x = s[m]
                return f"{fmt.format(x['median'])} [{fmt.format(x['min'])}-{fmt.format(x['max'])}]"
            lines.append(f"{name:<14}{engine:<11}{cell('pp_tok_s'):>24}{cell('tg_tok_s'):>22}"
                         f"{s['first_token_s']['median']:>13.3f}{s['peak_rss_mb']['median']:>13.0f}"
                         f"{s['tg_fraction_of_read_roof']:>9.1%}{s['pp_fraction_of_int8_peak']:>9.1%}")
        e = entry["engines"]
        if "llamacpp" in e:
            ratio_pp = e["llamalite"]["pp_tok_s"]["median"] / e["llamacpp"]["pp_tok_s"]["median"]
            ratio_tg = e["llamalite"]["tg_tok_s"]["median"] / e["llamacpp"]["tg_tok_s"]["median"]
            lines.append(f"{'':<14}llamalite / llama.cpp: pp {ratio_pp:.2f}x, tg {ratio_tg:.2f}x")
        r = entry["roofs"]
        lines.append(f"{'':<14}roofs: read {r['read_gbps']:.1f} GB/s on "
                     f"{entry['costs']['weight_bytes_per_token'] / 1e6:.0f} MB, "
                     f"int8 {r['int8_gmacs']:.0f} GMAC/s")
    return "\n".join(lines)


def save(report: dict, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"compare-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2))
    return path
