"""Errors users can act on. The CLI prints them as one clear message, never a traceback.

Exit codes follow pytest's meanings (DESIGN.md §9): 1 gate failed, 2 interrupted,
3 internal error, 4 usage or configuration error.
"""

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
