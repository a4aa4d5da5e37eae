"""Calibration data: texts from files, suites or datasets, cut into fixed-length token samples.

Sources (docs/architecture.md §4): a list of texts; a .txt file (blank-line separated paragraphs); a .jsonl
file with a "text" field; a fixture suite folder (suite.yaml + corpus/*.md); a dataset folder saved
by `datasets.save_to_disk` (needs pyarrow); or a folder of .txt/.jsonl/.md files. With no source,
the built-in default is English technical prose that ships with every CPython (see
awqguard.texts.default_calibration), present offline everywhere and disjoint from the held-out text.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import torch

from awqguard.errors import CalibrationError
from awqguard.files import read_text
from awqguard.texts import default_calibration as builtin_texts

BUILTIN_DEFAULT = "builtin:python-docs"


@dataclass
class CalibrationSet:
    """Token samples [n, seqlen] plus what they were made from.

    `unit` is what n_samples counted ("blocks" or "texts"); `texts_kept` is how many texts went into
    the token stream, and the skipped counts are the texts left out for being longer than seqlen
    tokens or empty ("texts" unit only), so the record says why fewer blocks came out than asked.
    """

    samples: torch.Tensor
    sources: list[str]
    available_tokens: int
    unit: str = "blocks"
    texts_kept: int = 0
    skipped_too_long: int = 0
    skipped_empty: int = 0

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.samples.numpy().tobytes()).hexdigest()[:16]

    def describe(self) -> dict:
        n, t = self.samples.shape
        return {"sources": self.sources, "n_samples_unit": self.unit, "n_samples": n, "blocks": n,
                "seqlen": t, "texts_kept": self.texts_kept,
                "texts_skipped": {"too_long": self.skipped_too_long, "empty": self.skipped_empty},
                "available_tokens": self.available_tokens, "fingerprint": self.fingerprint}


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in text.split("\n\n") if p.strip()]


def _read_jsonl(path: Path) -> list[str]:
    texts = []
    for lineno, line in enumerate(read_text(path, CalibrationError).splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CalibrationError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise CalibrationError(f"{path}:{lineno}: each line needs a string field \"text\"")
        texts.append(record["text"])
    return texts


def _read_saved_dataset(folder: Path) -> list[str]:
    try:
        import pyarrow as pa
    except ImportError:
        raise CalibrationError(
            f"{folder} is a saved `datasets` folder; reading it needs pyarrow (pip install pyarrow), "
            "or export its texts to a .jsonl file with a \"text\" field") from None
    texts: list[str] = []
    for arrow in sorted(folder.glob("*.arrow")):
        with pa.memory_map(str(arrow)) as source:
            table = pa.ipc.open_stream(source).read_all()
        if "text" not in table.column_names:
            raise CalibrationError(f"{arrow}: no \"text\" column (columns: {table.column_names})")
        texts.extend(t for t in table.column("text").to_pylist() if t)
    return texts


def _read_suite_corpus(folder: Path) -> list[str]:
    import yaml
    try:
        suite = yaml.safe_load(read_text(folder / "suite.yaml", CalibrationError)) or {}
    except yaml.YAMLError as exc:
        raise CalibrationError(f"{folder / 'suite.yaml'}: not valid YAML ({exc})".replace("\n", " ")) from None
    if not isinstance(suite, dict):
        raise CalibrationError(f"{folder / 'suite.yaml'}: must be a mapping with corpus and items")
    corpus = folder / str(suite.get("corpus", "corpus"))
    files = sorted(corpus.glob("**/*.md"))
    if not files:
        raise CalibrationError(f"{folder}: suite corpus folder {corpus} holds no .md files")
    return [p for f in files for p in _paragraphs(read_text(f, CalibrationError))]


def read_source(source: str | Path) -> list[str]:
    """Texts from one calibration source path (or the built-in default)."""
    if str(source) == BUILTIN_DEFAULT:
        return builtin_texts()
    path = Path(source)
    if not path.exists():
        hint = ("; awqguard does not download datasets: pass a .txt/.jsonl file, a suite folder or a saved "
                "dataset folder" if not path.suffix and len(path.parts) == 1 else "")
        raise CalibrationError(f"calibration source {path} does not exist{hint}")
    if path.is_dir():
        if (path / "suite.yaml").exists():
            return _read_suite_corpus(path)
        if (path / "state.json").exists() or list(path.glob("*.arrow")):
            return _read_saved_dataset(path)
        texts: list[str] = []
        for f in sorted(path.iterdir()):
            if f.suffix in (".txt", ".md", ".jsonl"):
                texts.extend(read_source(f))
        if not texts:
            raise CalibrationError(f"calibration folder {path} holds no .txt, .md or .jsonl files, "
                                   "no suite.yaml and no saved dataset")
        return texts
    if path.suffix == ".jsonl":
        return _read_jsonl(path)
    if path.suffix in (".txt", ".md"):
        return _paragraphs(read_text(path, CalibrationError))
    raise CalibrationError(f"calibration file {path}: use .txt, .md or .jsonl (with a \"text\" field)")


def gather_texts(calib: str | Path | Sequence[str | Path] | None) -> tuple[list[str], list[str]]:
    """(texts, source labels) from calibration sources.

    A Path, or a single string, is always a source (file, folder or "builtin:pydoc"). A list of
    strings is either all sources or, when none of them looks like a path, the texts themselves
    (AutoAWQ's `calib_data=[...]`). Dataset names such as "pileval" are refused: no downloads.
    """
    if calib is None:
        return builtin_texts(), [BUILTIN_DEFAULT]
    items = [calib] if isinstance(calib, (str, Path)) else list(calib)
    if not items:
        raise CalibrationError("calibration data is an empty list")
    is_text_list = len(items) > 1 or not isinstance(calib, (str, Path))
    if is_text_list and all(isinstance(c, str) and not _looks_like_path(c) for c in items):
        return [c for c in items if c.strip()], [f"<{len(items)} texts>"]
    texts: list[str] = []
    for source in items:
        if isinstance(source, str) and not _looks_like_path(source):
            raise CalibrationError(
                f"calibration source {source!r} is neither a local file nor folder; awqguard does not "
                "download datasets: pass a .txt/.jsonl file, a suite folder or a saved dataset folder")
        texts.extend(read_source(source))
    return texts, [str(c) for c in items]


def _looks_like_path(s: str | Path) -> bool:
    if isinstance(s, Path) or s == BUILTIN_DEFAULT:
        return True
    if "\n" in s or len(s) > 1024:
        return False
    if Path(s).exists():
        return True
    return " " not in s and ("/" in s or Path(s).suffix in (".txt", ".jsonl", ".md", ".arrow"))


def token_stream(tokenizer, texts: Iterable[str]) -> list[int]:
    """The texts tokenized (no special tokens) and concatenated, with EOS between them."""
    eos = tokenizer.eos_token_id
    stream: list[int] = []
    for text in texts:
        stream.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        if eos is not None:
            stream.append(eos)
    return stream


def build_samples(texts: Iterable[str], tokenizer, n_samples: int, seqlen: int, seed: int,
                  sources: list[str] | None = None, unit: str = "blocks") -> CalibrationSet:
    """Calibration samples, with `n_samples` counted in `unit` (QuantConfig.n_samples_unit).

    "blocks": `n_samples` disjoint windows of `seqlen` tokens from the EOS-joined stream, chosen by
    `seed`; refused when the text is too short. "texts": AutoAWQ's max_calib_samples (see
    `text_samples`); the texts are taken in order, so `seed` chooses nothing here.
    """
    if unit == "texts":
        return text_samples(texts, tokenizer, n_samples, seqlen, sources)
    texts = list(texts)
    stream = token_stream(tokenizer, texts)
    need = n_samples * seqlen
    if len(stream) < need:
        raise CalibrationError(
            f"calibration data has {len(stream):,} tokens but {n_samples} samples x {seqlen} tokens need "
            f"{need:,}: add text (--calib), or lower --n-samples (at most {len(stream) // seqlen} at this "
            f"--seqlen) or --seqlen" if len(stream) >= seqlen else
            f"calibration data has {len(stream):,} tokens, less than one {seqlen}-token sample: add text (--calib)")
    windows = torch.tensor(stream[: (len(stream) // seqlen) * seqlen]).reshape(-1, seqlen)
    pick = torch.randperm(len(windows), generator=torch.Generator().manual_seed(seed))[:n_samples]
    return CalibrationSet(windows[pick.sort().values], sources or [], len(stream), "blocks", len(texts))


def text_samples(texts: Iterable[str], tokenizer, n_texts: int, seqlen: int,
                 sources: list[str] | None = None) -> CalibrationSet:
    """AutoAWQ's calibration: the first `n_texts` texts that fit, joined, cut into whole blocks.

    Each text is stripped and encoded with `tokenizer.encode` (special tokens as the tokenizer adds
    them); texts longer than `seqlen` tokens or encoding to nothing are skipped. The kept tokens are
    concatenated with no separator and cut into floor(total / seqlen) blocks, however many that is,
    so AutoAWQ users get the same blocks for the same texts. Texts are taken in order: no seed.
    """
    kept, too_long, empty = _first_fitting_texts(texts, tokenizer, n_texts, seqlen)
    stream = [t for ids in kept for t in ids]
    n_blocks = len(stream) // seqlen
    if n_blocks == 0:
        raise CalibrationError(
            f"calibration data makes no {seqlen}-token block: {len(kept)} texts kept ({too_long} longer than "
            f"{seqlen} tokens and {empty} empty skipped) give {len(stream):,} tokens; add text, raise "
            f"max_calib_samples or lower max_calib_seq_len")
    samples = torch.tensor(stream[: n_blocks * seqlen]).reshape(n_blocks, seqlen)
    return CalibrationSet(samples, sources or [], len(stream), "texts", len(kept), too_long, empty)


def _first_fitting_texts(texts: Iterable[str], tokenizer, n_texts: int,
                         seqlen: int) -> tuple[list[list[int]], int, int]:
    """(token ids of the first `n_texts` usable texts, texts skipped as too long, as empty).

    Stops at the n-th kept text, so texts after it are not read (nor counted as skipped)."""
    kept: list[list[int]] = []
    too_long = empty = 0
    for text in texts:
        if len(kept) == n_texts:
            break
        ids = tokenizer.encode(text.strip())
        if len(ids) > seqlen:
            too_long += 1
        elif not ids:
            empty += 1
        else:
            kept.append(ids)
    return kept, too_long, empty
