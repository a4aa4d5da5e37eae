"""Errors users can act on. The CLI prints them as one clear message, never a traceback.

Exit codes follow pytest's meanings (docs/architecture.md §11): 1 gate failed, 2 interrupted,
3 internal error, 4 usage or configuration error.
"""

import re

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_INTERRUPTED = 2
EXIT_INTERNAL = 3
EXIT_USAGE = 4


class AwqguardError(Exception):
    """A problem with the user's input: model, calibration data, options or output folder."""

    exit_code = EXIT_USAGE


class ConfigError(AwqguardError):
    """An option or configuration value that cannot work (names what would)."""


class ModelLoadError(AwqguardError):
    """A model or checkpoint that is missing, unreadable or inconsistent."""


class CalibrationError(AwqguardError):
    """Calibration data that is missing, unreadable or too short."""


class OutputExistsError(AwqguardError):
    """The output folder already holds something we must not overwrite."""


_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")   # CSI and OSC sequences


def strip_ansi(text: str) -> str:
    """`text` without terminal colour and control sequences (third-party errors carry them)."""
    return _ANSI.sub("", text)
