"""Real OpenAI-compatible servers for the served-backend tests: llama-cpp-python's server process on
127.0.0.1 serving the default model's GGUF (or a damaged copy), and a counting proxy in front of one."""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from awqguard.models import resolve_model

MODEL_ALIAS = "smollm2-135m"


def default_gguf() -> Path:
    return resolve_model(None).path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m llama_cpp.server` serving one GGUF with prompt log-probabilities (--logits_all)."""

    def __init__(self, gguf: Path, log: Path, port: int | None = None, threads: int = 2, api_key: str | None = None,
                 logits_all: bool = True):
        self.gguf, self.log, self.port, self.threads = gguf, log, port or free_port(), threads
        self.api_key, self.logits_all = api_key, logits_all
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, wait_s: float = 120) -> "Server":
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(self.gguf), "--model_alias", MODEL_ALIAS,
               "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", "2048",
               "--n_threads", str(self.threads), "--logits_all", str(self.logits_all).lower()]
        if self.api_key:
            cmd += ["--api_key", self.api_key]
        self.process = subprocess.Popen(cmd, stdout=self.log.open("ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}; see {self.log}")
            try:
                headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
                if requests.get(self.url + "/models", timeout=2, headers=headers).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"the server did not answer within {wait_s} s; see {self.log}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


def zeroed_copy(source: Path, target: Path, names: tuple[str, ...]) -> Path:
    """A copy of a GGUF with the named tensors' data set to zero through the gguf package."""
    import gguf
    shutil.copyfile(source, target)
    reader = gguf.GGUFReader(str(target), "r+")
    found = [t for t in reader.tensors if t.name in names]
    assert len(found) == len(names), f"missing tensors: {set(names) - {t.name for t in found}}"
    for tensor in found:
        tensor.data[...] = 0
    reader.data.flush()
    del reader
    return target


class CountingProxy:
    """A forwarding HTTP proxy that counts the requests it holds open at once (the peak)."""

    def __init__(self, upstream: str, refuse_first: int = 0, refuse_status: int = 503):
        """`refuse_first` POSTs are answered `refuse_status` without reaching the server (a busy gateway)."""
        self.upstream = upstream.rstrip("/").rsplit("/v1", 1)[0]      # the server root: paths keep their /v1
        self.in_flight = self.peak = self.forwarded = self.refused = 0
        self.refuse_first, self.refuse_status = refuse_first, refuse_status
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _forward(self, method):
                with proxy.lock:
                    proxy.in_flight += 1
                    proxy.peak = max(proxy.peak, proxy.in_flight)
                try:
                    body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
                    headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization", "content-type")}
                    answer = requests.request(method, proxy.upstream + self.path, data=body, timeout=600,
                                              headers=headers)
                    self.send_response(answer.status_code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer.content)))
                    self.end_headers()
                    self.wfile.write(answer.content)
                finally:
                    with proxy.lock:
                        proxy.in_flight -= 1
                        proxy.forwarded += 1

            def do_GET(self):
                self._forward("GET")

            def do_POST(self):
                with proxy.lock:
                    refuse = proxy.refused < proxy.refuse_first
                    proxy.refused += refuse
                if refuse:
                    self.rfile.read(int(self.headers.get("Content-Length") or 0))
                    self.send_response(proxy.refuse_status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self._forward("POST")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> "CountingProxy":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def llama_cpp_server_available() -> bool:
    import importlib.util
    return importlib.util.find_spec("llama_cpp") is not None and importlib.util.find_spec("uvicorn") is not None


REQUIRE_ENV = "AWQGUARD_REQUIRE_SERVER"       # set by CI: a missing server is a failure, not a skip


def require_server() -> None:
    """Skip the calling test module without llama-cpp-python[server] (fail it where CI requires it)."""
    if llama_cpp_server_available():
        return
    if os.environ.get(REQUIRE_ENV):
        raise RuntimeError(f"{REQUIRE_ENV} is set but llama-cpp-python[server] is not installed")
    import pytest
    pytest.skip("needs llama-cpp-python[server] (bash scripts/install.sh --served)", allow_module_level=True)
os.environ.setdefault("PYTHONUNBUFFERED", "1")
