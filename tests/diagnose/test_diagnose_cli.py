"""`awqguard diagnose` end to end on a tiny model, and its section in `awqguard report`."""

import json
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parents[1] / "gates"))     # engine_helpers
sys.path.insert(0, str(Path(__file__).parents[1] / "report"))    # helpers

from awqguard import QuantConfig, quantize  # noqa: E402
from awqguard.cli import main  # noqa: E402

CFG = QuantConfig(group_size=32, n_samples=8, seqlen=32, loss_tokens=128, clip_tokens=64)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from helpers import FAST, tiny_check
    root = tmp_path_factory.mktemp("diagnose")
    folders = tiny_check(root)
    quantize(str(folders["reference"]), out=root / "awq", config=CFG, calib=[folders["suite"]])
    mp = pytest.MonkeyPatch()
    mp.setenv("AWQGUARD_CACHE", str(root / "cache"))
    body = {"reference": str(folders["reference"]), "candidate": str(root / "awq"), "suite": str(folders["suite"]),
            "out": str(root / "out"), **FAST}
    (root / "awqguard.yaml").write_text(yaml.safe_dump(body))
    yield root, folders
    mp.undo()


def test_diagnose_writes_rankings_and_fixes_for_the_candidate(setup, capsys):
    root, folders = setup
    code = main(["diagnose", "--config", str(root / "awqguard.yaml"), "--tokens", "64", "--linear-blocks", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    diagnosis = json.loads((root / "out" / "diagnosis.json").read_text())
    assert [b["name"] for b in diagnosis["blocks"]] and len(diagnosis["blocks"]) == 2
    assert len(diagnosis["linears"]) == 7 and diagnosis["linear_blocks"] == [diagnosis["blocks"][0]["name"]]
    assert diagnosis["kl_total"] > 0 and diagnosis["candidate_config"]["group_size"] == 32
    assert diagnosis["calibration"]["measured"]            # calibrated on the suite: the sources are re-read
    fixes = {f["id"]: f for f in diagnosis["fixes"]}
    assert fixes["group-size"]["changes"] == {"group_size": 16}             # the next size below 32
    assert "calib" not in fixes                                              # it was calibrated on the suite
    assert diagnosis["linears"][0]["name"] in fixes["not-convert"]["command"]
    assert diagnosis["blocks"][0]["name"] in out and "fixes computed for this candidate" in out


def test_report_shows_the_diagnosis_of_the_same_candidate_only(setup):
    root, _ = setup
    config = str(root / "awqguard.yaml")
    assert main(["diagnose", "--config", config, "--tokens", "64", "--linear-blocks", "1"]) == 0
    main(["check", "--config", config, "--warn-only"])
    results = root / "out" / "results.json"
    assert main(["report", str(results), "-o", str(root / "with.html")]) == 0
    page = (root / "with.html").read_text()
    diagnosis = json.loads((root / "out" / "diagnosis.json").read_text())
    assert 'id="diagnosis"' in page and diagnosis["blocks"][0]["name"] in page
    diagnosis["candidate_fingerprint"] = "another"
    (root / "out" / "diagnosis.json").write_text(json.dumps(diagnosis))
    assert main(["report", str(results), "-o", str(root / "other.html")]) == 0
    assert "diagnosed another candidate" in (root / "other.html").read_text()


def test_a_float_candidate_is_refused_with_a_reason(setup, capsys):
    root, folders = setup
    code = main(["diagnose", "--config", str(root / "awqguard.yaml"), "--candidate", str(folders["far"])])
    assert code == 4 and "not a quantized checkpoint" in capsys.readouterr().err


def test_a_failing_check_diagnoses_its_candidate_into_its_report(setup, capsys):
    root, _ = setup
    body = yaml.safe_load((root / "awqguard.yaml").read_text())
    body.update(out=str(root / "out-fail"), gates={"kl-mean": {"threshold": 1e-9, "severity": "fail"}})
    config = root / "fail.yaml"
    config.write_text(yaml.safe_dump(body))
    assert main(["check", "--config", str(config)]) == 1
    printed = capsys.readouterr().out
    diagnosis = json.loads((root / "out-fail" / "diagnosis.json").read_text())
    results = json.loads((root / "out-fail" / "results.json").read_text())
    assert diagnosis["candidate_fingerprint"] == results["environment"]["candidate"]["fingerprint"]
    assert 'id="diagnosis"' in (root / "out-fail" / "report.html").read_text()
    assert "fixes computed for this candidate" in printed and diagnosis["blocks"][0]["name"] in printed
    assert f"awqguard tune --candidate {body['candidate']}" in printed
    assert main(["check", "--config", str(config), "--no-diagnose", "--out", str(root / "out-quiet")]) == 1
    assert not (root / "out-quiet" / "diagnosis.json").exists()
    assert "diagnosing" not in capsys.readouterr().out


def test_a_served_side_is_not_diagnosed_and_says_why():
    from awqguard.diagnose.on_failure import diagnose_failure
    from awqguard.gates.config import DEFAULTS, check_config_of
    config = check_config_of({**DEFAULTS, "candidate": {"endpoint": "http://127.0.0.1:9/v1"}})
    payload, why_not = diagnose_failure(config)
    assert payload is None and "the candidate is served" in why_not
