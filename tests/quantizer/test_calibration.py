import json

import pytest

import tiny_models
from awqguard.errors import CalibrationError
from awqguard.quantizer.calibration import BUILTIN_DEFAULT, build_samples, gather_texts


def test_builtin_default_is_large_enough_for_the_default_request():
    texts, labels = gather_texts(None)
    assert labels == [BUILTIN_DEFAULT] and sum(map(len, texts)) > 600_000


def test_txt_jsonl_and_folder_sources(tmp_path):
    (tmp_path / "a.txt").write_text("first para\n\nsecond para")
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": "from jsonl"}) + "\n\n" + json.dumps({"text": "two"}))
    texts, labels = gather_texts([tmp_path / "a.txt", str(tmp_path / "b.jsonl")])
    assert texts == ["first para", "second para", "from jsonl", "two"]
    folder_texts, _ = gather_texts(tmp_path)
    assert sorted(folder_texts) == sorted(texts)


def test_suite_folder_uses_its_corpus(tmp_path):
    (tmp_path / "suite.yaml").write_text("name: s\ncorpus: docs\nitems: []\n")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "ops.md").write_text("# Ops\n\nRotate keys monthly.\n\n## Revoke\n\nRevoke at once.")
    texts, _ = gather_texts(tmp_path)
    assert "Rotate keys monthly." in texts and "Revoke at once." in texts


def test_list_of_texts_and_refusals(tmp_path):
    assert gather_texts(["some text / with a slash", "more"])[0] == ["some text / with a slash", "more"]
    with pytest.raises(CalibrationError, match="does not download datasets"):
        gather_texts("pileval")
    with pytest.raises(CalibrationError, match="does not exist"):
        gather_texts([str(tmp_path / "missing.txt")])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"body": "no text"}\n')
    with pytest.raises(CalibrationError, match=r"bad.jsonl:2: each line needs a string field \"text\""):
        gather_texts(bad)
    with pytest.raises(CalibrationError, match="use .txt, .md or .jsonl"):
        (tmp_path / "x.csv").write_text("a,b")
        gather_texts(tmp_path / "x.csv")


def test_samples_are_disjoint_windows_and_seeded():
    tok = tiny_models.char_tokenizer()
    texts = tiny_models.CALIB_TEXT.split("\n\n")
    a = build_samples(texts, tok, 8, 64, seed=0)
    b = build_samples(texts, tok, 8, 64, seed=0)
    c = build_samples(texts, tok, 8, 64, seed=1)
    assert a.samples.shape == (8, 64) and a.fingerprint == b.fingerprint != c.fingerprint
    assert len({tuple(r) for r in a.samples.tolist()}) == 8
