import shutil
from pathlib import Path

import pytest
import yaml

from awqguard.gates.fixtures import FixtureError, load_suite, validate_suite

DEFAULT = Path(__file__).resolve().parents[2] / "fixtures" / "default"


def test_shipped_default_suite_is_valid_and_big_enough():
    suite = load_suite(DEFAULT)
    kinds = [i.kind for i in suite.items]
    assert len(suite.items) >= 40 and kinds.count("json") >= 6 and kinds.count("long") >= 6
    assert len(suite.documents) >= 8
    assert all(len(i.paraphrases) >= 3 for i in suite.items)
    item = suite.items[0]
    text = suite.section_text(item.anchors[0])
    assert text.lstrip("#").strip() and item.distractor not in item.anchors
    assert len(suite.fingerprint) == 16


def _suite(tmp_path, items, docs=None):
    root = tmp_path / "suite"
    (root / "corpus").mkdir(parents=True)
    for name, text in (docs if docs is not None else {"ops": "# Ops\n\n## Rotating keys\n\nEvery 90 days.\n\n## Revoking keys\n\nAt once.\n"}).items():
        (root / "corpus" / f"{name}.md").write_text(text)
    (root / "suite.yaml").write_text(yaml.safe_dump({"name": "t", "corpus": "corpus", "items": items}))
    return root


GOOD = {"id": "q1", "kind": "qa", "question": "How often?", "paraphrases": ["a?", "b?", "c?"],
        "anchor": "ops#rotating-keys", "distractor": "ops#revoking-keys", "answer": "Every 90 days."}


def test_every_problem_is_reported_with_file_item_and_field(tmp_path):
    items = [
        GOOD,
        dict(GOOD),                                                      # duplicate id
        dict(GOOD, id="q2", anchor="ops#rotate-keys"),                   # unknown section (typo)
        dict(GOOD, id="q3", paraphrases=["only one"]),                   # too few paraphrases
        dict(GOOD, id="q4", kind="json", answer='{"days": "90"}',
             schema={"type": "object", "properties": {"days": {"type": "integer"}}, "required": ["days"]}),
        dict(GOOD, id="q5", kind="json", schema={"type": "objekt"}),     # invalid schema
        dict(GOOD, id="q6", distractor="ops#rotating-keys"),             # distractor == anchor
        dict(GOOD, id="q7", colour="red"),                               # unknown field
    ]
    problems = validate_suite(_suite(tmp_path, items))
    found = {(p.item, p.field) for p in problems}
    assert ("q1", "id") in found
    assert ("q2", "anchor") in found
    assert ("q3", "paraphrases") in found
    assert ("q4", "answer") in found
    assert ("q5", "schema") in found
    assert ("q6", "distractor") in found
    assert ("q7", "colour") in found
    typo = next(p for p in problems if p.item == "q2")
    assert "did you mean ops#rotating-keys" in typo.message
    assert all(p.file.endswith("suite.yaml") for p in problems)


def test_empty_corpus_and_missing_suite(tmp_path):
    root = _suite(tmp_path, [GOOD], docs={})
    messages = " | ".join(str(p) for p in validate_suite(root))
    assert "empty corpus" in messages and "unknown section id" in messages
    assert "no suite.yaml" in str(validate_suite(tmp_path / "nowhere")[0])
    with pytest.raises(FixtureError, match="fixture problem"):
        load_suite(root)


def test_cli_validate_exit_codes(tmp_path):
    from awqguard.cli import main
    assert main(["fixtures", "validate", str(DEFAULT)]) == 0
    bad = tmp_path / "bad"
    shutil.copytree(DEFAULT, bad)
    (bad / "corpus" / "auth.md").unlink()
    assert main(["fixtures", "validate", str(bad)]) == 4
