"""A served candidate against the in-process check, and what concurrency buys, on this machine.

1. Concurrency: the default suite's answer prompts (question and paraphrases, both seeds) sent to
   llama.cpp's own `llama-server` with parallel slots (it batches concurrent requests), once with
   max_concurrency 1 and once with 8; wall time of each and the speedup. Needs a llama-server
   binary (--llama-server PATH; built from llama-cpp-python's sdist, see the README). Without one
   the speedup is reported as not measured: llama-cpp-python's server answers one request at a
   time, so a speedup against it would measure its lock.
2. Check time: the default check with the default GGUF as the candidate, once in this process and
   once served by llama-cpp-python's server (prompt log-probabilities on), each from an empty run
   cache; wall time of each and their gates. Same machine, same run.
Run: python bench/served.py [--llama-server PATH] [--limit N] [--skip-check]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "served"))
from _util import emit  # noqa: E402
from servers import Server, default_gguf, free_port  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def llama_server(binary: Path, log: Path, slots: int) -> tuple[subprocess.Popen, str]:
    import requests
    port = free_port()
    process = subprocess.Popen([str(binary), "-m", str(default_gguf()), "--host", "127.0.0.1", "--port", str(port),
                                "-np", str(slots), "-c", str(2048 * slots), "-t", str(os.cpu_count() or 2),
                                "--alias", "smollm2-135m", "--flash-attn", "off"],
                               stdout=log.open("ab"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(600):       # about two minutes: it answers 503 while it loads the model
        try:
            if requests.get(url + "/models", timeout=2).status_code == 200:
                return process, url
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"llama-server did not start; see {log}")


def suite_prompts(limit: int | None) -> tuple[list[str], object, object]:
    """The default suite's answer prompts as the candidate run renders them (built-in retrieval)."""
    from awqguard.gates.config import DEFAULTS
    from awqguard.gates.load import load_suite_input
    from awqguard.gates.pipeline import retrieval_stage
    from awqguard.gates.runner import _prompt, plan, settings_from
    from awqguard.models import load_tokenizer, resolve_model
    config = {**DEFAULTS, "limit": limit, "pipeline": {**DEFAULTS["pipeline"], "quantize_embedder": False}}
    suite_input = load_suite_input(config)
    settings = settings_from(config)
    retriever = retrieval_stage(config["pipeline"], suite_input.chunks).reference
    main, _ = plan(suite_input.items, retriever, settings)
    tokenizer = load_tokenizer(resolve_model(None))
    return [_prompt(tokenizer, retriever, r, settings) for r in main], tokenizer, settings


def concurrency(binary: Path | None, limit: int | None, log_dir: Path) -> dict:
    if binary is None or not binary.exists():
        return {"measured": False, "why": "no llama-server binary given (--llama-server PATH); llama-cpp-python's "
                                          "server handles one request at a time, so it cannot show a speedup"}
    from awqguard.backends.http import Endpoint
    from awqguard.backends.served import ServedBackend
    prompts, tokenizer, settings = suite_prompts(limit)
    process, url = llama_server(binary, log_dir / "llama-server.log", slots=8)
    try:
        walls = {}
        for n in (1, 8):
            backend = ServedBackend(Endpoint(url, max_concurrency=n), tokenizer, use_cache=False)
            start = time.perf_counter()
            backend.generate(prompts, settings.decoding, settings.seeds, budgets=[settings.max_new_tokens["qa"]] * len(prompts))
            walls[n] = round(time.perf_counter() - start, 1)
            dialect = backend.server.dialect
    finally:
        process.kill()
    return {"measured": True, "server": "llama-server, 8 parallel slots", "dialect": dialect,
            "requests": len(prompts) * len(settings.seeds), "sequential_s": walls[1], "concurrency_8_s": walls[8],
            "speedup": round(walls[1] / walls[8], 2)}


def check(candidate: str, out: Path, cache: Path, limit: int | None, extra: dict | None = None) -> dict:
    import yaml
    cfg = out.parent / f"{out.name}.yaml"
    cfg.write_text(yaml.safe_dump({"candidate": extra or candidate, "out": str(out), "limit": limit}))
    env = dict(os.environ, CI="1", AWQGUARD_CACHE=str(cache))
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "awqguard.cli", "check", "--config", str(cfg)],
                          capture_output=True, text=True, env=env)
    wall = round(time.perf_counter() - start, 1)
    results = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else {}
    return {"exit": done.returncode, "wall_s": wall, "error": done.stderr.strip()[-400:] if done.returncode > 1 else None,
            "failed": [g["id"] for g in results.get("gates", []) if g["status"] == "fail"],
            "warned": [g["id"] for g in results.get("gates", []) if g["status"] == "warn"],
            "skipped": [g["id"] for g in results.get("gates", []) if g["status"] == "skip"],
            "perplexity_ratio": results.get("metrics", {}).get("perplexity.ratio", {}).get("value"),
            "kl_mean": results.get("metrics", {}).get("kl.mean", {}),
            "stages_s": results.get("timing", {}).get("stages"), "requests": results.get("timing", {}).get("requests")}


def check_times(limit: int | None, work: Path) -> dict:
    """Both checks share the model conversion and quantized-embedder cache, each with its own empty run cache."""
    gguf = str(default_gguf())
    in_process = check(gguf, work / "in-process", work / "cache-a", limit)
    server = Server(default_gguf(), work / "llama-cpp-python.log").start()
    try:
        served = check(server.url, work / "served", work / "cache-b", limit,
                       {"endpoint": server.url, "max_concurrency": 2})
    finally:
        server.stop()
    return {"in_process": in_process, "served_llama_cpp_python": served,
            "served_over_in_process": round(served["wall_s"] / in_process["wall_s"], 2)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--llama-server", type=Path, default=None, help="llama.cpp's llama-server binary")
    ap.add_argument("--limit", type=int, default=None, help="only the first N items (default: all)")
    ap.add_argument("--skip-check", action="store_true", help="only the concurrency part")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        payload = {"bench": "served", "limit": args.limit, "cpu_count": os.cpu_count(),
                   "concurrency": concurrency(args.llama_server, args.limit, work)}
        if not args.skip_check:
            payload["check"] = check_times(args.limit, work)
    emit(payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
