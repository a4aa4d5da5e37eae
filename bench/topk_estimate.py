"""How far a served check's top-K KL and entropy are from the exact figures (gates/topk.py).

The default reference (SmolLM2-135M-Instruct, in this process) against a 4-bit candidate on the
default suite's corpus, in the perplexity stage's windows: the exact full-vocabulary mean KL and
entropy beside their top-K estimates at several K, as a served check would compute them. The
exact figures are this run's baseline. Both estimates are lower bounds (never above exact).
Run: python bench/topk_estimate.py [--candidate rtn|awq] [--k 5,10,20,50,100] [--windows 8]
(awq quantizes the default candidate once, about 4 minutes, and caches it under .awqguard/.)
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import emit  # noqa: E402

from awqguard.backends.local import LocalBackend  # noqa: E402
from awqguard.gates import topk  # noqa: E402
from awqguard.gates.config import DEFAULTS  # noqa: E402
from awqguard.gates.fixtures import load_suite  # noqa: E402
from awqguard.gates.perplexity import heldout_windows  # noqa: E402
from awqguard.models import load_reference  # noqa: E402
from awqguard.quantizer.config import QuantConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def candidate_model(kind: str, reference):
    cfg = QuantConfig(w_bit=4, group_size=64)
    if kind == "rtn":
        from awqguard.quantizer.rtn import rtn_fake_quantize
        model = copy.deepcopy(reference)
        rtn_fake_quantize(model, cfg)
        return model
    from awqguard import cache
    from awqguard.models import fingerprint, resolve_model
    from awqguard.quantizer.api import quantize
    out = cache.entry("candidates", cache.cache_key({"model": fingerprint(resolve_model(None)), "quant": cfg.to_dict()}))
    return quantize(None, out=out, config=cfg).model


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--candidate", choices=["rtn", "awq"], default="rtn")
    ap.add_argument("--k", default="5,10,20,50,100")
    ap.add_argument("--windows", type=int, default=DEFAULTS["perplexity"]["max_windows"])
    ap.add_argument("--window", type=int, default=DEFAULTS["perplexity"]["window"])
    args = ap.parse_args(argv)
    torch.set_grad_enabled(False)
    reference, tokenizer, _ = load_reference()
    candidate = candidate_model(args.candidate, reference)
    texts = [d.text for d in sorted(load_suite(ROOT / "fixtures" / "default").documents.values(), key=lambda d: d.stem)]
    windows = heldout_windows(tokenizer, texts, args.window, args.windows).tolist()
    pairs = list(zip(LocalBackend(reference).score(windows, 1), LocalBackend(candidate).score(windows, 1)))
    ks = tuple(int(k) for k in args.k.split(","))
    errors = topk.estimator_error(pairs, ks)
    emit({"bench": "topk_estimate", "candidate": f"{args.candidate} w4 g64", "windows": len(windows),
          "window_tokens": args.window, "by_k": {str(k): {name: round(v, 4) if isinstance(v, float) else v
                                                          for name, v in e.items()} for k, e in errors.items()},
          "lower_bounds_hold": all(e["kl_above_exact_positions"] == 0 and e["entropy_above_exact_positions"] == 0
                                   for e in errors.values())})
    return 0


if __name__ == "__main__":
    sys.exit(main())
