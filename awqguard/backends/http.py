"""The HTTP side of a served backend: one OpenAI-compatible endpoint (docs/architecture.md §7c).

Requests run on a thread pool of `max_concurrency` workers, so never more than that many are in
flight; each has a timeout and is retried with exponential backoff on 429, 5xx and dropped
connections. Every answered request is written to the cache atomically before it is used, keyed
by the endpoint, the model name and the request body (never the API key), so an interrupted run
resumes without asking again what was already answered.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from awqguard import cache, files
from awqguard.errors import AwqguardError

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class EndpointError(AwqguardError):
    """An endpoint that cannot serve the check: unreachable, refusing, or missing what awqguard needs
    (a usage error: exit 4)."""


@dataclass(frozen=True)
class Endpoint:
    """A served model as the configuration names it (`candidate: {endpoint: URL, ...}`)."""

    url: str                               # the API root, ending in /v1
    model: str | None = None               # None: the server's only model
    api_key_env: str | None = None         # the environment variable holding the key
    tokenizer: str | None = None           # a local tokenizer folder; None: the reference's
    max_concurrency: int = 8
    timeout_s: float = 120.0
    retries: int = 4
    top_logprobs: int = 20                 # K of the prompt log-probabilities asked for (vLLM's default --max-logprobs)
    revision: str = ""                     # what is deployed (a checkpoint digest): part of every cache key

    @classmethod
    def of(cls, spec: dict[str, Any]) -> "Endpoint":
        """The endpoint of the config's mapping form (gates/config.py served_spec)."""
        return cls(spec["endpoint"], **{k: v for k, v in spec.items() if k != "endpoint" and v is not None})

    @property
    def base(self) -> str:
        return self.url.rstrip("/")

    def api_key(self) -> str | None:
        if not self.api_key_env:
            return None
        key = os.environ.get(self.api_key_env)
        if not key:
            raise EndpointError(f"{self.base}: api_key_env names {self.api_key_env}, which is not set in the environment")
        return key


@dataclass
class Counts:
    """What the client did in one run: requests answered by the server, answers read from the cache."""

    sent: int = 0
    cached: int = 0
    retried: int = 0
    peak_in_flight: int = 0
    _in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def enter(self) -> None:
        with self._lock:
            self._in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)

    def leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def to_dict(self) -> dict:
        return {"sent": self.sent, "cached": self.cached, "retried": self.retried, "peak_in_flight": self.peak_in_flight}


class Client:
    """Requests to one endpoint: GET for probes, cached POSTs in bounded parallel batches."""

    def __init__(self, endpoint: Endpoint, use_cache: bool = True, backoff_s: float = 0.5):
        import requests
        self.endpoint = endpoint
        self.use_cache = use_cache
        self.backoff_s = backoff_s
        self.counts = Counts()
        self.session = requests.Session()
        key = endpoint.api_key()
        if key:
            self.session.headers["Authorization"] = f"Bearer {key}"
        self.cache_identity: dict[str, Any] = {"url": endpoint.base, "model": endpoint.model,
                                               "revision": endpoint.revision}

    def get(self, path: str, retry: bool = True) -> tuple[int, Any]:
        """(status, parsed JSON or None) of GET base+path; connection failures raise EndpointError."""
        response = self._send("GET", path, None, retry)
        return response.status_code, _json_or_none(response)

    def post(self, path: str, body: dict, retry: bool = True) -> tuple[int, Any]:
        response = self._send("POST", path, body, retry)
        return response.status_code, _json_or_none(response)

    def _send(self, method: str, path: str, body: dict | None, retry: bool):
        import requests
        url = self.endpoint.base + path
        attempts = self.endpoint.retries + 1 if retry else 1
        for attempt in range(attempts):
            try:
                response = self.session.request(method, url, json=body, timeout=self.endpoint.timeout_s)
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt + 1 == attempts:
                    raise EndpointError(f"{url}: {_reason(exc)} after {attempts} attempt(s); is the server running "
                                        f"and reachable from this machine?") from None
            else:
                if response.status_code not in RETRY_STATUS or attempt + 1 == attempts:
                    return response
            self.counts.add("retried")
            time.sleep(self.backoff_s * 2 ** attempt)
        raise AssertionError("unreachable")

    def complete_all(self, bodies: Sequence[dict], on_done: Callable[[], None] | None = None) -> list[dict]:
        """The answers to POST /completions for every body, in order, at most max_concurrency in flight."""
        def one(body: dict) -> dict:
            answer = self.complete(body)
            if on_done is not None:
                on_done()
            return answer
        with ThreadPoolExecutor(max_workers=self.endpoint.max_concurrency) as pool:
            return list(pool.map(one, bodies))

    def complete(self, body: dict) -> dict:
        """One cached completion request; an error answer raises EndpointError naming the URL."""
        path = cache.entry("requests", cache.cache_key({**self.cache_identity, "body": body}), ".json")
        if self.use_cache and (hit := cache.read_json(path)) is not None:
            self.counts.add("cached")
            return hit
        self.counts.enter()
        try:
            status, answer = self.post("/completions", body)
        finally:
            self.counts.leave()
        if status != 200 or not isinstance(answer, dict) or not answer.get("choices"):
            raise EndpointError(f"{self.endpoint.base}/completions answered {status}: {_message(answer)}")
        self.counts.add("sent")
        if self.use_cache:
            files.write_json(path, answer)
        return answer


def _json_or_none(response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _message(answer: Any) -> str:
    """The server's own error text, shortened (never the request, which may be long)."""
    if isinstance(answer, dict):
        err = answer.get("error", answer.get("detail", answer))
        text = err.get("message", err) if isinstance(err, dict) else err
        return str(text)[:300]
    return "no JSON answer" if answer is None else str(answer)[:300]


def _reason(exc: Exception) -> str:
    import requests
    if isinstance(exc, requests.Timeout):
        return "no answer within the timeout"
    return "connection refused or dropped"
