"""`llamalite info` and llamalite.model_info.summarize on real and synthetic models."""
from __future__ import annotations

import json

import gguf
import numpy as np
import pytest

import llamalite
from llamalite.model_info import FILE_TYPES, summarize, tensor_table
from conftest import run_cli
from gguf_builder import f32_tensor_file


def _smollm2_params_by_formula() -> int:
    """SmolLM2-135M from its architecture: tied embedding, 30 llama blocks, final norm."""
    d, d_kv, d_ff, vocab, layers = 576, 192, 1536, 49152, 30
    attn = 2 * d * d + 2 * d * d_kv
    ffn = 3 * d * d_ff
    norms = 2 * d
    return vocab * d + layers * (attn + ffn + norms) + d


def test_summary_of_smollm2(smollm2_path):
    with llamalite.open_gguf(smollm2_path) as g:
        s = summarize(g)
    assert s.architecture == "llama" and s.n_tensors == 272
    assert s.n_params == _smollm2_params_by_formula() == 134_515_008
    assert s.file_type == "Q4_1"
    assert s.hyperparameters["block_count"] == 30
    assert s.hyperparameters["attention.head_count_kv"] == 3
    assert {u.type: u.n_tensors for u in s.type_mix} == {"Q4_1": 210, "Q8_0": 1, "F32": 61}
    q8 = next(u for u in s.type_mix if u.type == "Q8_0")
    assert q8.nbytes == 49152 * 576 // 32 * 34      # token_embd in Q8_0 blocks
    assert sum(u.nbytes for u in s.type_mix) == s.tensor_bytes
    assert (s.tokenizer_model, s.tokenizer_pre, s.vocab_size, s.n_merges) == (
        "gpt2", "smollm", 49152, 48900)
    assert s.has_chat_template and s.special_tokens["bos"] == 1


def test_summary_of_synthetic_type_mix(tmp_path):
    path = tmp_path / "mix.gguf"
    w = gguf.GGUFWriter(str(path), "testarch")
    w.add_uint32("testarch.block_count", 2)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    w.add_tensor("a", np.zeros((2, 8), np.float32))
    w.add_tensor("b", np.zeros((3, 8), np.float32))
    q = gguf.quants.quantize(np.ones((4, 64), np.float32), gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("c", q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with llamalite.open_gguf(path) as g:
        s = summarize(g)
        rows = tensor_table(g)
    assert s.n_params == 16 + 24 + 256 and s.file_type == "Q8_0"
    assert [(u.type, u.n_tensors, u.n_params, u.nbytes) for u in s.type_mix] == [
        ("Q8_0", 1, 256, 8 * 34), ("F32", 2, 40, 160)]
    assert s.hyperparameters == {"block_count": 2}
    assert s.vocab_size is None and s.tokenizer_model is None and not s.has_chat_template
    assert [r["name"] for r in rows] == ["a", "b", "c"] and rows[2]["shape"] == [64, 4]
    json.dumps(s.to_dict())


def test_file_type_names_match_gguf():
    for ft in gguf.LlamaFileType:
        if ft.name != "GUESSED":
            assert FILE_TYPES[int(ft)] == ft.name.removeprefix("MOSTLY_").removeprefix("ALL_")


def test_info_text(smollm2_path):
    r = run_cli("info", str(smollm2_path))
    assert r.returncode == 0, r.stderr
    assert "architecture   llama" in r.stdout
    assert "134,515,008" in r.stdout
    assert "block_count" in r.stdout and "Q4_1" in r.stdout
    assert "49,152 tokens" in r.stdout and "chat template  yes" in r.stdout
    assert "blk.0.ffn_up.weight" not in r.stdout


def test_info_json_with_tensors_by_registry_name(gemma3_path):
    r = run_cli("info", "gemma3-270m", "--json", "--tensors")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["architecture"] == "gemma3" and out["vocab_size"] == 262144
    assert out["tokenizer_model"] == "llama" and out["has_chat_template"] is False
    assert out["hyperparameters"]["block_count"] == 18
    assert len(out["tensors"]) == 236
    assert sum(t["n_elements"] for t in out["tensors"]) == out["n_params"]
    assert {u["type"] for u in out["type_mix"]} == {"Q8_0", "Q5_0", "Q4_K", "Q6_K", "F32"}
    assert out["path"] == str(gemma3_path)


def test_info_tensor_table(smollm2_path):
    r = run_cli("info", str(smollm2_path), "--tensors")
    assert r.returncode == 0, r.stderr
    assert "blk.29.ffn_up.weight" in r.stdout and "token_embd.weight" in r.stdout


@pytest.mark.parametrize("case", ["truncated", "bad_magic", "missing", "unknown_name"])
def test_info_bad_input_fails_cleanly(tmp_path, case):
    p = tmp_path / "bad.gguf"
    if case == "truncated":
        data = f32_tensor_file((256, 4))
        p.write_bytes(data[:-100])
        target, expect = str(p), "ends at byte"
    elif case == "bad_magic":
        p.write_bytes(b"NOPE" + f32_tensor_file()[4:])
        target, expect = str(p), "magic is b'NOPE'"
    elif case == "missing":
        target, expect = str(tmp_path / "nope.gguf"), "not found"
    else:
        target, expect = "no-such-model", "neither a GGUF file nor a known model name"
    r = run_cli("info", target)
    assert r.returncode == 1
    assert r.stderr.startswith("error: ") and expect in r.stderr, r.stderr
    if case in ("truncated", "bad_magic"):
        assert str(p) in r.stderr  # the message says which file
    assert "Traceback" not in r.stderr and r.stdout == ""
