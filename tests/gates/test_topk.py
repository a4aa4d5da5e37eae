"""The top-K figures a served check reports (gates/topk.py): exact where they can be, lower bounds
where they cannot, measured against the exact full-vocabulary figures."""

import copy

import pytest
import torch

from awqguard.backends.base import Scores
from awqguard.gates import topk


def _scores(logits: torch.Tensor, targets: torch.Tensor) -> Scores:
    return Scores(targets, torch.log_softmax(logits.double(), -1).float())


@pytest.fixture
def pair():
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(64, 300, generator=g) * 3
    cand = ref + torch.randn(64, 300, generator=g)
    targets = torch.randint(0, 300, (64,), generator=g)
    return _scores(ref, targets), _scores(cand, targets)


def test_top_k_over_the_whole_vocabulary_is_exact(pair):
    ref, cand = pair
    full_k = ref.logprobs.shape[-1]
    assert torch.allclose(topk.kl(topk.as_top_k(ref, full_k), topk.as_top_k(cand, full_k)), topk.kl(ref, cand), atol=1e-4)
    assert torch.allclose(topk.entropy(topk.as_top_k(ref, full_k)), topk.entropy(ref), atol=1e-4)


@pytest.mark.parametrize("k", [1, 5, 20])
def test_kl_and_entropy_estimates_are_lower_bounds_and_the_rest_exact(pair, k):
    ref, cand = pair
    r, c = topk.as_top_k(ref, k), topk.as_top_k(cand, k)
    assert (topk.kl(r, c) <= topk.kl(ref, cand) + 1e-5).all()
    assert (topk.kl(ref, c) <= topk.kl(ref, cand) + 1e-5).all()          # one side served, one in process
    assert (topk.entropy(r) <= topk.entropy(ref) + 1e-5).all()
    assert torch.equal(topk.target_logprobs(r), topk.target_logprobs(ref))
    assert torch.equal(topk.top_token(r), topk.top_token(ref))


def test_a_shorter_row_and_unknown_positions_are_handled(pair):
    ref, _ = pair
    r = topk.as_top_k(ref, 5)
    ids, lps = r.token_ids.clone(), r.logprobs.clone()
    ids[:, 3:], lps[:, 3:] = -1, -torch.inf                               # a server that returned only 3
    short = Scores(r.targets, lps, ids, r.target_logprobs, torch.arange(64) % 2 == 0)
    assert torch.isfinite(topk.entropy(short)).all() and torch.isfinite(topk.kl(short, r)).all()
    assert topk.valid_mask(short).sum() == 32


@pytest.mark.slow
def test_the_top_20_estimate_against_exact_figures_on_the_real_default_model(smollm):
    """SmolLM2 against its 4-bit round-to-nearest copy on the default suite's corpus."""
    from awqguard.backends.local import LocalBackend
    from awqguard.gates.fixtures import load_suite
    from awqguard.gates.perplexity import heldout_windows
    from awqguard.quantizer.config import QuantConfig
    from awqguard.quantizer.rtn import rtn_fake_quantize
    model, tokenizer = smollm
    candidate = copy.deepcopy(model)
    rtn_fake_quantize(candidate, QuantConfig(w_bit=4, group_size=64))
    texts = [d.text for d in load_suite("fixtures/default").documents.values()]
    windows = heldout_windows(tokenizer, texts, 128, 2).tolist()
    with torch.no_grad():
        pairs = list(zip(LocalBackend(model).score(windows, 1), LocalBackend(candidate).score(windows, 1)))
    error = topk.estimator_error(pairs, (20,))[20]
    assert error["kl_above_exact_positions"] == 0 and error["entropy_above_exact_positions"] == 0
    assert 0.45 <= error["kl_share_captured"] < 1.0, error                # measured 0.59 on 1,024 positions
    assert error["entropy_mean_abs_error"] < 0.7, error                   # measured 0.46 nats
