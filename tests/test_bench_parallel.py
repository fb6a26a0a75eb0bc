"""`llamalite bench --threads 1,2 --parallel 1,4,8` (llamalite/speed.py) and the
side-by-side report of bench/compare.py: lists, parallel generation, the tables.

No llama.cpp here (CI never has it): the peer's figures in the table test are
synthetic worker outputs with known medians.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from bench_scripts import bench_script
from conftest import TESTS_DIR, run_cli

from llamalite.speed import (Config, engine_stats, format_table, lite_parallel, parallel_prompts,
                             parallel_stats, parse_int_list, parse_parallel)

compare = bench_script("compare")

# --- argument lists ---


def test_thread_and_parallel_lists_parse():
    assert parse_int_list("1,2", "--threads") == [1, 2]
    assert parse_int_list(" 2 ", "--threads") == [2]
    assert parse_int_list("2,1,2", "--threads") == [2, 1]       # order kept, repeats dropped
    assert parse_parallel(None, default=[1, 4, 8]) == [1, 4, 8]
    assert parse_parallel(None, default=[]) == []
    assert parse_parallel("0", default=[1, 4, 8]) == []
    assert parse_parallel("off", default=[1, 4, 8]) == []
    assert parse_parallel("4,8", default=[]) == [1, 4, 8]      # 1 is the scaling base
    assert Config(models=[], threads=2).threads == [2]
    assert Config(models=[], parallel=[4]).parallel == [1, 4]


@pytest.mark.parametrize("text", ["", "0", "-1", "a", "1,,2", "1.5", "2;1"])
def test_bad_thread_lists_are_rejected(text):
    with pytest.raises(ValueError, match="--threads: expected comma-separated positive"):
        parse_int_list(text, "--threads")


def test_bad_lists_fail_cleanly_on_the_command_lines(smollm2_path):
    res = run_cli("bench", str(smollm2_path), "--threads", "1,x")
    assert res.returncode == 1 and "--threads" in res.stderr and "Traceback" not in res.stderr
    res = run_cli("bench", str(smollm2_path), "--parallel", "4,-8")
    assert res.returncode == 1 and "--parallel" in res.stderr and "Traceback" not in res.stderr
    script = TESTS_DIR.parent / "bench" / "compare.py"
    res = subprocess.run([sys.executable, str(script), "--threads", "0"], capture_output=True,
                         text=True, cwd=TESTS_DIR.parent.parent)
    assert res.returncode == 2 and "--threads" in res.stderr and "Traceback" not in res.stderr


# --- the worker's parallel generation on the real model ---


def test_parallel_generation_matches_each_sequence_alone(smollm2_path):
    from llamalite import LLM

    llm = LLM(smollm2_path, n_ctx=64, n_threads=2)
    n_seq, n_gen = 4, 3
    prompts = parallel_prompts(n_seq, llm.model.n_vocab, seed=1234)
    assert len({tuple(p) for p in prompts}) == n_seq            # distinct prompts
    assert sorted({len(p) for p in prompts}) == [6, 7, 8, 9]    # and distinct positions
    tokens, decode_s = lite_parallel(llm.model, prompts, n_gen)
    assert decode_s > 0
    assert [len(t) for t in tokens] == [n_gen] * n_seq           # P * n_gen tokens
    for prompt, got in zip(prompts, tokens):
        alone, _ = lite_parallel(llm.model, [prompt], n_gen)
        assert got == alone[0]
        # and the same greedy continuation through the LLM's own decode loop
        ref = llm.generate(prompt, temperature=0, max_tokens=n_gen, ignore_eos=True)
        assert got == list(ref.token_ids)


# --- the report and its table ---


def _fake_pp_tg(pp: float, tg: float) -> dict:
    return dict(load_s=0.05, first_token_s=0.06, pp_tok_s=pp, tg_tok_s=tg, peak_rss_mb=150.0)


def _fake_parallel(per_p: dict[int, float]) -> dict:
    runs = {str(p): dict(tok_s=v, decode_s=1.0, n_tokens=1) for p, v in per_p.items()}
    return dict(parallel=runs, peak_rss_mb=160.0)


def test_parallel_stats_give_ratio_and_scaling():
    runs = {"llamalite": [_fake_parallel({1: 100, 4: 300}), _fake_parallel({1: 80, 4: 260}),
                          _fake_parallel({1: 90, 4: 270})],
            "llamacpp": [_fake_parallel({1: 50, 4: 90})] * 3}
    par = compare.add_ratios(parallel_stats(runs, [1, 4]))
    lite4 = par["4"]["llamalite"]
    assert lite4["tok_s"] == dict(median=270, min=260, max=300, n=3)
    assert lite4["scaling"] == pytest.approx(270 / 90)
    assert par["4"]["llamacpp"]["scaling"] == pytest.approx(90 / 50)
    assert par["4"]["ratio"] == pytest.approx(270 / 90)
    assert par["1"]["llamalite"]["scaling"] == 1.0


def _report(engines: dict[str, tuple[float, float]], parallel: dict[str, dict]) -> dict:
    costs = dict(weight_bytes_per_token=100e6, macs_per_prompt_token=1e8)
    roofs = dict(read_gbps=25.0, int8_gmacs=200.0)
    by_threads = {}
    for t in ("1", "2"):
        by_threads[t] = dict(roofs=roofs, engines={
            e: compare.add_roofs(engine_stats([_fake_pp_tg(*v)]), costs, roofs)
            for e, v in engines.items()},
            parallel=compare.add_ratios(parallel_stats(parallel, [1, 4, 8])))
    return dict(threads=[1, 2], parallel=[1, 4, 8], reps=1, n_prompt=512, n_gen=128,
                models={"smollm2-135m": dict(path="x", costs=costs, by_threads=by_threads)})


def test_table_prints_every_thread_count_and_the_parallel_figures():
    report = _report({"llamalite": (400.0, 100.0), "llamacpp": (200.0, 80.0)},
                     {"llamalite": [_fake_parallel({1: 100, 4: 300, 8: 480})],
                      "llamacpp": [_fake_parallel({1: 80, 4: 100, 8: 160})]})
    text = compare.format_table(json.loads(json.dumps(report)))  # as read back from the JSON
    assert "threads=1" in text and "threads=2" in text
    assert text.count("llamalite / llama.cpp: pp 2.00x, tg 1.25x") == 2
    rows = [ln.split() for ln in text.splitlines() if ln.startswith("smollm2-135m")]
    p8 = [r for r in rows if r[1] == "8"]
    assert len(p8) == 2                                          # one per thread count
    # P, llamalite median [min-max], llama.cpp median [min-max], ratio, both scalings
    assert p8[0][2] == "480.0" and p8[0][4] == "160.0"
    assert p8[0][6:] == ["3.00x", "4.80x", "2.00x"]


def test_table_reads_a_report_of_the_first_format():
    """A report written before thread lists and parallel runs (one thread count, flat fields)."""
    old = TESTS_DIR / "data" / "compare_report_v1.json"
    text = compare.format_table(json.loads(old.read_text()))
    assert "threads=2" in text and "llamalite / llama.cpp" in text
    assert "parallel generation" not in text


def test_table_reads_the_committed_baseline():
    baseline = TESTS_DIR.parent / "bench" / "results" / "baseline-compare.json"
    text = compare.format_table(json.loads(baseline.read_text()))
    for want in ("threads=1", "threads=2", "llamalite / llama.cpp", "parallel generation"):
        assert want in text


def test_threads_and_parallel_lists_on_the_command(tmp_path, smollm2_path):
    out = tmp_path / "r.json"
    res = run_cli("bench", str(smollm2_path), "--threads", "1,2", "--parallel", "2",
                  "--reps", "1", "--n-prompt", "8", "--n-gen", "2", "--out", str(out))
    assert res.returncode == 0, res.stderr
    report = json.loads(out.read_text())
    assert report["threads"] == [1, 2] and report["parallel"] == [1, 2]
    entry = report["models"][str(smollm2_path)]
    for t in ("1", "2"):
        per = entry["by_threads"][t]
        assert list(per["engines"]) == ["llamalite"]
        assert per["engines"]["llamalite"]["tg_tok_s"]["median"] > 0
        assert list(per["parallel"]) == ["1", "2"]
        p2 = per["parallel"]["2"]
        assert list(p2) == ["llamalite"] and p2["llamalite"]["tok_s"]["median"] > 0
    assert res.stdout.strip() == format_table(report)
    assert "threads=1" in res.stdout and "parallel generation, threads=2" in res.stdout
    # the side-by-side table reads the same report (llamalite alone, no roofs)
    text = compare.format_table(report)
    assert "llamacpp" not in text and "llamalite / llama.cpp" not in text and "roofs:" not in text
    assert "parallel generation, threads=2" in text
