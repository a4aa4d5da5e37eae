import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "gates"))    # engine_helpers

from awqguard.gates.engine import run_gates  # noqa: E402
from awqguard.report.outputs import write_outputs  # noqa: E402


@pytest.fixture(scope="session")
def failing_check(tmp_path_factory):
    """A far candidate's check on a tiny model, written to disk: some gates fail."""
    from engine_helpers import config
    from helpers import FAST, tiny_check
    root = tmp_path_factory.mktemp("report")
    folders = tiny_check(root)
    mp = pytest.MonkeyPatch()
    mp.setenv("AWQGUARD_CACHE", str(root / "cache"))
    try:
        results = run_gates(config(reference=str(folders["reference"]), candidate=str(folders["far"]),
                                   suite=str(folders["suite"]), **FAST))
    finally:
        mp.undo()
    paths = write_outputs(results, root / "out")
    return json.loads(paths["results"].read_text()), paths
