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


# ---- n_samples_unit="texts": AutoAWQ's max_calib_samples ------------------------------------------

def _ids(tok, texts):
    return [i for t in texts for i in tok.encode(t)]


def test_texts_mode_skips_too_long_and_empty_texts():
    tok = tiny_models.char_tokenizer()
    texts = ["a" * 9, "", "b" * 8, "   ", "c" * 4, "d" * 4]
    s = build_samples(texts, tok, 10, 8, seed=0, unit="texts")
    assert (s.unit, s.texts_kept, s.skipped_too_long, s.skipped_empty) == ("texts", 3, 1, 2)
    assert s.samples.tolist() == [_ids(tok, ["b" * 8]), _ids(tok, ["c" * 4, "d" * 4])]


def test_texts_mode_uses_exactly_the_first_n_kept_texts():
    tok = tiny_models.char_tokenizer()
    texts = ["x" * 20, "abcd", "efgh", "ijkl", "mnop"]          # the first is skipped, "mnop" is beyond n
    s = build_samples(texts, tok, 3, 4, seed=0, unit="texts")
    assert s.texts_kept == 3 and s.skipped_too_long == 1
    assert s.samples.tolist() == [_ids(tok, [t]) for t in ("abcd", "efgh", "ijkl")]


def test_texts_mode_blocks_are_floor_of_total_in_order_and_seed_free():
    tok = tiny_models.char_tokenizer()
    texts = ["one two", "three", "four five six", "seven"]       # 7 + 5 + 13 + 5 = 30 tokens
    s = build_samples(texts, tok, 4, 13, seed=0, unit="texts")
    joined = _ids(tok, texts)
    assert len(joined) == 30 and s.available_tokens == 30 and s.samples.shape == (2, 13)
    assert s.samples.flatten().tolist() == joined[:26]
    assert build_samples(texts, tok, 4, 13, seed=7, unit="texts").fingerprint == s.fingerprint
    d = s.describe()
    assert (d["n_samples_unit"], d["blocks"], d["texts_kept"], d["texts_skipped"]) == \
        ("texts", 2, 4, {"too_long": 0, "empty": 0})


def test_texts_mode_with_no_block_names_what_it_had():
    tok = tiny_models.char_tokenizer()
    with pytest.raises(CalibrationError, match=r"no 16-token block: 2 texts kept \(1 longer than 16 tokens "
                                               r"and 1 empty skipped\) give 10 tokens"):
        build_samples(["abcde", "x" * 17, "", "fghij"], tok, 5, 16, seed=0, unit="texts")


def test_text_too_short_for_blocks_mode_is_accepted_by_autoawq_mode():
    """The reported defect: AutoAWQ quantizes with the blocks 128 texts make; blocks mode refuses."""
    tok = tiny_models.char_tokenizer()
    texts = [f"text {i}: " + "w" * (40 + i % 7) for i in range(150)]   # 128 texts, each < 64 tokens
    with pytest.raises(CalibrationError, match=r"128 samples x 64 tokens need 8,192"):
        build_samples(texts[:128], tok, 128, 64, seed=0)
    s = build_samples(texts, tok, 128, 64, seed=0, unit="texts")
    total = len(_ids(tok, texts[:128]))
    assert total < 128 * 64 and s.texts_kept == 128
    assert s.samples.shape == (total // 64, 64) and s.describe()["blocks"] == total // 64


def test_blocks_mode_records_its_unit():
    tok = tiny_models.char_tokenizer()
    texts = tiny_models.CALIB_TEXT.split("\n\n")
    d = build_samples(texts, tok, 8, 64, seed=0).describe()
    assert (d["n_samples_unit"], d["blocks"], d["n_samples"], d["texts_kept"]) == ("blocks", 8, 8, len(texts))


def test_quantize_with_max_calib_samples_records_the_blocks_it_used():
    from awqguard import quantize
    tok = tiny_models.char_tokenizer()
    texts = tiny_models.CALIB_TEXT.split("\n\n")          # about 80 tokens each
    result = quantize(tiny_models.build("llama-gqa"), tokenizer=tok, calib_data=texts, group_size=32,
                      max_calib_samples=6, max_calib_seq_len=96, loss_tokens=128, n_grid=4, apply_clip=False)
    total = len(_ids(tok, texts[:6]))
    cal = result.record["calibration"]
    assert result.record["config"]["n_samples_unit"] == "texts" and cal["texts_kept"] == 6
    assert cal["blocks"] == total // 96 == 4 and result.record["identity"]["config"]["n_samples"] == 6
