"""`llamalite bench`: the report's shape, and the work counts it divides by."""
from __future__ import annotations

import json

from conftest import run_cli

from llamalite.benchmark import model_costs


def test_model_costs_match_the_architecture(smollm2_path):
    # SmolLM2-135M: 30 layers, d=576, 3 KV heads of 64 (192), ff=1536, 49,152-token
    # vocabulary with the output tied to token_embd. Per token, every matmul weight is
    # read once: Q and O (d x d), K and V (d x 192), gate/up/down (d x ff), output (vocab x d).
    # A prompt token needs no logits (only the last row does), so no output projection.
    d, kv, ff, n_layer, vocab = 576, 192, 1536, 30, 49152
    layer_macs = n_layer * (2 * d * d + 2 * d * kv + 3 * d * ff)
    costs = model_costs(smollm2_path)
    assert costs["macs_per_prompt_token"] == layer_macs
    # Q4_1 is 20 bytes per 32 weights, token_embd Q8_0 34 bytes per 32.
    assert costs["weight_bytes_per_token"] == layer_macs * 20 // 32 + vocab * d * 34 // 32


def test_bench_reports_speeds_and_roofs(tmp_path, smollm2_path):
    res = run_cli("bench", str(smollm2_path), "--reps", "1", "--n-prompt", "16", "--n-gen", "4",
                  "--json", "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["threads"] == [2] and report["parallel"] == []   # no --compare: no parallel
    entry = report["models"][str(smollm2_path)]["by_threads"]["2"]
    lite = entry["engines"]["llamalite"]
    for key in ("pp_tok_s", "tg_tok_s", "load_s", "first_token_s", "peak_rss_mb"):
        assert lite[key]["n"] == 1 and lite[key]["median"] > 0, key
    assert entry["roofs"]["read_gbps"] > 0 and entry["roofs"]["int8_gmacs"] > 0
    assert 0 < lite["tg_fraction_of_read_roof"] < 5
    assert list(tmp_path.glob("compare-*.json"))


def test_compare_needs_the_peer(smollm2_path):
    env = {k: v for k, v in __import__("os").environ.items() if k != "LLAMALITE_PEER_PYTHON"}
    res = run_cli("bench", str(smollm2_path), "--compare", env=env)
    assert res.returncode == 1
    assert "--peer-python" in res.stderr and "Traceback" not in res.stderr
