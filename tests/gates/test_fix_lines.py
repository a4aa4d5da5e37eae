"""Every fix the Problem Map prints names options and config keys that exist: a user who follows a
fix line must not meet "unrecognized arguments" or "unknown key"."""

import re

import pytest

from awqguard.cli import build_parser
from awqguard.gates.config import SCHEMA
from awqguard.gates.problem_map import SYMPTOMS

FIXES = sorted({(s.id, f) for s in SYMPTOMS.values() for f in s.fixes})


def _options(command: str) -> set[str]:
    sub = next(a for a in build_parser()._subparsers._group_actions if a.choices)   # the subcommands
    return {opt for action in sub.choices[command]._actions for opt in action.option_strings}


def _config_key_exists(dotted: str) -> bool:
    node = SCHEMA
    for part in dotted.split("."):
        props = node.get("properties", {})
        if part not in props:
            return False
        node = props[part]
    return True


@pytest.mark.parametrize("symptom,fix", FIXES)
def test_fix_names_existing_options_and_keys(symptom, fix):
    for command, rest in re.findall(r"awqguard (quantize|check|diagnose|tune)((?: --?[\w-]+(?: [^\s,()]+)?)*)", fix):
        for option in re.findall(r"(--[\w-]+)", rest):
            assert option in _options(command), f"{symptom}: `awqguard {command} {option}` does not exist"
    for option in re.findall(r"(?<![\w-])(--[a-z][\w-]*)", fix):           # also those named without a command
        known = set().union(*(_options(c) for c in ("quantize", "check", "diagnose", "tune")))
        assert option in known, f"{symptom}: {option} is no awqguard option"
    for key in re.findall(r"\b((?:pipeline|decoding|decision|quantize)\.[a-z_]+)\b", fix):
        assert _config_key_exists(key), f"{symptom}: config key {key} is not in the schema"
