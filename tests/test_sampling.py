"""Sampler: each filter against a hand-computed example, seeds, bias, penalties, logprobs."""
from __future__ import annotations

import math

import numpy as np
import pytest

from llamalite import _core
from llamalite.sampling import Sampler, SamplingParams


def f32(*v: float) -> np.ndarray:
    return np.array(v, dtype=np.float32)


def support(params: SamplingParams, logits: np.ndarray, history=(), n: int = 400) -> dict[int, int]:
    """How often each token comes out over n draws."""
    s = Sampler(params, len(logits))
    counts: dict[int, int] = {}
    for _ in range(n):
        t = s.sample(logits, list(history)).token
        counts[t] = counts.get(t, 0) + 1
    return counts


def kept(params: SamplingParams, logits: np.ndarray) -> dict[int, float]:
    """The distribution sampled from, read back through logprobs of every kept token."""
    p = SamplingParams(**{**params.__dict__, "logprobs": len(logits)})
    r = Sampler(p, len(logits)).sample(logits, [])
    return {i: math.exp(lp) for i, lp in r.top_logprobs}


# --- the C++ top-k ---

@pytest.mark.parametrize("n,k", [(10, 3), (1000, 5), (5000, 40), (300, 300), (300, 1000), (70, 0)])
def test_top_k_indices_matches_a_stable_sort(n, k):
    rng = np.random.default_rng(n + k)
    x = rng.integers(-20, 20, n).astype(np.float32)   # many ties
    want = np.lexsort((np.arange(n), -x))[:k]
    assert _core.top_k_indices(x, k).tolist() == want.tolist()


def test_top_k_indices_nan_counts_as_minus_inf_and_bad_input():
    x = f32(np.nan, 1.0, -np.inf, 3.0)
    assert _core.top_k_indices(x, 2).tolist() == [3, 1]
    assert _core.top_k_indices(x, 4).tolist()[:2] == [3, 1]
    with pytest.raises(ValueError, match="1-D"):
        _core.top_k_indices(np.zeros((2, 2), np.float32), 1)
    with pytest.raises(ValueError, match="k must be"):
        _core.top_k_indices(x, -1)


def top_p_reference(x: np.ndarray, p: float) -> list[int]:
    order = np.lexsort((np.arange(len(x)), -x))
    probs = np.exp(x[order].astype(np.float64) - x.max())
    cum = np.cumsum(probs)
    return order[: int(np.searchsorted(cum, p * cum[-1], side="left")) + 1].tolist()


@pytest.mark.parametrize("scale,p", [(3.0, 0.9), (0.3, 0.5), (10.0, 0.95), (1.0, 1.0), (5.0, 1e-9)])
def test_top_p_indices_is_the_exact_nucleus(scale, p):
    rng = np.random.default_rng(int(scale * 10))
    x = (scale * rng.standard_normal(20_000)).astype(np.float32)
    got = _core.top_p_indices(x, p).tolist()
    assert sorted(got) == sorted(top_p_reference(x, p))
    assert x[got[0]] >= x[got[-1]] - 0.011             # coarsely best first


def test_top_p_indices_ties_nan_and_inf():
    x = f32(1.0, 2.0, 2.0, np.nan, -np.inf, 2.0)
    # three equal best tokens of 0.3189 each: p = 0.5 needs two, the lower ids
    assert sorted(_core.top_p_indices(x, 0.5).tolist()) == [1, 2]
    assert sorted(_core.top_p_indices(x, 1.0).tolist()) == [0, 1, 2, 5]
    assert _core.top_p_indices(f32(-np.inf, np.nan), 0.5).tolist() == []
    with pytest.raises(ValueError, match="p must be"):
        _core.top_p_indices(x, 0.0)


# --- greedy ---

def test_greedy_takes_argmax_ties_to_lowest_id():
    s = Sampler(SamplingParams(temperature=0.0), 5)
    assert s.sample(f32(1, 3, 2, 3, 0), []).token == 1
    assert s.sample(f32(-5, -1, -2, -1, -9), []).token == 1


# --- each filter on a hand-computed example ---

LOGITS = f32(2.0, 1.0, 0.0, -1.0, -3.0)
# exp(LOGITS) = 7.389, 2.718, 1, 0.3679, 0.0498 (sum 11.525)
# softmax(LOGITS) = 0.6411, 0.2359, 0.0868, 0.0319, 0.0043


def test_top_k_keeps_the_k_best_renormalised():
    d = kept(SamplingParams(top_k=2, top_p=1.0, min_p=0.0, temperature=1.0), LOGITS)
    e = math.exp(1.0)
    assert set(d) == {0, 1}
    assert d[0] == pytest.approx(e / (e + 1), rel=1e-6)


def test_top_p_keeps_the_shortest_prefix_reaching_p():
    base = dict(top_k=0, min_p=0.0, temperature=1.0)
    # cumulative: 0.6411, 0.8770, 0.9638, 0.9957, 1.0
    assert set(kept(SamplingParams(top_p=0.60, **base), LOGITS)) == {0}
    assert set(kept(SamplingParams(top_p=0.80, **base), LOGITS)) == {0, 1}
    assert set(kept(SamplingParams(top_p=0.90, **base), LOGITS)) == {0, 1, 2}
    assert set(kept(SamplingParams(top_p=0.97, **base), LOGITS)) == {0, 1, 2, 3}
    # after top_k=3 top-p normalises over those 3: 0.6652, 0.2447, 0.0900
    assert set(kept(SamplingParams(top_k=3, top_p=0.90, min_p=0.0), LOGITS)) == {0, 1}


def test_top_p_without_top_k_on_a_big_vocabulary_uses_the_whole_mass():
    rng = np.random.default_rng(3)
    x = rng.standard_normal(50_000).astype(np.float32)
    p = np.exp(x.astype(np.float64) - x.max())
    p /= p.sum()
    order = np.lexsort((np.arange(len(x)), -x))
    n_want = int(np.searchsorted(np.cumsum(p[order]), 0.5)) + 1   # a few thousand tokens
    d = kept(SamplingParams(top_k=0, top_p=0.5, min_p=0.0, temperature=1.0), x)
    assert sorted(d) == sorted(order[:n_want].tolist())


@pytest.mark.parametrize("n_peak,p", [(20, 0.9), (300, 0.9), (3000, 0.95)])
def test_top_p_without_top_k_small_and_large_nuclei(n_peak, p):
    # The nucleus lies in the best 64, the best 512, or beyond (the C++ fallback).
    rng = np.random.default_rng(n_peak)
    x = rng.standard_normal(20_000).astype(np.float32)
    x[rng.choice(20_000, n_peak, replace=False)] += 12.0
    d = kept(SamplingParams(top_k=0, top_p=p, min_p=0.0, temperature=1.0), x)
    assert sorted(d) == sorted(top_p_reference(x, p))


def test_min_p_keeps_tokens_at_least_min_p_of_the_best():
    base = dict(top_k=0, top_p=1.0, temperature=1.0)
    # p_i / p_0 = exp(l_i - 2): 1, 0.368, 0.135, 0.0498, 0.0067
    assert set(kept(SamplingParams(min_p=0.30, **base), LOGITS)) == {0, 1}
    assert set(kept(SamplingParams(min_p=0.10, **base), LOGITS)) == {0, 1, 2}
    assert set(kept(SamplingParams(min_p=0.01, **base), LOGITS)) == {0, 1, 2, 3}


def test_temperature_scales_after_the_filters():
    d = kept(SamplingParams(top_k=2, top_p=1.0, min_p=0.0, temperature=0.5), LOGITS)
    assert d[0] == pytest.approx(1 / (1 + math.exp(-2.0)), rel=1e-6)


def test_draws_follow_the_kept_distribution():
    counts = support(SamplingParams(top_k=2, top_p=1.0, min_p=0.0, temperature=1.0, seed=5),
                     LOGITS, n=4000)
    assert set(counts) == {0, 1}
    assert counts[0] / 4000 == pytest.approx(math.e / (math.e + 1), abs=0.03)


# --- seeds ---

def test_same_seed_same_tokens_and_none_is_random():
    x = np.random.default_rng(1).standard_normal(1000).astype(np.float32)
    params = dict(temperature=1.5, top_k=0, top_p=1.0, min_p=0.0)

    def run(seed):
        s = Sampler(SamplingParams(seed=seed, **params), 1000)
        return [s.sample(x, []).token for _ in range(30)]

    assert run(42) == run(42)
    assert run(42) != run(43)
    assert run(None) != run(None)


# --- logit bias and penalties ---

def test_logit_bias_adds_and_bans():
    s = Sampler(SamplingParams(temperature=0.0, logit_bias={2: 5.0}), 5)
    assert s.sample(LOGITS, []).token == 2
    s = Sampler(SamplingParams(temperature=0.0, logit_bias={0: -math.inf}), 5)
    assert s.sample(LOGITS, []).token == 1
    counts = support(SamplingParams(seed=0, logit_bias={0: -math.inf, 1: -math.inf}), LOGITS)
    assert 0 not in counts and 1 not in counts
    with pytest.raises(ValueError, match="-inf"):
        Sampler(SamplingParams(temperature=0.0, logit_bias={i: -math.inf for i in range(5)}),
                5).sample(LOGITS, [])


def test_repeat_penalty_divides_positive_multiplies_negative():
    p = SamplingParams(temperature=0.0, repeat_penalty=2.0, logprobs=5)
    r = Sampler(p, 5).sample(f32(2.0, 1.5, -1.0, 0.0, 0.0), history=[0, 2, 2])
    # penalised: 1.0, 1.5, -2.0, 0, 0 (counts do not matter for repeat_penalty)
    assert r.token == 1
    lps = dict(r.top_logprobs)
    assert lps[0] - lps[2] == pytest.approx(3.0, abs=1e-6)
    assert lps[1] - lps[0] == pytest.approx(0.5, abs=1e-6)


def test_presence_and_frequency_penalties():
    p = SamplingParams(temperature=0.0, presence_penalty=0.5, frequency_penalty=0.25, logprobs=3)
    r = Sampler(p, 3).sample(f32(3.0, 2.6, 0.0), history=[0, 0, 0, 1])
    lps = dict(r.top_logprobs)
    # 3 - 0.5 - 3 * 0.25 = 1.75 ; 2.6 - 0.5 - 0.25 = 1.85 ; 0
    assert r.token == 1
    assert lps[1] - lps[0] == pytest.approx(0.1, abs=1e-5)
    assert lps[0] - lps[2] == pytest.approx(1.75, abs=1e-5)


def test_repeat_last_n_window():
    x = f32(2.0, 1.9, -5.0)
    hist = [0] + [2] * 4                       # token 0 is outside the last 4
    assert Sampler(SamplingParams(temperature=0.0, repeat_penalty=2.0, repeat_last_n=4),
                   3).sample(x, hist).token == 0
    assert Sampler(SamplingParams(temperature=0.0, repeat_penalty=2.0, repeat_last_n=-1),
                   3).sample(x, hist).token == 1
    assert Sampler(SamplingParams(temperature=0.0, repeat_penalty=2.0, repeat_last_n=0),
                   2).sample(f32(2.0, 1.9), [0]).token == 0


def test_penalties_do_not_modify_the_callers_logits():
    x = f32(2.0, 1.0)
    Sampler(SamplingParams(repeat_penalty=1.5, logit_bias={1: 1.0}, seed=0), 2).sample(x, [0])
    assert x.tolist() == [2.0, 1.0]


# --- logprobs ---

@pytest.mark.parametrize("params", [
    dict(temperature=0.7, top_k=3, top_p=1.0, min_p=0.0),
    dict(temperature=1.0, top_k=0, top_p=0.9, min_p=0.0),
    dict(temperature=1.3, top_k=40, top_p=0.95, min_p=0.05),
    dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0),
    dict(temperature=0.0),
])
def test_logprobs_are_normalised_over_the_kept_distribution(params):
    x = np.random.default_rng(7).standard_normal(300).astype(np.float32) * 2
    r = Sampler(SamplingParams(logprobs=300, seed=1, **params), 300).sample(x, [])
    lps = [lp for _, lp in r.top_logprobs]
    assert sum(math.exp(lp) for lp in lps) == pytest.approx(1.0, abs=1e-5)
    assert lps == sorted(lps, reverse=True)
    assert dict(r.top_logprobs)[r.token] == pytest.approx(r.logprob)


def test_logprobs_top_n_and_none():
    x = f32(0.0, 3.0, 1.0, 2.0)
    r = Sampler(SamplingParams(temperature=0.0, logprobs=2), 4).sample(x, [])
    assert [i for i, _ in r.top_logprobs] == [1, 3]
    lse = math.log(sum(math.exp(v) for v in (0, 3, 1, 2)))
    assert r.logprob == pytest.approx(3.0 - lse, abs=1e-6)
    r = Sampler(SamplingParams(temperature=0.0, logprobs=0), 4).sample(x, [])
    assert r.top_logprobs == [] and r.logprob is not None
    r = Sampler(SamplingParams(temperature=0.0), 4).sample(x, [])
    assert r.logprob is None and r.top_logprobs is None


# --- validation ---

@pytest.mark.parametrize("bad,match", [
    (dict(temperature=-0.1), "temperature"),
    (dict(temperature=float("nan")), "temperature"),
    (dict(top_k=-2), "top_k"),
    (dict(top_k=1.5), "top_k"),
    (dict(top_p=0.0), "top_p"),
    (dict(top_p=1.5), "top_p"),
    (dict(min_p=-0.1), "min_p"),
    (dict(repeat_penalty=0.0), "repeat_penalty"),
    (dict(repeat_last_n=-2), "repeat_last_n"),
    (dict(presence_penalty=float("inf")), "presence_penalty"),
    (dict(frequency_penalty="x"), "frequency_penalty"),
    (dict(seed=-1), "seed"),
    (dict(logit_bias={10: 1.0}), r"logit_bias: token id 10 is outside the vocabulary \[0, 10\)"),
    (dict(logit_bias={"1": 1.0}), "logit_bias"),
    (dict(logit_bias={1: float("nan")}), "logit_bias"),
    (dict(max_tokens=0), "max_tokens"),
    (dict(stop=[""]), "stop"),
    (dict(stop_token_ids=[-1]), "stop_token_ids"),
    (dict(logprobs=-1), "logprobs"),
    (dict(logprobs=11), "logprobs"),
])
def test_validation_names_the_bad_parameter(bad, match):
    with pytest.raises(ValueError, match=match):
        SamplingParams(**bad).validate(10)
    with pytest.raises(ValueError, match=match):
        Sampler(SamplingParams(**bad), 10)


def test_defaults_are_valid_and_stop_accepts_a_string():
    SamplingParams().validate(10)
    assert SamplingParams(stop="\n").stop == ["\n"]


def test_sample_checks_the_logits_shape():
    with pytest.raises(ValueError, match="shape"):
        Sampler(SamplingParams(), 10).sample(np.zeros(9, np.float32), [])
