"""`awqguard check` against real servers: llama-cpp-python's server processes on 127.0.0.1 serving the
default model's GGUF (and a copy with two tensors zeroed), started and stopped by these tests.

Both variants are served here, so no model loads in the test process; the tokenizer comes from the GGUF.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from servers import CountingProxy, Server, default_gguf, require_server, zeroed_copy

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gates"))
from engine_helpers import reduced_suite  # noqa: E402

require_server()

pytestmark = pytest.mark.slow
API_KEY = "sk-test-0123456789abcdef"          # must never appear in results, report, logs or cache
DAMAGED = ("blk.10.ffn_down.weight", "blk.11.ffn_down.weight")
CONFIG = {"seeds": [0, 1], "probes": {"items": 0},
          "pipeline": {"quantize_embedder": False, "top_k": 3, "prompt_chunks": 1},        # short prompts: CI time
          "decoding": {"max_new_tokens": {"qa": 16, "json": 48, "long": 32}},
          "entropy": {"tokens": 32}, "perplexity": {"window": 64, "max_windows": 2},
          "decision": {"min_items": 1}}          # 4 items: decide on them (the intervals still apply)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    reduced_suite(root / "suite", {"qa": 2, "json": 1, "long": 1})
    return root


@pytest.fixture(scope="module")
def servers(root):
    """Two processes serving the same GGUF, and one serving it with two MLP projections zeroed."""
    os.environ["AWQ_TEST_KEY"] = API_KEY
    started = {name: Server(gguf, root / f"{name}.log", api_key=API_KEY) for name, gguf in (
        ("a", default_gguf()), ("b", default_gguf()),
        ("damaged", zeroed_copy(default_gguf(), root / "damaged.gguf", DAMAGED)))}
    try:
        for server in started.values():
            server.start()
        yield started
    finally:
        for server in started.values():
            server.stop()


def served(url: str, **extra) -> dict:
    return {"endpoint": url, "tokenizer": str(default_gguf()), "api_key_env": "AWQ_TEST_KEY", **extra}


def check(root: Path, name: str, reference: dict, candidate: dict, **popen):
    cfg = root / f"{name}.yaml"
    cfg.write_text(yaml.safe_dump({**CONFIG, "suite": str(root / "suite"), "out": str(root / name),
                                   "reference": reference, "candidate": candidate}))
    env = dict(os.environ, CI="1", AWQGUARD_CACHE=str(root / "cache"))
    return subprocess.Popen([sys.executable, "-m", "awqguard.cli", "check", "--config", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **popen)


def finish(process) -> tuple[int, str]:
    out, err = process.communicate(timeout=900)
    return process.returncode, out + err


def results(root: Path, name: str) -> dict:
    return json.loads((root / name / "results.json").read_text())


def test_an_identical_model_served_by_two_processes_passes_every_gate_on_both_seeds(root, servers):
    with CountingProxy(servers["b"].url) as proxy:
        rc, output = finish(check(root, "identical", served(servers["a"].url),
                                  served(proxy.url, max_concurrency=3)))
    assert rc == 0, output
    doc = results(root, "identical")
    statuses = {g["id"]: g["status"] for g in doc["gates"]}
    assert not {"fail", "warn", "inconclusive"} & set(statuses.values()), statuses
    measured = {"perplexity-ratio", "kl-mean", "entropy-onset", "entropy-slope", "drift-mean"}
    assert all(statuses[g] == "pass" for g in measured), statuses
    assert doc["verdict"] == "pass"
    kl = next(g for g in doc["gates"] if g["id"] == "kl-mean")
    assert "top-20 estimate" in kl["message"] and doc["metrics"]["kl.mean"]["estimate"] == "top-20 estimate"
    records = [json.loads(line) for line in (root / "identical" / "items.jsonl").read_text().splitlines()]
    assert {r["seed"] for r in records} == {0, 1}
    same = sum(r["reference"]["answer"] == r["candidate"]["answer"] for r in records) / len(records)
    assert same >= 0.9, f"the same seed on two processes of one server wrote the same answer in only {same:.0%} of runs"
    assert 2 <= proxy.peak <= 3, f"max_concurrency 3 but {proxy.peak} requests were in flight at once"
    assert doc["timing"]["requests"]["candidate"]["peak_in_flight"] <= 3
    for path in [*(root / "identical").rglob("*"), *(root / "cache").rglob("*.json")]:
        if path.is_file():
            assert API_KEY not in path.read_text(errors="ignore"), f"the API key leaked into {path}"
    assert API_KEY not in output


def test_a_damaged_model_served_against_the_in_process_reference_fails_with_ppl_drift(root, servers):
    rc, output = finish(check(root, "damaged", str(default_gguf()), served(servers["damaged"].url)))
    assert rc == 1, output
    doc = results(root, "damaged")
    failed = {g["id"] for g in doc["gates"] if g["status"] == "fail"}
    assert "perplexity-ratio" in failed and doc["metrics"]["perplexity.ratio"]["value"] > 1.2
    assert "ppl-drift" in doc["summary"]["symptoms"]


def _requests_cached(root: Path) -> int:
    return len(list((root / "cache" / "requests").glob("*.json")))


def test_a_server_killed_mid_run_exits_4_naming_it_and_the_rerun_answers_only_what_is_missing(root, servers):
    victim = Server(default_gguf(), root / "victim.log", api_key=API_KEY).start()
    try:
        before = _requests_cached(root)
        process = check(root, "killed", served(servers["a"].url), served(victim.url, retries=1, revision="victim"))
        deadline = time.monotonic() + 600
        while _requests_cached(root) < before + 12 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
        victim.stop()
        rc, output = finish(process)
        assert rc in (3, 4), output
        assert victim.url in output and "Traceback" not in output
        assert not (root / "killed" / "results.json").exists()
        victim.start()
        rc, output = finish(check(root, "killed", served(servers["a"].url),
                                  served(victim.url, retries=1, revision="victim")))
        assert rc == 0, output
        counts = results(root, "killed")["timing"]["requests"]["candidate"]
        assert counts["cached"] >= 12 and counts["sent"] > 0      # asked only what the killed run had not
    finally:
        victim.stop()


@pytest.mark.parametrize("case", ["unreachable", "not an API root", "no key"])
def test_an_endpoint_that_cannot_serve_exits_4_naming_its_url(root, servers, case):
    from servers import free_port
    url = {"unreachable": f"http://127.0.0.1:{free_port()}/v1",
           "not an API root": servers["a"].url.rsplit("/v1", 1)[0] + "/nothing/v1",
           "no key": servers["a"].url}[case]
    candidate = served(url, retries=0)
    if case == "no key":
        candidate.pop("api_key_env")
    rc, output = finish(check(root, f"bad-{case.replace(' ', '-')}", served(servers["a"].url), candidate))
    assert rc == 4, output
    assert url in output and "Traceback" not in output
    assert {"unreachable": "reachable", "not an API root": "404", "no key": "401"}[case] in output


def test_a_run_in_flight_never_holds_more_than_max_concurrency(root, servers):
    """The client's own bound, seen from the server side through a counting proxy (no cache)."""
    from awqguard.backends.http import Client, Endpoint
    with CountingProxy(servers["a"].url) as proxy:
        client = Client(Endpoint(proxy.url, api_key_env="AWQ_TEST_KEY", max_concurrency=2), use_cache=False)
        bodies = [{"model": "smollm2-135m", "prompt": f"Count to {i}:", "max_tokens": 4, "temperature": 0.0}
                  for i in range(8)]
        client.complete_all(bodies)
    assert client.counts.sent == 8 and proxy.forwarded == 8
    assert proxy.peak == 2


@pytest.mark.parametrize("status", [429, 503])
def test_busy_answers_are_retried_with_backoff_until_the_server_answers(servers, status):
    from awqguard.backends.http import Client, Endpoint
    with CountingProxy(servers["a"].url, refuse_first=3, refuse_status=status) as proxy:
        client = Client(Endpoint(proxy.url, api_key_env="AWQ_TEST_KEY", max_concurrency=1, retries=4),
                        use_cache=False, backoff_s=0.05)
        answer = client.complete({"model": "smollm2-135m", "prompt": "Hello", "max_tokens": 2, "temperature": 0.0})
    assert answer["choices"] and client.counts.retried == 3 and client.counts.sent == 1 and proxy.forwarded == 1
