"""AutoAWQ 0.2.9 on this CPU as a reference point for awqguard's quantizer: the same float model, the
same calibration tokens, and a record of what AutoAWQ chose in every block.

Runs inside .venv-autoawq (bench/autoawq_env.sh: transformers 4.51, CPU torch), never in awqguard's
environment, and is not part of the awqguard package. Writes the packed GEMM checkpoint
(save_quantized) plus the tokenizer files, and OUT/autoawq_record.json (strict JSON): versions,
config, calibration fingerprint, quantize wall time, and per block: for each scaling mapping the
chosen ratio (recovered by recomputing AutoAWQ's candidate scales for i/20 from its x_mean/w_mean
and matching the returned scales, cross-checked with the loop's own best_ratio) and the 20-point loss
history; for each clipped linear the chosen shrink best_max_val / max|w| (mean, min, share < 1).

Calibration: the JSON's token lists are passed as calib_data (list of lists of int). AutoAWQ's
get_calib_dataset drops lists longer than max_calib_seq_len, takes max_calib_samples of them,
concatenates and re-splits into max_calib_seq_len blocks; with n lists of exactly seqlen tokens that
gives back the same n blocks. The blocks it returns are compared with ours and the run stops if they
differ. --seqlen below the lists' length truncates each list to its first seqlen tokens first.

Runtime patches (this process only; line numbers are those of the installed 0.2.9 files):
1. awq/quantize/quantizer.py:393, AwqQuantizer._compute_best_scale:
   `org_sd = {k: v.cpu() for k, v in module2inspect.state_dict().items()}` is meant as a copy, but on
   CPU .cpu() returns the very same tensors, so the grid loop's in-place `fc.weight.mul_(scales_view)`
   (line 417) writes W*s(ratio 0) into the "saved" state and `load_state_dict(org_sd)` (line 434)
   restores that: every later ratio is searched on corrupted weights and the block keeps them. Now
   `v.detach().clone()`. The same method also leaves its loss `history`/`best_ratio` on the quantizer
   (before its `return`, line 442) for the record. Nothing else in it changes.
2. config: transformers 4.51 does not read transformers 5's `rope_parameters`; the float folder
   (written by 5.x) has no top-level rope_theta, so 4.51 would silently build it with rope_theta
   10000 instead of 100000. rope_theta is copied back; any rope_type but "default" stops the run.
3. The tokenizer (5.x TokenizersBackend format) is not loaded by 4.51: token calibration data does
   not need it, so its files are copied into the checkpoint unchanged.
Nothing else needed patching on CPU: get_best_device() returns "cpu", the torch.cuda calls are
guarded, clear_memory no longer touches CUDA, n_parallel_calib_samples stays None (all blocks in one
forward, as on GPU), and the final fp16 pseudo-quantization/packing runs on CPU as on GPU. Since the
model is loaded in float32, the tensors that are not packed (embeddings, norms) are saved in float32,
where an fp16 GPU run would save fp16.

    .venv-autoawq/bin/python bench/autoawq_reference.py --model /work/autoawq/smollm2-float \\
        --calib-tokens /work/autoawq/calib_tokens.json --out /tmp/awq-smoke --n-samples 8 --seqlen 128 --layers 2
"""

from __future__ import annotations

import argparse
import datetime
import functools
import inspect
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import textwrap
import time
from pathlib import Path

# glibc hands each freed 100+ MB temporary back to the OS, so every one of the clip search's broadcast
# products page-faults afresh (a third of the time in sys). Keeping freed memory makes the clip search
# ~2x faster with bit-identical results; glibc reads these only at start-up, hence the re-exec.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(4 << 30), "MALLOC_TRIM_THRESHOLD_": str(64 << 30)}
if __name__ == "__main__" and any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **MALLOC_ENV})

import torch  # noqa: E402
import transformers  # noqa: E402

import awq  # noqa: E402
import awq.quantize.quantizer as awq_quantizer  # noqa: E402
from awq import AutoAWQForCausalLM  # noqa: E402
from awq.quantize.quantizer import AwqQuantizer  # noqa: E402

N_GRID = 20                       # hard-coded in 0.2.9's _compute_best_scale and _compute_best_clip
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "chat_template.jinja", "vocab.json", "merges.txt")
PATCH_OLD = "org_sd = {k: v.cpu() for k, v in module2inspect.state_dict().items()}"
PATCH_NEW = "org_sd = {k: v.detach().clone() for k, v in module2inspect.state_dict().items()}"
RETURN_OLD = "return best_scales.detach().cpu()"
RECORD_LINE = "self._ref_search = {'history': list(history), 'best_ratio': best_ratio}"   # before RETURN_OLD


def load_blocks(path: Path, n: int, seqlen: int) -> tuple[str, list[list[int]]]:
    data = json.loads(path.read_text())
    samples = data["samples"][:n]
    if len(samples) < n or any(len(s) < seqlen for s in samples):
        sys.exit(f"{path}: need {n} token lists of >= {seqlen} tokens")
    return data["fingerprint"], [list(map(int, s[:seqlen])) for s in samples]


def patch_best_scale() -> list[dict]:
    """Swap in a copy of _compute_best_scale with PATCH_OLD -> PATCH_NEW (docstring patch 1)."""
    fn = AwqQuantizer._compute_best_scale
    lines, first = inspect.getsourcelines(fn)
    src = textwrap.dedent("".join(lines))
    for old in (PATCH_OLD, RETURN_OLD):
        if src.count(old) != 1:
            sys.exit(f"AutoAWQ's _compute_best_scale does not contain {old!r} exactly once: not 0.2.9?")
    where = {old: first + next(i for i, l in enumerate(lines) if old in l) for old in (PATCH_OLD, RETURN_OLD)}
    indent = next(l for l in src.splitlines() if RETURN_OLD in l).split(RETURN_OLD)[0]
    src = src.replace(PATCH_OLD, PATCH_NEW).replace(RETURN_OLD, f"{RECORD_LINE}\n{indent}{RETURN_OLD}")
    namespace = dict(vars(awq_quantizer))
    exec(compile(src, f"<patched {inspect.getsourcefile(fn)}>", "exec"), namespace)
    AwqQuantizer._compute_best_scale = namespace["_compute_best_scale"]
    path = str(Path(inspect.getsourcefile(fn)).relative_to(Path(awq.__file__).parent.parent))
    return [{"file": path, "line": where[PATCH_OLD], "was": PATCH_OLD, "now": PATCH_NEW},
            {"file": path, "line": where[RETURN_OLD], "inserted_before": RETURN_OLD, "now": RECORD_LINE}]


def float_config(model_dir: Path):
    """The float folder's config as 4.51 should read it (docstring patch 2)."""
    config = transformers.AutoConfig.from_pretrained(str(model_dir))
    rope = getattr(config, "rope_parameters", None)
    if isinstance(rope, dict) and "rope_theta" in rope:
        if rope.get("rope_type", "default") != "default":
            sys.exit(f"rope_parameters {rope}: only rope_type 'default' is mapped back for transformers 4.51")
        config.rope_theta, config.rope_scaling = float(rope["rope_theta"]), None
    return config


def candidate_scales(x_mean, w_mean, ratio: float, duo: bool) -> torch.Tensor:
    """AutoAWQ 0.2.9's scales for one grid ratio (quantizer.py lines 404-413), op for op."""
    if duo:
        s = (x_mean.pow(ratio) / (w_mean.pow(1 - ratio) + 1e-4)).clamp(min=1e-4)
    else:
        s = x_mean.pow(ratio).clamp(min=1e-4).view(-1)
    s = s / (s.max() * s.min()).sqrt()
    s[torch.isinf(s)] = 1
    s[torch.isnan(s)] = 1
    return s


def recover_ratio(x_mean, w_mean, scales, duo: bool) -> tuple[float | None, bool]:
    """(ratio whose candidate scales equal `scales`, exact?); None when no grid point is close."""
    x_mean, w_mean, scales = x_mean.view(-1), w_mean.view(-1), scales.view(-1).to(x_mean.device)
    cands = [(i / N_GRID, candidate_scales(x_mean, w_mean, i / N_GRID, duo)) for i in range(N_GRID)]
    for ratio, s in cands:
        if torch.equal(s, scales):
            return ratio, True
    ratio, s = min(cands, key=lambda c: (c[1] - scales).abs().max().item())
    return (ratio, False) if torch.allclose(s, scales, rtol=1e-5, atol=1e-7) else (None, False)


def finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


class Recorder:
    """Wraps AwqQuantizer's steps to note, per block, the scale ratios, clip shrinks and wall time."""

    def __init__(self, expected: torch.Tensor):
        self.expected = expected
        self.calib: dict = {}
        self.blocks: list[dict] = []
        self._scale: dict | None = None
        self._clips: list[dict] = []
        self._t0 = 0.0

    def install(self) -> None:
        orig = awq_quantizer.get_calib_dataset          # init_quant calls it by this module-level name

        def get_calib_dataset(*args, **kwargs):
            return self.check_calib(orig(*args, **kwargs))
        awq_quantizer.get_calib_dataset = get_calib_dataset
        self._around("init_quant", after=self.after_init)
        self._around("_get_input_feat", before=self.block_start)
        self._around("_compute_best_scale", after=self.after_scale)
        self._around("_search_best_scale", after=self.after_search_scale)
        self._around("_compute_best_clip", after=self.after_clip)
        self._around("_search_best_clip", after=self.after_search_clip)
        self._around("_apply_quant", after=self.block_end)   # the last step of each block in quantize()

    def _around(self, name: str, before=None, after=None) -> None:
        """Wrap AwqQuantizer.<name>; its wall time adds to the current block's seconds_in[name]."""
        orig = getattr(AwqQuantizer, name)

        @functools.wraps(orig)
        def wrapper(q, *args, **kwargs):
            if before:
                before(q, *args, **kwargs)
            t = time.perf_counter()
            out = orig(q, *args, **kwargs)
            if self.blocks:
                spent = self.blocks[-1]["seconds_in"]
                spent[name] = round(spent.get(name, 0.0) + time.perf_counter() - t, 3)
            if after:
                after(q, out, *args, **kwargs)
            return out
        setattr(AwqQuantizer, name, wrapper)

    def check_calib(self, blocks: list[torch.Tensor]) -> list[torch.Tensor]:
        got = torch.cat(blocks, dim=0) if blocks else torch.empty(0, 0, dtype=torch.long)
        if got.shape != self.expected.shape or not torch.equal(got, self.expected):
            raise SystemExit(f"AutoAWQ's calibration blocks {tuple(got.shape)} differ from the JSON's "
                             f"{tuple(self.expected.shape)}: refusing to measure on other tokens")
        self.calib.update(blocks=got.shape[0], seqlen=got.shape[1], identical_to_json=True)
        return blocks

    def after_init(self, q, out, *args, **kwargs) -> None:
        _, layer_kwargs, inps = out
        n, seqlen = self.expected.shape
        if tuple(inps.shape[:2]) != (n, seqlen):
            raise SystemExit(f"block 0 input is {tuple(inps.shape)}, expected ({n}, {seqlen}, hidden)")
        pos, mask = layer_kwargs.get("position_ids"), layer_kwargs.get("attention_mask")
        self.calib.update(
            block0_input=list(inps.shape), layer_kwargs=sorted(layer_kwargs),
            attention_mask=None if mask is None else list(mask.shape),
            position_ids_arange=bool(pos is not None and pos.shape[-1] == seqlen
                                     and torch.equal(pos.reshape(-1, seqlen)[0].cpu(), torch.arange(seqlen))))

    def block_start(self, q, *args, **kwargs) -> None:
        self.blocks.append({"block": len(self.blocks), "mappings": [], "clips": [], "seconds_in": {}})
        self._t0 = time.perf_counter()

    def after_scale(self, q, scales, x, w_mean, x_mean, module2inspect, linears, fp16_output, *a, **kw):
        search = q._ref_search                          # left there by the patched method
        ratio, exact = recover_ratio(x_mean, w_mean, scales, q.duo_scaling)
        if ratio is None or ratio != search["best_ratio"]:
            raise SystemExit(f"block {len(self.blocks) - 1}: recovered ratio {ratio} but the loop chose "
                             f"{search['best_ratio']}: the scale formula is not 0.2.9's")
        self._scale = {"ratio": ratio, "ratio_matched_exactly": exact,
                       "tokens": x.numel() // x.shape[-1], "loss_elements": fp16_output.numel(),
                       "loss_history": [finite(v) for v in search["history"]]}

    def after_search_scale(self, q, out, *args, **kwargs) -> None:
        prev_op, linears, _ = out
        self.blocks[-1]["mappings"].append({"prev_op": prev_op, "linears": list(linears), **self._scale})
        self._scale = None

    def after_clip(self, q, best_max_val, w, input_feat, *args, **kwargs) -> None:
        co = w.shape[0]
        org = w.reshape(co, -1, q.group_size).abs().amax(dim=-1)
        shrink = best_max_val.reshape(co, -1) / org
        n_tok = input_feat.numel() // input_feat.shape[-1]
        stride = max(1, n_tok // 512)                   # 0.2.9's n_sample_token=512, input_feat[:, ::stride]
        self._clips.append({"shrink_mean": finite(shrink.mean().item()), "shrink_min": finite(shrink.min().item()),
                            "clipped_share": (shrink < 1).float().mean().item(),
                            "tokens": len(range(0, n_tok, stride)), "token_stride": stride})

    def after_search_clip(self, q, clip_list, *args, **kwargs) -> None:
        if len(clip_list) != len(self._clips):
            raise SystemExit(f"{len(clip_list)} clipped linears but {len(self._clips)} clip searches seen")
        self.blocks[-1]["clips"] = [{"linear": name, **c} for (name, _), c in zip(clip_list, self._clips)]
        self._clips = []

    def block_end(self, q, *args, **kwargs) -> None:
        b = self.blocks[-1]
        b["seconds"] = round(time.perf_counter() - self._t0, 3)
        print(json.dumps({"block": b["block"], "seconds": b["seconds"], "ratios": [m["ratio"] for m in b["mappings"]],
                          "shrink_mean": [round(c["shrink_mean"] or 0, 4) for c in b["clips"]]}),
              file=sys.stderr, flush=True)


@torch.no_grad()
def block0_nll(model, ids: torch.Tensor) -> float:
    """Mean next-token NLL on one calibration block: a sanity check that the model is the right one."""
    logits = model.model(ids.view(1, -1)).logits.float()
    return torch.nn.functional.cross_entropy(logits[0, :-1], ids[1:]).item()


def load_float(model_dir: Path, layers: int | None, staging: Path):
    """The float model through AutoAWQ, from a staging folder: model_dir's files linked, config fixed."""
    config = float_config(model_dir)
    if layers:
        config.num_hidden_layers = layers               # smoke runs: the first K blocks, the rest unused
    for f in model_dir.iterdir():
        if f.name != "config.json":
            (staging / f.name).symlink_to(f.resolve())
    config.save_pretrained(str(staging))
    model = AutoAWQForCausalLM.from_pretrained(str(staging), torch_dtype=torch.float32, device_map="cpu",
                                               trust_remote_code=False)
    got = model.model.config.rope_theta, len(model.model.model.layers)
    if got != (config.rope_theta, config.num_hidden_layers):
        raise SystemExit(f"loaded model has (rope_theta, layers) {got}, wanted "
                         f"{(config.rope_theta, config.num_hidden_layers)}")
    return model


def save(model, src: Path, out: Path, record: dict) -> None:
    model.save_quantized(str(out))
    for name in TOKENIZER_FILES:                       # docstring patch 3: copied, not re-serialised
        if (src / name).exists():
            shutil.copy2(src / name, out / name)
    (out / "autoawq_record.json").write_text(json.dumps(record, indent=1, allow_nan=False) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--calib-tokens", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--w-bit", type=int, default=4)
    ap.add_argument("--group-size", type=int, default=64)
    ap.add_argument("--n-samples", type=int, default=128)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--layers", type=int, help="quantize only the first K blocks (a K-block model; smoke runs)")
    args = ap.parse_args(argv)
    if args.out.exists() and any(args.out.iterdir()):
        sys.exit(f"{args.out} is not empty")
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    fingerprint, blocks = load_blocks(args.calib_tokens, args.n_samples, args.seqlen)
    expected = torch.tensor(blocks, dtype=torch.long)
    patches = patch_best_scale()
    recorder = Recorder(expected)
    recorder.install()

    t = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="autoawq-float-") as staging:
        model = load_float(args.model, args.layers, Path(staging))
    load_s = time.perf_counter() - t
    nll_float = block0_nll(model, expected[0])
    quant_config = {"zero_point": True, "q_group_size": args.group_size, "w_bit": args.w_bit, "version": "GEMM"}
    t = time.perf_counter()
    model.quantize(None, quant_config=quant_config, calib_data=blocks,
                   max_calib_samples=args.n_samples, max_calib_seq_len=args.seqlen)
    quantize_s = time.perf_counter() - t
    nll_quant = block0_nll(model, expected[0])

    record = {
        "date": started, "tool": "bench/autoawq_reference.py",
        "versions": {"autoawq": awq.__version__, "transformers": transformers.__version__,
                     "torch": torch.__version__, "python": platform.python_version()},
        "model": str(args.model), "layers": len(model.model.model.layers),
        "attn_implementation": model.model.config._attn_implementation,
        "config": {**quant_config, "duo_scaling": True, "apply_clip": True, "n_grid": N_GRID,
                   "max_calib_samples": args.n_samples, "max_calib_seq_len": args.seqlen,
                   "n_parallel_calib_samples": None, "dtype": "float32", "device": "cpu",
                   "torch_threads": torch.get_num_threads()},
        "calibration": {"file": str(args.calib_tokens), "fingerprint": fingerprint, **recorder.calib},
        "patches": patches,
        "seconds": {"load": round(load_s, 2), "quantize": round(quantize_s, 2)},
        "block0_nll": {"float": finite(nll_float), "autoawq": finite(nll_quant),
                       "note": "on calibration block 0 (in-sample): a sanity check, not a quality figure"},
        "blocks": recorder.blocks,
    }
    t = time.perf_counter()
    save(model, args.model, args.out, record)
    print(json.dumps({"out": str(args.out), "quantize_s": record["seconds"]["quantize"],
                      "save_s": round(time.perf_counter() - t, 2), "block0_nll": record["block0_nll"],
                      "ratios": [[m["ratio"] for m in b["mappings"]] for b in recorder.blocks]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
