"""`awqguard tune`: trial planning (pure) and a whole tune on a tiny model, resumed from its cache."""

import json
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parents[1] / "gates"))     # engine_helpers
sys.path.insert(0, str(Path(__file__).parents[1] / "report"))    # helpers

from awqguard import QuantConfig, quantize  # noqa: E402
from awqguard.cli import main  # noqa: E402
from awqguard.tune import plan_trials, predicted_ratio  # noqa: E402

WIDTHS = {"l.0.q": (576, 576), "l.0.down": (1536, 576), "l.1.q": (576, 576)}
FIXES = [{"id": "not-convert", "changes": {"modules_to_not_convert": ["l.0.down"]}},
         {"id": "group-size", "changes": {"group_size": 32}},
         {"id": "w-bit", "changes": {"w_bit": 4}}]


def test_predicted_bytes_follow_bits_groups_and_kept_layers():
    base = {"w_bit": 4, "group_size": 64}
    r4 = predicted_ratio(base, WIDTHS)
    assert 0.25 < r4 < 0.30                                           # 4/16 plus scales and zeros
    assert predicted_ratio({**base, "group_size": 32}, WIDTHS) > r4
    assert predicted_ratio({**base, "w_bit": 3}, WIDTHS) < r4
    kept = predicted_ratio({**base, "modules_to_not_convert": ["l.0.down"]}, WIDTHS)
    assert kept > 0.5                                                 # the largest layer back to fp16


def test_trials_go_singles_first_cheapest_first_within_budgets():
    base = {"w_bit": 3, "group_size": 64}
    trials, skipped = plan_trials(FIXES, base, WIDTHS, budget=10, max_bytes_ratio=None)
    assert [len(t.label.split(" + ")) for t in trials] == [1, 1, 1, 2, 2, 2, 3]
    singles = trials[:3]
    ratios = [predicted_ratio({**base, **t.changes}, WIDTHS) for t in singles]
    assert ratios == sorted(ratios) and not skipped
    capped, skipped = plan_trials(FIXES, base, WIDTHS, budget=10, max_bytes_ratio=0.35)
    assert all(predicted_ratio({**base, **t.changes}, WIDTHS) <= 0.35 for t in capped)
    assert skipped and all("--max-bytes-ratio" in s["why"] for s in skipped)
    short, skipped = plan_trials(FIXES, base, WIDTHS, budget=2, max_bytes_ratio=None)
    assert len(short) == 2 and sum("--budget" in s["why"] for s in skipped) == 5


def test_a_trial_the_quantizer_refuses_is_a_row_and_the_next_is_tried(tmp_path, monkeypatch):
    from awqguard.tune import failed_row, run_trials
    monkeypatch.setenv("AWQGUARD_CACHE", str(tmp_path))
    trials, _ = plan_trials(FIXES, {"w_bit": 3, "group_size": 64}, WIDTHS, budget=2, max_bytes_ratio=None)
    passing = {"trial": trials[1].label, "passed": True, "bytes_ratio": 0.3}

    def evaluate(trial):
        return failed_row(trial, "calibration data has 6,807 tokens", 0.2, 1.0) if trial is trials[0] else passing
    rows, best = run_trials(trials, lambda t: {"trial": t.label}, evaluate, None, lambda row: None)
    assert best == 1 and not rows[0]["passed"] and "6,807" in rows[0]["error"]


@pytest.fixture(scope="module")
def weak(tmp_path_factory):
    from helpers import FAST, tiny_check
    root = tmp_path_factory.mktemp("tune")
    folders = tiny_check(root)
    quantize(str(folders["reference"]), out=root / "w2",
             config=QuantConfig(w_bit=2, group_size=32, n_samples=8, seqlen=32, loss_tokens=128, clip_tokens=64),
             calib=[folders["suite"]])
    mp = pytest.MonkeyPatch()
    mp.setenv("AWQGUARD_CACHE", str(root / "cache"))
    # The tiny suite is too small for the entropy gates to decide, so this test lets the teacher-forced
    # KL block instead: the 2-bit candidate's KL is about 8e-4, the 4-bit model's about 1e-4.
    gates = {"entropy-onset": {"enabled": False}, "entropy-slope": {"enabled": False},
             "kl-mean": {"threshold": 0.0004, "severity": "fail"}}
    body = {"reference": str(folders["reference"]), "candidate": str(root / "w2"), "suite": str(folders["suite"]),
            **FAST, "gates": gates}
    (root / "awqguard.yaml").write_text(yaml.safe_dump(body))
    yield root
    mp.undo()


def test_tune_finds_a_passing_trial_and_resumes_from_its_cache(weak, capsys):
    root = weak
    args = ["tune", "--config", str(root / "awqguard.yaml"), "--out", str(root / "out"), "--budget", "3"]
    code = main(args)
    captured = capsys.readouterr()
    tune = json.loads((root / "out" / "tune.json").read_text())
    assert tune["blocking"], "the 2-bit candidate was meant to fail"
    assert tune["trials"] and all(not r["reused"] for r in tune["trials"])
    assert code == 0 and tune["best"]["passed"] and tune["best"] is not None, captured.err
    assert tune["trials"][-1] == tune["best"] and not any(r["passed"] for r in tune["trials"][:-1])
    assert tune["best"]["kl_mean"] is not None and tune["best"]["bad_miss_rate"] is not None   # paired metrics too
    assert Path(tune["best"]["checkpoint"]).is_absolute()
    assert (root / "out" / "best" / "awqguard.json").exists() and "passes" in captured.out
    assert (root / "out" / "trials" / "01" / "results.json").exists()
    assert main(args) == code                                          # again: every trial from the cache
    again = json.loads((root / "out" / "tune.json").read_text())
    assert [r["trial"] for r in again["trials"]] == [r["trial"] for r in tune["trials"]]
    assert all(r["reused"] for r in again["trials"])
