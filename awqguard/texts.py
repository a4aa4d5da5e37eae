"""Built-in English text that every CPython ships, so calibration and held-out evaluation work offline.

- python_reference(): the Python language reference (`pydoc_data.topics`), ~110k tokens. The
  default calibration text.
- calibration_docstrings(): docstrings of another, disjoint list of standard-library modules.
- stdlib_docstrings(): module, class and function docstrings of a fixed list of standard-library
  modules, ~110k tokens of different prose. The default held-out text for perplexity; it never
  overlaps the calibration default.
Both depend only on the Python version, which reports record.
"""

from __future__ import annotations

import importlib
import inspect

# Disjoint module lists: calibration text never overlaps the held-out text.
CALIBRATION_MODULES = (
    "inspect", "io", "re", "sys", "time", "math", "operator", "types", "warnings", "xml.dom.minidom",
    "html.parser", "urllib.parse", "http.server", "http.cookies", "imaplib", "ftplib", "poplib", "nntplib",
    "telnetlib", "socketserver", "xmlrpc.client", "multiprocessing", "concurrent.futures", "selectors",
    "signal", "mmap", "ctypes", "sched", "bisect", "array", "struct", "codeop", "dis", "tokenize",
    "pydoc", "pprint", "reprlib", "graphlib", "numbers", "cmath", "gzip", "bz2", "lzma", "zlib", "hmac",
    "secrets", "getpass", "curses", "platform", "sysconfig", "gettext", "argparse", "fileinput", "filecmp",
    "tkinter", "turtle", "wave", "colorsys", "plistlib", "netrc", "mimetypes", "quopri", "binascii",
    "unicodedata", "stringprep", "timeit", "trace", "tracemalloc", "faulthandler", "venv", "zipapp",
    "runpy", "importlib", "pkgutil", "modulefinder", "symtable", "keyword", "token", "pyclbr",
    "py_compile", "compileall", "webbrowser", "wsgiref.simple_server", "email.message", "json.decoder",
    "logging.handlers", "unittest.mock", "asyncio.streams", "collections.abc", "copyreg", "shelve", "dbm",
    "sqlite3.dbapi2", "configparser", "tomllib", "netrc", "cgi", "chunk", "sndhdr", "imghdr",
)
HELDOUT_MODULES = (
    "collections", "functools", "itertools", "json", "logging", "subprocess", "threading",
    "unittest", "email", "http.client", "urllib.request", "asyncio", "csv", "datetime", "decimal",
    "fractions", "heapq", "shutil", "pathlib", "socket", "sqlite3", "tarfile", "zipfile", "random",
    "statistics", "textwrap", "typing", "dataclasses", "enum", "contextlib", "pickle", "queue",
    "smtplib", "string", "tempfile", "traceback", "uuid", "weakref", "zoneinfo", "difflib", "doctest",
    "glob", "hashlib", "ipaddress", "locale", "mailbox", "optparse", "os", "pdb", "shlex", "ssl",
    "codecs", "copy", "calendar", "base64", "ast",
)


def python_reference() -> list[str]:
    import pydoc_data.topics as topics
    return [topics.topics[k] for k in sorted(topics.topics)]


def stdlib_docstrings(modules: tuple[str, ...] = HELDOUT_MODULES) -> list[str]:
    """Docstrings of `modules` (default: the held-out list), in a fixed order."""
    import warnings
    docs: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # deprecated modules and attributes warn when touched
        for name in modules:
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


def calibration_docstrings() -> list[str]:
    """Docstrings of the calibration modules, minus any text that also occurs in the held-out set."""
    heldout = set(stdlib_docstrings())
    return [d for d in stdlib_docstrings(CALIBRATION_MODULES) if d not in heldout]


def default_calibration() -> list[str]:
    """The built-in calibration text: the language reference plus the calibration docstrings.

    The language reference alone is narrow (grammar and semantics); with it alone, AWQ recovered 45%
    of round-to-nearest's held-out perplexity gap on SmolLM2-135M, against 67% with this mix.
    """
    return python_reference() + calibration_docstrings()
