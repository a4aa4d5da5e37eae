"""What a check ran on and what it cost: the environment, release evidence and cost sections of
results.json (docs/architecture.md §12)."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from awqguard import evidence
from awqguard.gates.document import Measurement
from awqguard.gates.fixtures import Suite
from awqguard.gates.load import Contender, SuiteInput
from awqguard.gates.pipeline import Retrieval
from awqguard.version import __version__


@dataclass(frozen=True)
class Cost:
    metrics: dict[str, Measurement]
    section: dict[str, Any]


def cost_section(reference: Contender, candidate: Contender, runs: dict[str, dict], cached: bool,
                 peak_rss: float | None) -> Cost:
    """The weight-bytes ratio (a metric only for a candidate that claims quantization) and the cost figures."""
    ref_bytes, cand_bytes = reference.backend.weight_bytes(), candidate.backend.weight_bytes()
    if ref_bytes is None or cand_bytes is None:
        ratio = Measurement.not_measured("a served model does not say how many bytes its weights take")
    elif candidate.quantized:
        ratio = Measurement.paired(cand_bytes / ref_bytes)
    else:
        ratio = Measurement.not_measured("the candidate is a float model (it claims no quantization)")
    section = {"reference_weight_bytes": ref_bytes, "candidate_weight_bytes": cand_bytes,
               "candidate_checkpoint_bytes": _folder_bytes(candidate.path),
               "reference_tokens_per_s": runs["reference"]["timing"]["tokens_per_s"],
               "candidate_tokens_per_s": runs["candidate"]["timing"]["tokens_per_s"],
               "peak_rss_mib": peak_rss,
               "tokens_per_s_note": "measured when the run was generated" + (
                   " (a cached run: the figures come from the run that filled the cache)" if cached else "")}
    return Cost({"cost.weight_bytes_ratio": ratio}, section)


def environment(config: dict, reference: Contender, candidate: Contender, suite_input: SuiteInput,
                retrieval: Retrieval) -> dict:
    import transformers
    info = candidate.backend.info
    suite = suite_input.suite
    return {"awqguard": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "platform": platform.platform(),
            "device": info.device, "dtype": info.dtype, "threads": torch.get_num_threads(),
            "kernel_paths": list(info.kernel_paths),
            "reference": {"source": reference.source, "fingerprint": reference.fingerprint},
            "candidate": candidate.describe(), "suite": {"name": suite.name, "path": str(suite.root),
                                                         "fingerprint": suite.fingerprint,
                                                         "items": len(suite_input.items)},
            "embedder": {"fingerprint": retrieval.embedder_fingerprint,
                         "candidate_pipeline": retrieval.candidate.label},
            "seeds": list(config["seeds"]), "config": config}


def evidence_section(config: dict, reference: Contender, candidate: Contender, suite: Suite) -> dict:
    """sha256 digests binding these results to the files they judged (see awqguard.evidence)."""
    ref_path = reference.model_source.path if reference.model_source is not None else None
    return {"version": evidence.EVIDENCE_VERSION, "candidate": evidence.describe(candidate.path or None),
            "reference": evidence.describe(ref_path), "suite": evidence.describe(suite.root),
            "config_sha256": evidence.config_sha256(config)}


def peak_rss_mib() -> float | None:
    try:
        import resource
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    except (ImportError, OSError):
        return None


def _folder_bytes(path: str) -> int | None:
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    if p.is_dir():
        return sum(f.stat().st_size for f in p.glob("*.safetensors"))
    return None
