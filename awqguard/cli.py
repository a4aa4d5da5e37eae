"""The `awqguard` command line. Thin: parse, call the library, print, map errors to exit codes."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from awqguard.version import __version__
from awqguard.diagnose import LINEAR_BLOCKS, TOKENS
from awqguard.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, AwqguardError


def _quant_defaults() -> dict:
    """QuantConfig's field defaults: the quantize options take theirs from there, so the two never drift."""
    import dataclasses

    from awqguard.quantizer.config import QuantConfig
    return {f.name: f.default for f in dataclasses.fields(QuantConfig)}


def _add_quantize(sub) -> None:
    from awqguard.quantizer.config import MATMUL_DTYPES, ROUNDINGS
    d = _quant_defaults()
    p = sub.add_parser("quantize", help="quantize a model with AWQ into an AutoAWQ GEMM checkpoint",
                       description="Quantize MODEL (a Hugging Face folder or .gguf file; default: the embedded "
                                   "SmolLM2-135M-Instruct) with AWQ and write an AutoAWQ GEMM checkpoint.")
    p.add_argument("model", nargs="?", default=None, help="model folder or .gguf file (default: SmolLM2-135M-Instruct)")
    p.add_argument("--out", required=True, type=Path, help="output checkpoint folder")
    p.add_argument("--w-bit", type=int, default=d["w_bit"],
                   help="weight bits: 4 (packed) or 2/3/8 (fake-quant) (default %(default)s)")
    p.add_argument("--group-size", type=int, default=None,
                   help=f"input channels per scale; -1 = whole row (default {d['group_size']}; "
                        "64 for the embedded default model)")
    p.add_argument("--no-zero-point", action="store_true", help="symmetric grid instead of asymmetric")
    p.add_argument("--version", choices=["gemm"], default=d["version"],
                   help="checkpoint layout: only gemm (AutoAWQ GEMM) is written (default %(default)s)")
    p.add_argument("--calib", action="append", default=None, metavar="PATH", type=Path,
                   help="calibration text: .txt, .jsonl (\"text\" field), a fixture suite folder or a saved "
                        "dataset folder; repeatable (default: the Python language reference shipped with Python)")
    p.add_argument("--n-samples", type=int, default=d["n_samples"], help="calibration sequences (default %(default)s)")
    p.add_argument("--seqlen", type=int, default=d["seqlen"],
                   help="tokens per calibration sequence (default %(default)s)")
    p.add_argument("--no-duo-scaling", action="store_true", help="scale by activations only (s = x^r)")
    p.add_argument("--no-clip", action="store_true", help="skip the weight clipping search")
    p.add_argument("--rounding", choices=list(ROUNDINGS), default=d["rounding"],
                   help="nearest (standard AWQ) or dh: Dynamic Heuristic greedy flips that cancel each row's "
                        "expected output error, in the scale search and the final rounding (default %(default)s; "
                        "see the README's measurement before choosing dh)")
    p.add_argument("--max-flip-percent", type=float, default=d["max_flip_percent"], metavar="SHARE",
                   help="dh: most weights flipped per output row, as a share of in_features "
                        f"(default %(default)s = {d['max_flip_percent'] * 100:g}%%)")
    p.add_argument("--knee-tolerance", type=float, default=d["knee_tolerance"], metavar="SHARE",
                   help="dh: move the Kneedle outlier cut by this share of the searched channels; positive "
                        "protects more channels from flips, negative fewer (default %(default)s)")
    p.add_argument("--not-convert", action="append", default=[], metavar="NAME",
                   help="module name (or part of one) to keep in full precision; repeatable")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="compute device; cuda uses every visible GPU (default auto)")
    p.add_argument("--devices", default=None, metavar="0,1",
                   help="the GPUs to use, by index (each block goes to the one with the most free memory)")
    p.add_argument("--compute-dtype", choices=["auto", "float32", "float16", "bfloat16"], default="auto",
                   help="precision blocks are quantized in: auto is float32 on CPU, float16 on CUDA "
                        "(recorded in awqguard.json; a dtype other than float32 is part of the identity)")
    p.add_argument("--matmul-dtype", choices=list(MATMUL_DTYPES), default=d["matmul_dtype"],
                   help="products of the calibration pass and the scale search when blocks compute in float32: "
                        "bfloat16 (weights, folding, clipping and rounding stay float32; about 1.4-1.6x faster on "
                        "the default model) or float32 (exact) (default %(default)s)")
    p.add_argument("--seed", type=int, default=d["seed"], help="calibration sampling seed (default %(default)s)")
    p.add_argument("--max-shard-size", default="5GB", metavar="SIZE",
                   help="largest weights file; more weights go to model-0000K-of-0000N.safetensors with "
                        "model.safetensors.index.json, as transformers writes them (default %(default)s)")
    p.add_argument("--in-memory", action="store_true",
                   help="load the whole model instead of streaming it block by block from its files (the "
                        "checkpoint is the same either way; streaming keeps peak memory to one block)")
    p.add_argument("--activation-budget", default="4GB", metavar="SIZE",
                   help="calibration activations past this size (per buffer) go to a memory-mapped file "
                        "beside --out (default %(default)s)")
    p.add_argument("--force", action="store_true", help="replace whatever --out already holds")
    p.set_defaults(func=cmd_quantize)


def cmd_quantize(args) -> int:
    from rich.console import Console

    from awqguard.files import check_writable
    from awqguard.models import DEFAULT_GROUP_SIZE
    from awqguard.quantizer.api import quantize
    from awqguard.quantizer.config import QuantConfig
    from awqguard.shards import parse_size

    check_writable(args.out, "--out")                      # before the model is even loaded
    parse_size(args.max_shard_size), parse_size(args.activation_budget, "--activation-budget")
    console = Console(stderr=True, soft_wrap=not sys.stderr.isatty())     # a log keeps one line per message
    group_size = args.group_size
    if group_size is None:
        group_size = DEFAULT_GROUP_SIZE if args.model is None else _quant_defaults()["group_size"]
    cfg = QuantConfig(w_bit=args.w_bit, group_size=group_size, zero_point=not args.no_zero_point,
                      version=args.version, modules_to_not_convert=tuple(args.not_convert),
                      n_samples=args.n_samples, seqlen=args.seqlen, duo_scaling=not args.no_duo_scaling,
                      apply_clip=not args.no_clip, seed=args.seed, rounding=args.rounding,
                      max_flip_percent=args.max_flip_percent, knee_tolerance=args.knee_tolerance,
                      matmul_dtype=args.matmul_dtype)
    devices = [d.strip() for d in args.devices.split(",") if d.strip()] if args.devices else None
    result = quantize(args.model, out=args.out, config=cfg, calib=args.calib, device=args.device,
                      devices=devices, compute_dtype=args.compute_dtype,
                      force=args.force, max_shard_size=args.max_shard_size,
                      stream=False if args.in_memory else None, activation_budget=args.activation_budget)
    rec = result.record
    if result.reused:
        console.print(f"[green]{args.out}[/] already holds this checkpoint (same model, config and "
                      "calibration); nothing to do.")
    else:
        q = rec["quantization"]
        dh = (f", dh rounding: {q['dh']['flipped_share']:.2%} of weights flipped, "
              f"{q['dh']['outlier_share']:.2%} of channels protected" if "dh" in q else "")
        console.print(f"[green]wrote {args.out}[/]: {q['quantized_linears']} linears, w{cfg.w_bit} "
                      f"g{cfg.group_size}{' (fake-quantized floats)' if rec['fake_quantized'] else ''}{dh}, "
                      f"{rec['wall_time_s']:.0f} s")
    return EXIT_OK


def _add_doctor(sub) -> None:
    p = sub.add_parser("doctor", help="show torch/CUDA/driver/Triton facts and which kernel paths will run")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.set_defaults(func=cmd_doctor)


def cmd_doctor(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from awqguard.doctor import kernel_report, machine_facts

    facts, kernels = machine_facts(), kernel_report()
    if args.json:
        print(json.dumps({"machine": facts, "kernels": kernels}, indent=2))
        return EXIT_OK
    console = Console()
    t = Table(title="machine", show_header=False)
    for k, v in facts.items():
        t.add_row(k, "-" if v is None else str(v))
    console.print(t)
    k = Table(title="kernel paths")
    for col in ("path", "available", "keeps weights packed", "what"):
        k.add_column(col)
    for name, info in kernels["paths"].items():
        k.add_row(name, "yes" if info["available"] else "no", "yes" if info["keeps_packed"] else "no", info["what"])
    console.print(k)
    console.print(f"default path on CPU: [bold]{kernels['default_cpu']}[/]; memory-saving CPU path: "
                  f"[bold]{kernels['memory_saving_cpu']}[/]; on CUDA: [bold]{kernels['default_cuda'] or 'no CUDA device'}[/]")
    return EXIT_OK


def _add_fixtures(sub) -> None:
    p = sub.add_parser("fixtures", help="work with QA fixture suites")
    fsub = p.add_subparsers(dest="fixtures_command", required=True)
    v = fsub.add_parser("validate", help="report every problem in a suite (exit 4 if any)")
    v.add_argument("suite", type=Path, help="suite folder (holds suite.yaml)")
    v.set_defaults(func=cmd_fixtures_validate)


def cmd_fixtures_validate(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from awqguard.errors import EXIT_USAGE
    from awqguard.gates.fixtures import load_suite, validate_suite

    console = Console()
    problems = validate_suite(args.suite)
    if problems:
        table = Table(title=f"{len(problems)} problem(s) in {args.suite}", title_style="bold red")
        for col in ("file", "item", "field", "problem"):
            table.add_column(col, overflow="fold")
        for p in problems:
            table.add_row(p.file, p.item, p.field, p.message)
        console.print(table)
        return EXIT_USAGE
    suite = load_suite(args.suite)
    kinds = {k: sum(i.kind == k for i in suite.items) for k in ("qa", "json", "long")}
    console.print(f"[green]{args.suite}[/]: suite {suite.name!r} is valid: {len(suite.items)} items "
                  f"({', '.join(f'{n} {k}' for k, n in kinds.items())}) over {len(suite.documents)} documents, "
                  f"{len(suite.sections)} sections")
    return EXIT_OK


def _add_check(sub) -> None:
    p = sub.add_parser("check", help="run the reference and the AWQ candidate side by side and decide the gates",
                       description="Run the full-precision reference and the candidate through the RAG pipeline "
                                   "over a fixture suite, compute the metrics, decide the gates and write "
                                   "results.json, items.jsonl, report.html, junit.xml and summary.md. Exit 0 when "
                                   "no fail-severity gate fails (an inconclusive gate heads the verdict but does "
                                   "not fail it, unless --strict), 1 otherwise, 4 for configuration or fixture "
                                   "errors.")
    p.add_argument("--config", type=Path, default=None,
                   help="awqguard.yaml or pyproject.toml (default: ./awqguard.yaml, else [tool.awqguard] in ./pyproject.toml)")
    p.add_argument("--reference", default=None, help="reference model folder, .gguf, or a served model's API root "
                   "http://HOST:PORT/v1 (default: SmolLM2-135M-Instruct)")
    p.add_argument("--candidate", default=None,
                   help="awqguard/AutoAWQ checkpoint, any model --reference accepts, or http://HOST:PORT/v1 "
                        "(default: the reference quantized by awqguard, cached under .awqguard/)")
    p.add_argument("--reference-model", default=None, metavar="NAME",
                   help="the served reference's model name (default: the server's only model)")
    p.add_argument("--candidate-model", default=None, metavar="NAME",
                   help="the served candidate's model name (default: the server's only model)")
    p.add_argument("--suite", default=None, help="fixture suite folder (default: fixtures/default)")
    p.add_argument("--out", default=None, help="output folder (default: reports/latest)")
    p.add_argument("--seeds", default=None, help="comma-separated sampling seeds (default: 0,1)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N items")
    p.add_argument("--greedy", action="store_true", help="deterministic decoding instead of sampling")
    p.add_argument("--no-cache", action="store_true", help="recompute runs, indexes and the quantized embedder")
    p.add_argument("--warn-only", action="store_true", help="report failures but exit 0")
    p.add_argument("--strict", action="store_true",
                   help="inconclusive gates fail the check, fail-severity ones only (default: they head the verdict but exit 0)")
    p.add_argument("--no-diagnose", action="store_true",
                   help="do not diagnose a failing candidate (default: a failing check runs awqguard diagnose "
                        "and writes diagnosis.json beside results.json; config key diagnose)")
    p.set_defaults(func=cmd_check)


def check_config(args):
    """The one CheckConfig: defaults, then the config file, then the command line."""
    from awqguard.gates.config import build_check_config
    return build_check_config(args.config, check_overrides(args), "command line")


def check_overrides(args) -> dict:
    """The dotted config overrides `check`'s options give; None where one is not given, so the config
    file's value stands (a flag absent is not a flag set to false)."""
    from awqguard.errors import ConfigError
    seeds = None
    if args.seeds is not None:
        try:
            seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        except ValueError:
            raise ConfigError(f"--seeds takes comma-separated integers such as 0,1; got {args.seeds!r}") from None
    overrides = {key: getattr(args, key) for key in ("reference", "candidate", "suite", "out")}
    overrides.update({"reference.model": args.reference_model, "candidate.model": args.candidate_model})
    overrides.update({"seeds": seeds, "limit": args.limit, "decoding.greedy": True if args.greedy else None,
                      "decision.strict": True if args.strict else None,
                      "diagnose": "never" if args.no_diagnose else None})
    return overrides


def cmd_check(args) -> int:
    from rich.console import Console

    from awqguard.errors import EXIT_GATE_FAILED
    from awqguard.files import check_writable
    from awqguard.gates.config import DEFAULTS
    from awqguard.gates.engine import run_gates
    from awqguard.report.outputs import clear_outputs, print_results, write_error, write_outputs

    out = Path(args.out or DEFAULTS["out"])
    try:
        config = check_config(args)
        out = check_writable(config.out, "--out")          # before any work, not after it
        clear_outputs(out)
        results = run_gates(config, use_cache=not args.no_cache, warn_only=args.warn_only)
    except BaseException as exc:   # CI sees a runtime problem as an error in junit.xml, then main() reports it
        write_error(out, str(exc) or type(exc).__name__, type(exc).__name__)
        raise
    paths = write_outputs(results, out)
    console = Console(width=None if sys.stdout.isatty() else 120)
    print_results(results, console, paths)
    _diagnose_failure(config, results, out, not args.no_cache, console)
    return EXIT_OK if results["passed"] or args.warn_only else EXIT_GATE_FAILED


def _diagnose_failure(config, results: dict, out: Path, use_cache: bool, console) -> None:
    """A failing check's own diagnosis, printed after its verdict and added to its report."""
    from rich.markup import escape

    from awqguard.diagnose.on_failure import attach, diagnose_failure, wanted
    from awqguard.report.diagnosis import print_diagnosis
    from awqguard.report.outputs import results_body
    if not wanted(config, results):
        return
    console.print("\n[bold]diagnosing the failing candidate[/] (about 40 s on the default model; "
                  "--no-diagnose or diagnose: never skips this)")
    payload, why_not = diagnose_failure(config, use_cache)
    if payload is None:
        console.print(f"[cyan]note[/]: {escape(why_not)}")
        return
    print_diagnosis(payload, attach(payload, results_body(results), out), console)
    if payload["fixes"]:
        candidate = config.data["candidate"]
        console.print(escape("to try them in turn until one passes: awqguard tune"
                             + (f" --candidate {candidate}" if candidate else "")), soft_wrap=True)


def _add_model_options(p, candidate_help: str) -> None:
    """--config, --reference, --candidate and --suite, as diagnose and tune take them (check's subset)."""
    p.add_argument("--config", type=Path, default=None, help="awqguard.yaml or pyproject.toml (as for check)")
    p.add_argument("--reference", default=None, help="reference model folder or .gguf (default: SmolLM2-135M-Instruct)")
    p.add_argument("--candidate", default=None, help=candidate_help)
    p.add_argument("--suite", default=None, help="fixture suite folder (default: fixtures/default)")


def _model_overrides(args) -> dict:
    return {"reference": args.reference, "candidate": args.candidate, "suite": args.suite}


def _add_diagnose(sub) -> None:
    p = sub.add_parser("diagnose", help="rank which blocks and linears of a candidate cause its error, and compute fixes",
                       description="Swap each block of the candidate, then each linear of its most sensitive blocks, "
                                   "alone into the float reference and measure the KL it adds on the suite's corpus; "
                                   "report activation outliers and how far the calibration text is from the corpus; "
                                   "print fixes computed for this candidate and write diagnosis.json to --out.")
    _add_model_options(p, "the quantized checkpoint folder (default: the reference quantized by awqguard, cached)")
    p.add_argument("--out", default=None, help="folder for diagnosis.json (default: the check's output folder, reports/latest)")
    p.add_argument("--tokens", type=int, default=TOKENS, help="corpus positions the KL is averaged over (default %(default)s)")
    p.add_argument("--linear-blocks", type=int, default=LINEAR_BLOCKS, metavar="N",
                   help="swap the linears of the N most sensitive blocks one by one (default %(default)s)")
    p.set_defaults(func=cmd_diagnose)


def cmd_diagnose(args) -> int:
    from awqguard.diagnose.entry import run_diagnosis, write_diagnosis
    from awqguard.errors import ConfigError
    from awqguard.files import check_writable
    from awqguard.gates.config import build_check_config
    from awqguard.report.diagnosis import print_diagnosis

    if args.tokens < 16 or args.linear_blocks < 0:
        raise ConfigError("--tokens must be at least 16 and --linear-blocks at least 0")
    config = build_check_config(args.config, _model_overrides(args), "command line")
    out = check_writable(Path(args.out) if args.out else config.out, "--out")
    payload = run_diagnosis(config, args.tokens, args.linear_blocks)
    path = write_diagnosis(payload, out)
    print_diagnosis(payload, path)
    return EXIT_OK


def _add_tune(sub) -> None:
    p = sub.add_parser("tune", help="try the fixes a failing candidate's diagnosis computes and keep the first that passes",
                       description="Check the candidate, diagnose it, then quantize the reference with each computed "
                                   "fix (alone, then combined, cheapest first) and check each against the cached "
                                   "reference run; stop at the first that passes every fail-severity gate within the "
                                   "byte budget, copy it to OUT/best and write OUT/tune.json. Trials are cached: an "
                                   "interrupted tune resumes. Exit 0 when a trial passes (or the candidate already "
                                   "does), 1 when none does.")
    _add_model_options(p, "the failing checkpoint, made by awqguard quantize")
    p.add_argument("--out", type=Path, default=Path("reports/tune"), help="output folder (default %(default)s)")
    p.add_argument("--budget", type=int, default=6, metavar="N", help="at most N trials (default %(default)s)")
    p.add_argument("--max-bytes-ratio", type=float, default=None, metavar="R",
                   help="only trials storing at most R of the float weights' bytes (as packed)")
    p.set_defaults(func=cmd_tune)


def cmd_tune(args) -> int:
    from rich.console import Console

    from awqguard.errors import EXIT_GATE_FAILED, ConfigError
    from awqguard.files import check_writable
    from awqguard.gates.config import build_check_config
    from awqguard.report.tune import print_row, print_tune
    from awqguard.tune_run import run_tune, write_tune

    if args.budget < 1 or (args.max_bytes_ratio is not None and args.max_bytes_ratio <= 0):
        raise ConfigError("--budget must be at least 1 and --max-bytes-ratio above 0")
    out = check_writable(args.out, "--out")
    config = build_check_config(args.config, _model_overrides(args), "command line")
    console = Console(stderr=True, soft_wrap=not sys.stderr.isatty())     # a log keeps one line per trial
    payload = run_tune(config, out, args.budget, args.max_bytes_ratio, lambda text: console.print(text),
                       lambda row: print_row(row, console))
    path = write_tune(out, payload)
    print_tune(payload, path)
    return EXIT_OK if payload["already_passes"] or payload["best"] is not None else EXIT_GATE_FAILED


def _add_report(sub) -> None:
    p = sub.add_parser("report", help="write the self-contained HTML report of a results.json",
                       description="Render results.json (written by awqguard check) as one HTML file with no "
                                   "network requests: verdict, gate table, Problem Map, plots, items side by side "
                                   "and the environment fingerprint.")
    p.add_argument("results", type=Path, help="results.json written by awqguard check")
    p.add_argument("-o", "--out", type=Path, default=None, help="HTML file to write (default: report.html beside results.json)")
    p.set_defaults(func=cmd_report)


def _read_results(path: Path) -> dict:
    """results.json, validated; a damaged or foreign file is the user's to fix (exit 4)."""
    from awqguard.errors import ConfigError
    from awqguard.report.html import read_results
    try:
        return read_results(path)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def cmd_report(args) -> int:
    from awqguard.errors import ConfigError
    from awqguard.report.html import check_out_path, read_diagnosis, write_report
    results = _read_results(args.results)
    out = args.out or args.results.parent / "report.html"
    check_out_path(out, args.results, "-o" if args.out else "report")     # before rendering
    try:
        write_report(results, out, read_diagnosis(args.results))
    except OSError as exc:
        raise ConfigError(f"{out}: cannot write the report ({exc.strerror or exc})") from None
    from awqguard.report.format import verdict_sentence
    print(f"{out}: {verdict_sentence(results)}")
    return EXIT_OK


def _add_verify(sub) -> None:
    p = sub.add_parser("verify", help="prove that what ships is what passed: compare results.json's digests with files",
                       description="Recompute the sha256 digests that awqguard check recorded in results.json for "
                                   "the candidate (and, when given, the reference and the suite). Exit 0 when the "
                                   "results passed and every digest matches, 1 when they match but the results did "
                                   "not pass, 4 when a file differs, is missing or was not part of the check.")
    p.add_argument("results", type=Path, help="results.json written by awqguard check")
    p.add_argument("--candidate", required=True, type=Path, help="the checkpoint folder (or file) about to ship")
    p.add_argument("--reference", type=Path, default=None, help="also verify the reference model folder or .gguf")
    p.add_argument("--suite", type=Path, default=None, help="also verify the fixture suite folder")
    p.set_defaults(func=cmd_verify)


def cmd_verify(args) -> int:
    from awqguard.errors import EXIT_GATE_FAILED
    from awqguard.evidence import verify
    results = _read_results(args.results)
    verify(results, args.results, {"candidate": args.candidate, "reference": args.reference, "suite": args.suite})
    from awqguard.report.format import gate_counts, verdict
    if not results["passed"]:
        print(f"{args.candidate}: the files are the ones checked, but the check did not pass "
              f"({gate_counts(results['summary'])})")
        return EXIT_GATE_FAILED
    if verdict(results) == "inconclusive":     # passed, but not every gate could be decided: say so
        print(f"{args.candidate}: verified, every file matches the checked candidate and no gate failed, but "
              f"{results['summary']['inconclusive']} gate(s) were inconclusive")
        return EXIT_OK
    print(f"{args.candidate}: verified, every file matches the checked candidate and its gates passed")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="awqguard", description="AWQ quantizer and regression gates for RAG")
    parser.add_argument("-V", "--version-info", action="version", version=f"awqguard {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for internal errors")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_quantize(sub)
    _add_doctor(sub)
    _add_check(sub)
    _add_report(sub)
    _add_diagnose(sub)
    _add_tune(sub)
    _add_fixtures(sub)
    _add_verify(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return args.func(args)
    except AwqguardError as exc:
        print(f"awqguard {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"awqguard {args.command}: interrupted; nothing half-written was left behind", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:   # a bug, not bad input: say so, keep the traceback behind --debug
        if args.debug:
            raise
        print(f"awqguard {args.command}: internal error: {type(exc).__name__}: {exc}\n"
              "(rerun with --debug for the traceback, and please report it)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
