"""llamalite.quant.plan picks llama.cpp's tensor types for every mix.

The reference is llama.cpp itself: tests/tools/record_quantize.py quantized F16 copies of
SmolLM2-135M and Gemma 3 270M (their tensor names and shapes), the tiny synthetic
models and qwen3moe/phi3-shaped ones with llama_model_quantize, and stored the type of every tensor in
tests/data/quantize_reference.json.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from llamalite.quant.plan import (FILE_TYPES, ModelFacts, Options, PlanError, TensorSpec,
                                  file_type, llama_order, make_plan, tensor_type, type_name)
from quant_models import TINY, moe_and_fused_specs, tensor_shapes

DATA = Path(__file__).parent / "data"
REF = json.loads((DATA / "quantize_reference.json").read_text())


def _real(model: str) -> tuple[list[TensorSpec], ModelFacts]:
    r = REF["plans"][model]
    return ([TensorSpec(n, tuple(s), t) for n, s, t in r["tensors"]], ModelFacts(**r["facts"]))


@pytest.mark.parametrize("model", ["smollm2-135m", "gemma3-270m"])
def test_every_mix_matches_llama_cpp_on_real_shapes(model):
    tensors, facts = _real(model)
    names = [t.name for t in tensors]
    recorded = REF["plans"][model]["types"]
    assert len(recorded) >= 18
    for mix, types in recorded.items():
        got = make_plan(tensors, facts, mix).types()
        want = dict(zip(names, types))
        diff = {n: (got[n], want[n]) for n in names if got[n] != want[n]}
        assert not diff, f"{model} {mix}: (llamalite, llama.cpp) differ: {diff}"


def _tiny(name: str) -> tuple[list[TensorSpec], ModelFacts]:
    s = TINY[name]
    specs = [TensorSpec(n, sh, 0 if len(sh) == 1 else 1) for n, sh in tensor_shapes(s)]
    return specs, ModelFacts(s.arch, s.n_layer, s.n_head, s.n_head_kv)


@pytest.mark.parametrize("name", sorted(TINY))
def test_every_mix_matches_llama_cpp_on_tiny_models(name):
    specs, facts = _tiny(name)
    for mix, want in REF["files"][name]["types"].items():
        assert make_plan(specs, facts, mix).types() == want, mix
    for mix, want in REF["files"][name]["imatrix_types"].items():
        assert make_plan(specs, facts, mix, Options(has_imatrix=True)).types() == want, mix


@pytest.mark.parametrize("arch", ["qwen3moe", "phi3"])
def test_every_mix_matches_llama_cpp_on_moe_and_fused_attention(arch):
    """8 experts (3-D expert tensors, a router kept as it is; attn_v, attn_k Q8_0) and a
    fused attn_qkv: llama.cpp's choices for these shapes."""
    shapes, _ = moe_and_fused_specs(arch)
    specs = [TensorSpec(n, s, 0 if len(s) == 1 else 1) for n, s in shapes]
    facts = ModelFacts(arch, 8, 8, 2, 8 if arch == "qwen3moe" else 0)
    recorded = REF["arch_plans"][arch]
    assert len(recorded) == 18
    for mix, types in recorded.items():
        assert make_plan(specs, facts, mix).types() == dict(zip([n for n, _ in shapes], types)), mix


def test_the_mixes_differ_where_llama_cpp_says():
    """The recorded plans are not all alike: the comparison above can fail."""
    tensors, facts = _real("smollm2-135m")
    q4km = make_plan(tensors, facts, "Q4_K_M").types()
    # use_more_bits: the first and last eighth of 30 layers (0-2, 27-29) and every third between
    assert [q4km[f"blk.{i}.ffn_down.weight"] for i in (0, 2, 3, 5, 10, 11, 27)] == \
        ["Q6_K", "Q6_K", "Q4_K", "Q6_K", "Q4_K", "Q6_K", "Q6_K"]
    assert [q4km[f"blk.{i}.attn_v.weight"] for i in (0, 3, 5)] == ["Q8_0", "Q5_0", "Q8_0"]   # fallbacks
    assert q4km["token_embd.weight"] == "Q8_0"          # tied, 576 % 256 != 0
    assert q4km["blk.0.attn_norm.weight"] == "F32"


def test_order_is_llama_cpp_s():
    names = ["token_embd.weight", "blk.10.attn_q.weight", "blk.2.ffn_up.weight",
             "output_norm.weight", "blk.2.attn_k.weight"]
    assert llama_order(names) == ["output_norm.weight", "token_embd.weight", "blk.2.attn_k.weight",
                                  "blk.2.ffn_up.weight", "blk.10.attn_q.weight"]


def test_fallbacks_when_rows_do_not_fit_the_block():
    facts = ModelFacts("llama", 1, 4, 4)
    specs = [TensorSpec("blk.0.attn_q.weight", (320, 64), 1),
             TensorSpec("blk.0.ffn_down.weight", (96, 64), 1),
             TensorSpec("blk.0.ffn_up.weight", (20, 64), 1)]
    for mix, q, down, up in (("Q4_K_S", "Q5_0", "Q5_0", "F16"), ("Q6_K", "Q8_0", "Q8_0", "F16"),
                             ("Q5_K_S", "Q5_1", "Q5_1", "F16"), ("Q3_K_S", "Q4_0", "Q4_0", "F16"),
                             ("IQ4_XS", "IQ4_NL", "IQ4_NL", "F16")):
        p = make_plan(specs, facts, mix, Options(pure=True))
        assert [type_name(s.type_out) for s in p.steps] == [q, down, up], mix
        assert all(s.fallback for s in p.steps)


def test_options_override_output_and_embeddings():
    specs, facts = _tiny("llama")
    p = make_plan(specs, facts, "Q4_K_M", Options(output_tensor_type=tensor_type("q8_0"),
                                                  token_embedding_type=tensor_type("F16")))
    t = p.types()
    assert t["output.weight"] == "Q8_0" and t["token_embd.weight"] == "F16"
    assert make_plan(specs, facts, "Q4_0", Options(leave_output_tensor=True)).types()["output.weight"] == "F16"
    assert make_plan(specs, facts, "Q4_0").types()["output.weight"] == "Q6_K"
    pure = make_plan(specs, facts, "Q4_K_M", Options(pure=True)).types()
    assert {pure[n] for n in pure if n.startswith("blk.") and not n.endswith("norm.weight")} == {"Q4_K"}


def test_names_and_errors():
    assert file_type("q4_k").name == "Q4_K_M" and file_type("Q3_K").name == "Q3_K_M"
    assert file_type("Q4_K_M").ftype == 15 and file_type("Q8_0").ftype == 7
    assert file_type("BF16").ftype == 32 and len(FILE_TYPES) == 20
    with pytest.raises(PlanError, match="unknown quantization type 'Q9_K'.*Q4_K_M"):
        file_type("Q9_K")
    with pytest.raises(PlanError, match="unknown tensor type 'IQ2_XXS'"):
        tensor_type("IQ2_XXS")
    facts = ModelFacts("llama", 1, 4, 4)
    with pytest.raises(PlanError, match="rows of 320 values.*Q4_K"):
        make_plan([TensorSpec("token_embd.weight", (320, 8), 1)], facts, "Q4_0",
                  Options(token_embedding_type=tensor_type("Q4_K")))
