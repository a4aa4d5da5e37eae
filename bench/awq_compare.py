"""Where do two AWQ checkpoints of the same float model differ? Block by block.

For each decoder block: each checkpoint's chosen scale ratio per mapping (from its record, when it
has one: awqguard.json or bench/autoawq_reference.py's autoawq_record.json), and
the block's output error against the float block on the same float inputs, relative to what the
float block adds to the residual stream: ‖f_q(h) − f(h)‖ / ‖f(h) − h‖. The error is measured on
two token sets: the calibration blocks the quantizers saw, and held-out text of another kind, so a
checkpoint fitted to its calibration at the cost of other text shows as low-there, high-here.

    python bench/awq_compare.py --checkpoint ours=DIR --checkpoint autoawq=DIR \
        --calib-tokens calib_tokens.json --heldout fiction
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _util import emit  # noqa: E402
from corpora import SOURCES, corpus  # noqa: E402

from awqguard.gates.perplexity import heldout_windows  # noqa: E402
from awqguard.models import load_reference  # noqa: E402
from awqguard.quantizer.blocks import capture_block_inputs, run_block  # noqa: E402
from awqguard.quantizer.checkpoint import load_quantized  # noqa: E402
from awqguard.quantizer.mappings import find_blocks, resolve_architecture  # noqa: E402
from awqguard.texts import stdlib_docstrings  # noqa: E402

RECORDS = ("awqguard.json", "autoawq_record.json")


def block_errors(reference, candidates: dict[str, torch.nn.Module], tokens: torch.Tensor) -> dict[str, list]:
    """Per block and candidate: relative error of the block's contribution, on float inputs."""
    _, arch = resolve_architecture(reference)
    _, ref_blocks = find_blocks(reference, arch)
    cand_blocks = {name: find_blocks(m, arch)[1] for name, m in candidates.items()}
    cpu = torch.device("cpu")
    hidden, call = capture_block_inputs(reference, ref_blocks[0], tokens, chunk=8)
    errors = {name: [] for name in candidates}
    for i, block in enumerate(ref_blocks):
        out = run_block(block, hidden, call, 8, cpu)
        added = (out - hidden).norm()
        for name, blocks in cand_blocks.items():
            errors[name].append(round(float((run_block(blocks[i], hidden, call, 8, cpu) - out).norm() / added), 5))
        hidden = out
    return errors


def chosen_ratios(folder: Path) -> dict | None:
    """{block: {mapping: ratio}} from the checkpoint's own record, when it kept one."""
    for name in RECORDS:
        path = folder / name
        if path.exists():
            record = json.loads(path.read_text())
            if "blocks" in record:          # autoawq_record.json: a list of blocks, each a list of mappings
                return {f"block.{b['block']}": {m["prev_op"]: m["ratio"] for m in b["mappings"]}
                        for b in record["blocks"]}
            return {f"block.{name.rsplit('.', 1)[-1]}": ratios
                    for name, ratios in record["quantization"]["ratios"].items()}
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", action="append", required=True, metavar="NAME=DIR")
    ap.add_argument("--calib-tokens", type=Path, required=True,
                    help="JSON {'samples': [[token ids]]}: the calibration blocks both quantizers used")
    ap.add_argument("--heldout", default="fiction", choices=["docstrings", *SOURCES])
    ap.add_argument("--n", type=int, default=16, help="sequences of each token set (default 16)")
    args = ap.parse_args(argv)

    reference, tokenizer, source = load_reference()
    folders = dict(spec.split("=", 1) for spec in args.checkpoint)
    candidates = {name: load_quantized(folder, "cpu") for name, folder in folders.items()}
    calib = torch.tensor(json.loads(args.calib_tokens.read_text())["samples"])
    pick = torch.linspace(0, calib.shape[0] - 1, args.n).round().long()
    texts = stdlib_docstrings() if args.heldout == "docstrings" else [corpus(args.heldout)]
    heldout = heldout_windows(tokenizer, texts, calib.shape[1], args.n)
    emit({
        "benchmark": "awq_compare", "model": source.label,
        "ratios": {name: chosen_ratios(Path(folder)) for name, folder in folders.items()},
        "block_error": {"calibration": block_errors(reference, candidates, calib[pick]),
                        f"heldout:{args.heldout}": block_errors(reference, candidates, heldout)},
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
