"""`ServedBackend` against a real llama-cpp-python server: its scores line up with the model's own
positions, and a server without prompt log-probabilities gets the teacher-forced gates skipped."""

import pytest
import torch

from awqguard.backends.http import Endpoint
from awqguard.backends.local import LocalBackend
from awqguard.backends.served import ServedBackend
from awqguard.gates import topk
from awqguard.gates.fixtures import load_suite
from awqguard.gates.policy import DEFAULT_GATES
from awqguard.gates.resample import Resampler
from awqguard.gates.teacher import entropy_stage, perplexity_stage
from servers import Server, default_gguf, require_server

require_server()

pytestmark = pytest.mark.slow
TEXT = ("Owners have full control of the organization, including billing, payment methods and deleting the "
        "organization. To hand over ownership, run tarn org transfer; the recipient must accept within 48 hours.")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server(default_gguf(), tmp_path_factory.mktemp("srv") / "server.log").start()
    yield server
    server.stop()


def test_served_scores_line_up_with_the_in_process_model_on_the_same_gguf(server, smollm):
    """A misaligned position would score the wrong token: the values would disagree by nats, not hundredths."""
    model, tokenizer = smollm
    served = ServedBackend(Endpoint(server.url), tokenizer, use_cache=False)
    assert served.server.dialect == "llama-cpp-python" and served.score_prefix == (tokenizer.bos_token_id,)
    ids = [tokenizer.bos_token_id] + tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    remote = next(served.score([ids], 2))
    with torch.no_grad():
        local = next(LocalBackend(model).score([ids], 2))
    assert bool(remote.valid.all()) and remote.top_k == 20
    gap = (topk.target_logprobs(remote) - topk.target_logprobs(local)).abs().mean()
    assert gap < 0.3, f"served and in-process log-probabilities differ by {gap:.3f} nats on average"
    assert (topk.top_token(remote) == topk.top_token(local)).float().mean() >= 0.9
    assert float(topk.kl(local, remote).mean()) < 0.05


def test_a_server_without_prompt_log_probabilities_gets_those_gates_skipped_with_the_reason(tmp_path, smollm):
    _, tokenizer = smollm
    plain = Server(default_gguf(), tmp_path / "plain.log", logits_all=False).start()
    try:
        served = ServedBackend(Endpoint(plain.url), tokenizer, use_cache=False)
        assert "no prompt log-probabilities" in served.scoring_unavailable and plain.url in served.scoring_unavailable
        suite = load_suite("fixtures/default")
        continuations = {"x": {"prompt": "Hi", "tokens": [1, 2, 3]}}
        metrics = {**entropy_stage(served, served, continuations, Resampler()).metrics,
                   **perplexity_stage(served, served, suite, 64, 1, Resampler()).metrics}
    finally:
        plain.stop()
    gates = {g.id: g.judge(metrics.get(g.metric)) for g in DEFAULT_GATES
             if g.id in ("entropy-onset", "entropy-slope", "perplexity-ratio", "kl-mean")}
    assert all(r.status == "skip" and "no prompt log-probabilities" in r.message for r in gates.values()), gates
