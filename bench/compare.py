"""llamalite vs llama.cpp, side by side, beside the machine's roofs.

    python bench/compare.py [MODEL ...] --peer-python PATH [--threads 1,2] [--parallel 1,4,8]

Both engines do the work of `llamalite bench` (llamalite/speed.py): each
repetition in a fresh process, the engines and thread counts interleaved
(A B B A ...), so load time and peak RSS are honest and slow drift of a shared
machine hits both alike. llamalite runs as `python -m llamalite.speed`;
llama.cpp comes from llama-cpp-python installed in *another* environment (never
a dependency): bench/peer_worker.py runs under its interpreter (--peer-python or
the environment variable LLAMALITE_PEER_PYTHON) on the same token ids. Without a
peer the tables are llamalite's alone.

Beside the engines, the machine's roofs are measured in the same run with the
llamalite_bench module (bench/native_module.py builds it): read bandwidth on a
buffer of the model's size (decode streams every weight once per token) and
the int8 dot-product peak (prefill is matmul-bound); each figure is reported as
a fraction of its roof. --no-roofs skips them. The report is printed and written
to bench/results/compare-*.json (--out FOLDER).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Optional

from llamalite import speed
from llamalite.speed import Config, cell, parse_int_list, parse_parallel, render

HERE = Path(__file__).resolve().parent
PEER_WORKER = HERE / "peer_worker.py"


def peer_command(python: str):
    """The command of one llama.cpp repetition under the peer's interpreter."""
    def command(model: Path, threads: int, cfg: Config, parallel: bool) -> list:
        cmd = [python, str(PEER_WORKER), "--speed", speed.__file__, "--model", str(model),
               "--threads", str(threads), "--n-prompt", str(cfg.n_prompt), "--n-gen", str(cfg.n_gen)]
        if parallel:
            cmd += ["--parallel", ",".join(map(str, cfg.parallel))]
        return cmd
    return command


def model_costs(path: Path) -> dict:
    """Weight bytes streamed per decoded token, and multiply-adds per prompt token.

    Decode computes logits for every token, so it reads every matmul weight, the
    output projection (or the tied token_embd) included. Prefill needs logits for
    its last row only, so the output projection is not part of its per-token work.
    A mixture of experts (3-D ffn_*_exps tensors) runs expert_used_count of its
    expert_count experts per token: that share of those tensors' bytes and work.
    """
    from llamalite.gguf import open_gguf

    with open_gguf(path) as g:
        output = "output.weight" if "output.weight" in g.tensors else "token_embd.weight"
        arch = g.architecture
        n_expert = int(g.metadata.get(f"{arch}.expert_count", 0) or 0)
        n_used = int(g.metadata.get(f"{arch}.expert_used_count", 0) or 0)
        read_bytes = 0
        prompt_macs = 0
        for t in g.tensors.values():
            share = 1.0
            if len(t.shape) == 3 and n_expert and t.shape[2] == n_expert:
                share = n_used / n_expert    # one token reads its experts' slices only
            elif len(t.shape) != 2:
                continue
            if t.name == "token_embd.weight" and output != t.name:
                continue  # a row gather, not a matmul
            read_bytes += int(t.nbytes * share)
            if t.name != output:
                prompt_macs += int(t.shape[0] * t.shape[1] * (t.shape[2] if len(t.shape) == 3 else 1) * share)
    return dict(weight_bytes_per_token=read_bytes, macs_per_prompt_token=prompt_macs)


def measure_roofs(native, nbytes: int, threads: int, reps: int = 5) -> dict:
    """Read bandwidth (GB/s) on an nbytes buffer and int8 dot-product peak (GMAC/s)."""
    bw = statistics.median(native.read_bandwidth(nbytes, threads, 3) for _ in range(reps))
    peak = statistics.median(native.int8_peak(threads) for _ in range(reps))
    return dict(read_gbps=bw, int8_gmacs=peak)


def add_roofs(stats: dict, costs: dict, roofs: dict) -> dict:
    """An engine's stats with its tg and pp as fractions of the roofs."""
    tg_gbps = stats["tg_tok_s"]["median"] * costs["weight_bytes_per_token"] / 1e9
    pp_gmacs = stats["pp_tok_s"]["median"] * costs["macs_per_prompt_token"] / 1e9
    stats["tg_fraction_of_read_roof"] = tg_gbps / roofs["read_gbps"]
    stats["pp_fraction_of_int8_peak"] = pp_gmacs / roofs["int8_gmacs"]
    return stats


def add_ratios(parallel: dict) -> dict:
    """llamalite / llama.cpp aggregate tok/s per P, where both ran."""
    for row in parallel.values():
        if "llamacpp" in row:
            row["ratio"] = row["llamalite"]["tok_s"]["median"] / row["llamacpp"]["tok_s"]["median"]
    return parallel


def compare(cfg: Config, peer_python: Optional[str], native=None, log=print) -> dict:
    """speed.run with llama.cpp beside llamalite (when peer_python is given), then the
    work counts, the roofs (when native, the llamalite_bench module, is given) and ratios."""
    engines = {"llamalite": speed.worker_command}
    if peer_python:
        engines["llamacpp"] = peer_command(peer_python)
    report = speed.run(cfg, engines, log=log)
    for entry in report["models"].values():
        costs = model_costs(Path(entry["path"]))
        entry["costs"] = costs
        for threads, per in entry["by_threads"].items():
            if native is not None:
                roofs = measure_roofs(native, costs["weight_bytes_per_token"], int(threads))
                per["roofs"] = roofs
                for stats in per["engines"].values():
                    add_roofs(stats, costs, roofs)
            if "parallel" in per:
                add_ratios(per["parallel"])
    return report


# --- the table ---


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
        rows: list = []
        for name, entry in report["models"].items():
            rows += _speed_rows(name, entry, _by_threads(report, entry)[str(threads)])
        lines += ["", f"threads={threads}",
                  *render(["model", "engine", "pp tok/s", "tg tok/s", "load->1st s", "peak RSS MB",
                           "tg/roof", "pp/peak"], rows, n_left=2)]
        if any("parallel" in _by_threads(report, e)[str(threads)]
               for e in report["models"].values()):
            lines += _parallel_rows(report, threads)
    return "\n".join(lines)


def _speed_rows(name: str, entry: dict, per: dict) -> list:
    rows: list = []
    for engine, s in per["engines"].items():
        rows.append([name, engine, cell(s["pp_tok_s"]), cell(s["tg_tok_s"]),
                     f"{s['first_token_s']['median']:.3f}", f"{s['peak_rss_mb']['median']:.0f}",
                     format(s["tg_fraction_of_read_roof"], ".1%") if "tg_fraction_of_read_roof" in s else "-",
                     format(s["pp_fraction_of_int8_peak"], ".1%") if "pp_fraction_of_int8_peak" in s else "-"])
    e = per["engines"]
    if "llamacpp" in e:
        ratio_pp = e["llamalite"]["pp_tok_s"]["median"] / e["llamacpp"]["pp_tok_s"]["median"]
        ratio_tg = e["llamalite"]["tg_tok_s"]["median"] / e["llamacpp"]["tg_tok_s"]["median"]
        rows.append(f"llamalite / llama.cpp: pp {ratio_pp:.2f}x, tg {ratio_tg:.2f}x")
    r = per.get("roofs")
    if r:
        rows.append(f"roofs: read {r['read_gbps']:.1f} GB/s on "
                    f"{entry['costs']['weight_bytes_per_token'] / 1e6:.0f} MB, "
                    f"int8 {r['int8_gmacs']:.0f} GMAC/s")
    return rows


def _parallel_rows(report: dict, threads: int) -> list[str]:
    rows = []
    for name, entry in report["models"].items():
        par = _by_threads(report, entry)[str(threads)].get("parallel", {})
        for p, row in par.items():
            lite, cpp = row["llamalite"], row.get("llamacpp")
            rows.append([name, p, cell(lite["tok_s"]), cell(cpp["tok_s"]) if cpp else "-",
                         f"{row['ratio']:.2f}x" if cpp else "-", f"{lite['scaling']:.2f}x",
                         f"{cpp['scaling']:.2f}x" if cpp else "-"])
    return [f"parallel generation, threads={threads}: aggregate tok/s of P sequences, "
            f"{report['n_gen']} greedy tokens each, one forward per step (decode steps only); "
            f"scaling = aggregate at P / at P=1",
            *render(["model", "P", "llamalite tok/s", "llama.cpp tok/s", "ratio", "scaling lite",
                     "scaling cpp"], rows)]


def save(report: dict, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"compare-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2))
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="*", default=["smollm2-135m", "gemma3-270m"])
    p.add_argument("--threads", default="2",
                   help="thread counts, comma-separated (1,2): one full table each")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--n-prompt", type=int, default=512)
    p.add_argument("--n-gen", type=int, default=128)
    p.add_argument("--parallel", default=None,
                   help="sequence counts for aggregate parallel generation (default 1,4,8; "
                        "0 to skip)")
    p.add_argument("--peer-python", default=os.environ.get("LLAMALITE_PEER_PYTHON"),
                   help="interpreter of the environment that has llama-cpp-python "
                        "(default: $LLAMALITE_PEER_PYTHON; none: llamalite alone)")
    p.add_argument("--no-roofs", action="store_true",
                   help="skip the roofs (no need for the llamalite_bench module)")
    p.add_argument("--out", type=Path, default=HERE / "results", help="folder for the JSON report")
    a = p.parse_args()
    try:
        cfg = Config(models=a.models, threads=parse_int_list(a.threads, "--threads"), reps=a.reps,
                     n_prompt=a.n_prompt, n_gen=a.n_gen,
                     parallel=parse_parallel(a.parallel, default=[1, 4, 8]))
    except ValueError as e:
        p.error(str(e))
    if a.peer_python and not os.path.exists(a.peer_python):
        p.error(f"--peer-python {a.peer_python}: no such file")
    native = None
    if not a.no_roofs:
        sys.path.insert(0, str(HERE))
        from native_module import load

        native = load()
    report = compare(cfg, a.peer_python, native=native, log=lambda msg: print(msg, file=sys.stderr))
    print(format_table(report))
    print(f"written: {save(report, a.out)}")


if __name__ == "__main__":
    main()
