"""`llamalite bench`: the model's own speed; JSON only where asked; columns that fit.

bench/compare.py (llama.cpp side by side, roofs) is loaded by path: it is a
script of the repository, not part of the package.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from bench_scripts import bench_script
from conftest import run_cli

from llamalite import speed


def test_model_costs_match_the_architecture(smollm2_path):
    # SmolLM2-135M: 30 layers, d=576, 3 KV heads of 64 (192), ff=1536, 49,152-token
    # vocabulary with the output tied to token_embd. Per token, every matmul weight is
    # read once: Q and O (d x d), K and V (d x 192), gate/up/down (d x ff), output (vocab x d).
    # A prompt token needs no logits (only the last row does), so no output projection.
    d, kv, ff, n_layer, vocab = 576, 192, 1536, 30, 49152
    layer_macs = n_layer * (2 * d * d + 2 * d * kv + 3 * d * ff)
    costs = bench_script("compare").model_costs(smollm2_path)
    assert costs["macs_per_prompt_token"] == layer_macs
    # Q4_1 is 20 bytes per 32 weights, token_embd Q8_0 34 bytes per 32.
    assert costs["weight_bytes_per_token"] == layer_macs * 20 // 32 + vocab * d * 34 // 32


def _bench(cwd, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-m", "llamalite.cli.main", "bench", *args],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def test_bench_reports_its_own_speed_and_writes_json_only_where_asked(tmp_path, smollm2_path):
    small = ["--reps", "1", "--n-prompt", "16", "--n-gen", "4"]
    here = tmp_path / "here"
    here.mkdir()
    res = _bench(here, str(smollm2_path), *small)
    assert res.returncode == 0, res.stderr
    assert "pp tok/s" in res.stdout and "roof" not in res.stdout and "llama.cpp" not in res.stdout
    assert list(here.iterdir()) == []            # nothing written without --out

    out = tmp_path / "report.json"
    res = _bench(here, str(smollm2_path), *small, "--json", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert list(here.iterdir()) == []
    report = json.loads(res.stdout)
    assert json.loads(out.read_text()) == report   # the file holds the printed report
    assert report["threads"] == [2] and report["parallel"] == []
    entry = report["models"][str(smollm2_path)]["by_threads"]["2"]
    assert list(entry) == ["engines"] and list(entry["engines"]) == ["llamalite"]
    lite = entry["engines"]["llamalite"]
    for key in ("pp_tok_s", "tg_tok_s", "load_s", "first_token_s", "peak_rss_mb"):
        assert lite[key]["n"] == 1 and lite[key]["median"] > 0, key
    assert lite["first_token_s"]["median"] >= lite["load_s"]["median"]


def test_out_must_be_a_file_in_an_existing_folder(tmp_path, smollm2_path):
    res = _bench(tmp_path, str(smollm2_path), "--out", str(tmp_path))
    assert res.returncode == 1 and "--out" in res.stderr and "Traceback" not in res.stderr
    res = _bench(tmp_path, str(smollm2_path), "--out", str(tmp_path / "no" / "r.json"))
    assert res.returncode == 1 and "--out" in res.stderr and "Traceback" not in res.stderr
    assert list(tmp_path.iterdir()) == []


def test_peer_and_roofs_are_not_options_of_the_command(smollm2_path):
    for option in ("--compare", "--peer-python"):
        res = run_cli("bench", str(smollm2_path), option)
        assert res.returncode == 2 and option in res.stderr and "Traceback" not in res.stderr


def _stats(median: float) -> dict:
    return dict(median=median, min=median * 0.9, max=median * 1.1, n=3)


def _report(names: list[str], engines=("llamalite",)) -> dict:
    per = dict(engines={e: {m: _stats(v) for m, v in zip(
        speed.METRICS, (0.05, 0.06, 12345.6, 987.6, 150.0))} for e in engines})
    return dict(threads=[2], parallel=[], reps=3, n_prompt=512, n_gen=128,
                models={n: dict(path=n, costs=dict(weight_bytes_per_token=1e8, macs_per_prompt_token=1e8),
                                by_threads={"2": per}) for n in names})


def _assert_aligned(text: str, names: list[str], header_start: str) -> None:
    lines = text.splitlines()
    header = next(ln for ln in lines if ln.startswith(header_start))
    rows = [ln for ln in lines if any(ln.startswith(n) for n in names)]
    assert len(rows) >= len(names)
    for row in rows:
        name = next(n for n in names if row.startswith(n))
        assert row[len(name)] == " "                 # the name never runs into the next column
        assert len(row) == len(header)               # every column ends where its header ends
        # and each right-aligned field ends under its header's end
        for m in re.finditer(r"\S+(?= {2}|$)", header):
            if m.start() > len(name):
                assert row[m.end() - 1] != " ", (row, m.group())


def test_table_columns_stay_aligned_for_a_long_path():
    names = ["/very/long/folder/of/models/that/goes/on/and/on/SmolLM2-135M-Instruct.Q4_1.gguf",
             "smollm2-135m"]
    text = speed.format_table(_report(names))
    _assert_aligned(text, names, "model")
    compare = bench_script("compare")
    text = compare.format_table(_report(names, engines=("llamalite", "llamacpp")))
    _assert_aligned(text, names, "model")


# A stand-in for llama-cpp-python's Llama class: records what it is asked to evaluate.
FAKE_LLAMA_CPP = r"""
import json, os

class Llama:
    def __init__(self, model, **kw):
        self.log = open(os.environ["FAKE_LLAMA_LOG"], "w")
        json.dump(dict(model=model, n_threads=kw["n_threads"]), self.log)
        self.log.write("\n")

    def n_vocab(self):
        return 5000

    def eval(self, tokens):
        json.dump(list(tokens), self.log)
        self.log.write("\n")
        self.log.flush()

    def reset(self):
        pass
"""


def test_the_peer_worker_gives_llama_cpp_the_same_prompt(tmp_path):
    """bench/peer_worker.py runs without llamalite (the peer's environment) and feeds
    llama.cpp the token ids llamalite's worker uses (llamalite/speed.py, loaded by path)."""
    (tmp_path / "llama_cpp.py").write_text(FAKE_LLAMA_CPP)
    log = tmp_path / "evals.jsonl"
    env = dict(os.environ, PYTHONPATH=str(tmp_path), FAKE_LLAMA_LOG=str(log))
    # the peer's environment has no llamalite: a package of that name that cannot be imported
    (tmp_path / "llamalite").mkdir()
    (tmp_path / "llamalite" / "__init__.py").write_text("raise ImportError('not in the peer environment')")
    worker = bench_script("compare").PEER_WORKER
    res = subprocess.run([sys.executable, str(worker), "--speed", speed.__file__, "--model", "m.gguf",
                          "--threads", "3", "--n-prompt", "6", "--n-gen", "4"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert set(out) == set(speed.METRICS) and out["pp_tok_s"] > 0 and out["tg_tok_s"] > 0
    lines = [json.loads(ln) for ln in log.read_text().splitlines()]
    assert lines[0] == dict(model="m.gguf", n_threads=3)
    prompt = speed.prompt_ids(5000, 6).tolist()
    assert lines[1] == prompt[:1]                     # load -> first token
    assert lines[2] == prompt                         # pp: the whole prompt in one batch
    assert lines[3:] == [[t] for t in prompt[:4]]     # tg: one token at a time
