"""The Backend protocol: the in-process backend meets it, and the engine needs nothing else."""

import pytest
import torch

import tiny_models
from awqguard.backends import Backend, BackendInfo, Decoding, LocalBackend
from awqguard.gates.engine import run_gates
from engine_helpers import config, reduced_suite

FAST = dict(pipeline={"chunk_tokens": 24, "chunk_overlap": 6, "prompt_chunks": 2, "quantize_embedder": False},
            decoding={"max_new_tokens": 8}, probes={"items": 0}, entropy={"tokens": 40},
            perplexity={"window": 48, "max_windows": 2}, seeds=[0])


class ProtocolOnly:
    """A backend that offers exactly the protocol and nothing more, by delegation: any attribute the
    engine reached for beyond it (a model, its modules, its device) would raise AttributeError."""

    __slots__ = ("_inner", "info", "tokenizer", "calls")

    def __init__(self, inner: LocalBackend):
        self._inner, self.info, self.tokenizer, self.calls = inner, inner.info, inner.tokenizer, []

    @property
    def vocab_size(self):
        return self._inner.vocab_size

    @property
    def score_prefix(self):
        return self._inner.score_prefix

    @property
    def scoring_unavailable(self):
        return self._inner.scoring_unavailable

    def generate(self, *args, **kwargs):
        self.calls.append("generate")
        return self._inner.generate(*args, **kwargs)

    def score(self, *args, **kwargs):
        self.calls.append("score")
        return self._inner.score(*args, **kwargs)

    def weight_bytes(self):
        return self._inner.weight_bytes()


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("AWQGUARD_CACHE", str(tmp_path / "cache"))


def _backend(seed: int, label: str) -> LocalBackend:
    return LocalBackend(tiny_models.build("llama-gqa", seed), tiny_models.char_tokenizer(), label, label)


def test_the_local_backend_meets_the_protocol_and_describes_its_model():
    backend = _backend(0, "tiny")
    assert isinstance(backend, Backend)
    assert backend.info == BackendInfo("tiny", "tiny", False, dtype="float32", device="cpu", kernel_paths=("float",))
    assert backend.vocab_size == tiny_models.VOCAB
    assert backend.weight_bytes() > 0


def test_scores_are_the_models_own_log_probabilities_for_every_sequence_in_order():
    backend = _backend(0, "tiny")
    sequences = [[5, 6, 7, 8, 9], [9, 8, 7, 6, 5], [4, 4, 4]]       # two of one length batch together
    scores = list(backend.score(sequences, 2))
    assert [s.targets.tolist() for s in scores] == [[7, 8, 9], [7, 6, 5], [4]]
    for seq, s in zip(sequences, scores):
        logits = backend.model(input_ids=torch.tensor([seq])).logits[0, 1:-1]
        assert torch.allclose(s.logprobs, torch.log_softmax(logits.float(), -1), atol=1e-5)
        assert s.full_vocabulary and s.logprobs.shape == (len(seq) - 2, tiny_models.VOCAB)


def test_generation_leaves_the_callers_tokenizer_as_it_was():
    tokenizer = tiny_models.char_tokenizer()
    tokenizer.padding_side = "right"
    backend = LocalBackend(tiny_models.build("llama-gqa", 0), tokenizer, "tiny", "tiny")
    out = backend.generate(["user: hi\nassistant: ", "user: a longer question\nassistant: "], Decoding(), (0, 1),
                           budgets=[4, 4])
    assert len(out) == 2 and all(len(per_seed) == 2 for per_seed in out)
    assert tokenizer.padding_side == "right"


def test_the_engine_runs_on_backends_that_offer_only_the_protocol(tmp_path):
    suite = reduced_suite(tmp_path / "suite", {"qa": 2, "long": 1})
    reference, candidate = ProtocolOnly(_backend(0, "ref")), ProtocolOnly(_backend(1, "cand"))
    results = run_gates(config(suite=str(suite), **FAST), use_cache=False, reference=reference, candidate=candidate)
    assert {"generate", "score"} <= set(reference.calls) and {"generate", "score"} <= set(candidate.calls)
    assert results["metrics"]["perplexity.ratio"]["value"] != pytest.approx(1.0)    # two different models
    assert results["environment"]["candidate"]["source"] == "cand"


def test_a_mixed_check_samples_in_process_in_the_servers_order():
    """One variant served by llama.cpp (top-p before temperature), one in process: the in-process decoder
    follows the server's order; two served or two in-process variants, or greedy decoding, change nothing."""
    import copy
    import dataclasses

    from awqguard.gates.config import DEFAULTS
    from awqguard.gates.engine import Models, matched_sampling
    from awqguard.gates.load import Contender
    from awqguard.gates.runner import settings_from

    class LlamaCppServed:            # only what matched_sampling reads of a ServedBackend
        sampler_order = "top-p-first"
    local = Contender(_backend(0, "ref"), "ref", "", "ref", False)
    served = Contender(LlamaCppServed(), "cand", "", "cand", True, endpoint="http://127.0.0.1:1/v1")
    settings = settings_from(copy.deepcopy(DEFAULTS))
    assert matched_sampling(settings, Models(local, served)).decoding.order == "top-p-first"
    assert matched_sampling(settings, Models(served, local)).decoding.order == "top-p-first"
    for models in (Models(local, local), Models(served, served)):
        assert matched_sampling(settings, models) == settings
    greedy = dataclasses.replace(settings, decoding=dataclasses.replace(settings.decoding, greedy=True))
    assert matched_sampling(greedy, Models(local, served)) == greedy
