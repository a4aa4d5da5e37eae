"""Built-in English text that every CPython ships, so calibration and held-out evaluation work offline.

- python_reference(): the Python language reference (`pydoc_data.topics`), ~110k tokens. The
  default calibration text.
- stdlib_docstrings(): module, class and function docstrings of a fixed list of standard-library
  modules, ~110k tokens of different prose. The default held-out text for perplexity; it never
  overlaps the calibration default.
Both depend only on the Python version, which reports record.
"""

from __future__ import annotations

import importlib
import inspect

HELDOUT_MODULES = (
    "argparse", "collections", "functools", "itertools", "json", "logging", "subprocess", "threading",
    "unittest", "email", "http.client", "urllib.request", "asyncio", "csv", "datetime", "decimal",
    "fractions", "heapq", "shutil", "pathlib", "socket", "sqlite3", "tarfile", "zipfile", "random",
    "statistics", "textwrap", "typing", "dataclasses", "enum", "contextlib", "pickle", "queue",
    "smtplib", "string", "tempfile", "traceback", "uuid", "weakref", "zoneinfo", "difflib", "doctest",
    "glob", "hashlib", "ipaddress", "locale", "mailbox", "optparse", "os", "pdb", "shlex", "ssl",
    "codecs", "configparser", "copy", "calendar", "base64", "ast",
)


def python_reference() -> list[str]:
    import pydoc_data.topics as topics
    return [topics.topics[k] for k in sorted(topics.topics)]


def stdlib_docstrings() -> list[str]:
    docs: list[str] = []
    for name in HELDOUT_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:     # a trimmed Python build; the text is smaller, and records say which
            continue
        docs.append(inspect.getdoc(module) or "")
        for attr, obj in sorted(vars(module).items()):
            if attr.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            doc = inspect.getdoc(obj)
            if doc:
                docs.append(doc)
    return [d for d in docs if d.strip()]
