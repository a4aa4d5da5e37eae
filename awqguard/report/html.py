"""`awqguard report`: one self-contained HTML file written from results.json alone.

`report_view` turns a validated results document (report/schema.py requires every key it reads)
into what the page shows (pure, testable without a browser); the jinja2 template in
templates/report.html.j2 lays it out with inline CSS, inline SVG plots and a few lines of inline
script for the item filter. Nothing is fetched: no fonts, no scripts, no images.
"""

from __future__ import annotations

import json
from pathlib import Path

import jinja2

from awqguard import files
from awqguard.errors import ConfigError
from awqguard.report import svg
from awqguard.report.format import (failed_of, interval, number, run_counts, status_counts, threshold_text, verdict,
                                    verdict_note, verdict_word)
from awqguard.report.schema import ENV_KEYS, loads_strict, validate_results

TOP_DRIFT = 10          # items the "drifted most" filter shows


def _entropy_plots(results: dict) -> tuple[dict, dict]:
    """The entropy-vs-length and KL plots. Both need long items: without any, entropy is {} and the
    engine measured no continuation.kl_mean, so the one optional key read here is entropy_reference."""
    entropy = results["entropy"]
    if not entropy.get("entropy_reference"):
        reason = results["metrics"].get("entropy.onset_share", {}).get("reason") or "the suite has no long items"
        note = f"Not measured: {reason}."
        return ({"title": "Entropy vs length", "svg": svg.empty_chart("Entropy vs length", reason), "note": note},
                {"title": "KL over positions", "svg": svg.empty_chart("KL over positions", reason), "note": note})
    onset = entropy["onset_candidate"]
    markers = [(onset, "cand at 2x ref", "cand")] if onset is not None else []
    chart = svg.line_chart("Entropy vs length (smoothed)", [
        svg.Series("reference", entropy["smoothed_reference"], "ref"),
        svg.Series("candidate", entropy["smoothed_candidate"], "cand")], "generated token", "entropy (nats)", markers)
    note = (f"Onset share {number(entropy.get('onset_share'))}: the share of the length where the candidate's "
            f"smoothed entropy runs above the reference's own at the same position (a position counts from 1.25x, "
            f"fully at 2x); the candidate first reaches 2x at position {number(onset, 0)}. Slope excess "
            f"{number(entropy['slope_excess'])} per 100 tokens.")
    kl = svg.line_chart("KL(reference ‖ candidate) over positions", [svg.Series("KL per token", entropy["kl"], "kl")],
                        "generated token", "KL (nats)")
    kl_mean = results["metrics"]["continuation.kl_mean"]["value"]
    kl_note = f"Mean {number(kl_mean)} nats over {entropy['sequences']} long items."
    if entropy.get("estimate"):            # a served variant returned only its top K per position
        caveat = f" Entropy and KL are {entropy['estimate']}s (lower bounds: the tail beyond the top K is one bucket)."
        note, kl_note = note + caveat, kl_note + caveat
    return ({"title": "Entropy vs length", "svg": chart, "note": note},
            {"title": "KL over positions", "svg": kl, "note": kl_note})


def _plots(results: dict, rows: list[dict]) -> list[dict]:
    """The four plots in page order: entropy vs length, drift per item, KL over positions, coverage."""
    entropy_plot, kl_plot = _entropy_plots(results)
    ranked = sorted(rows, key=lambda r: r["drift"], reverse=True)
    # the drift-item gate can be switched off in the configuration; the chart then has no threshold line
    drift_gate = next((g for g in results["gates"] if g["metric"] == "drift.answer_ds_item_excess_max"), None)
    drift_plot = {"title": "Answer drift per item", "svg": svg.interval_chart(
        "Answer drift per item beyond seed noise", [r["id"] for r in ranked], [r["drift"] for r in ranked],
        [r["drift_ci"] for r in ranked], "ΔS drift", drift_gate["threshold"] if drift_gate else None),
        "note": "ΔS between the two variants' answers minus the reference's seed-to-seed ΔS; bars: 95% bootstrap "
                "interval of the raw drift over the item's prompts and seeds, shifted by the same noise floor."}
    coverage_plot = {"title": "Coverage", "svg": svg.histogram("Anchor coverage per item", [
        svg.Series("reference", [r["coverage"][0] for r in rows], "ref"),
        svg.Series("candidate", [r["coverage"][1] for r in rows], "cand")], 10, 0.0, 1.0, "coverage of the anchor"),
        "note": "Share of the anchor section's tokens inside the retrieved chunks, averaged over each item's prompts."}
    return [entropy_plot, drift_plot, kl_plot, coverage_plot]


def _rows(results: dict) -> list[dict]:
    """One row per item, most drift first; the first TOP_DRIFT are marked for the "drifted most" filter."""
    rows = []
    for item_id, s in results["items"].items():
        ref, cand, drift = s["reference"], s["candidate"], s["drift"]
        noise = drift["seed_noise"] or 0.0           # null under greedy decoding: no sampling noise floor
        ci = drift["answer_ds_ci"]
        flipped = ref["lambda"] != cand["lambda"] or ref["retrieved"][:1] != cand["retrieved"][:1]
        rows.append({"id": item_id, "kind": s["kind"], "question": s["question"],
                     "retrieved": [ref["retrieved"], cand["retrieved"]], "answers": [ref["answer"], cand["answer"]],
                     "ds_qr": [ref["ds_qr"], cand["ds_qr"]], "coverage": [ref["coverage"], cand["coverage"]],
                     "lambda": [ref["lambda"], cand["lambda"]], "drift": drift["answer_ds_excess"],
                     "drift_ci": [ci[0] - noise, ci[1] - noise] if ci else None, "flipped": flipped})
    rows.sort(key=lambda r: r["drift"], reverse=True)
    for rank, row in enumerate(rows):
        row["top_drift"] = rank < TOP_DRIFT
    return rows


def _fingerprint(env: dict) -> list[tuple[str, str]]:
    """The environment panel: versions and devices, then what identifies the models, suite and embedder."""
    shown = [(k, ", ".join(env[k]) if isinstance(env[k], list) else number(env[k])) for k in ENV_KEYS]
    ref, cand, suite, emb = env["reference"], env["candidate"], env["suite"], env["embedder"]
    return shown + [("reference", f"{ref['source']} · {ref['fingerprint']}"),
                    ("candidate", f"{cand['source']} · {cand['fingerprint']}"),
                    ("suite", f"{suite['name']} ({suite['items']} items) · {suite['fingerprint']}"),
                    ("embedder", f"{emb['fingerprint']} · candidate pipeline: {emb['candidate_pipeline']}"),
                    ("seeds", ", ".join(map(str, env["seeds"])))]


def same_candidate(diagnosis: dict, results: dict) -> bool:
    """Whether diagnosis.json's content diagnosed the candidate results.json checked (by fingerprint)."""
    return diagnosis.get("candidate_fingerprint") == results["environment"]["candidate"]["fingerprint"]


def diagnosis_view(diagnosis: dict | None, results: dict) -> dict | None:
    """The Diagnosis section, from a diagnosis.json found beside results.json: shown only when it
    diagnosed the same candidate (by fingerprint), else a note saying why it is left out."""
    if diagnosis is None:
        return None
    candidate = results["environment"]["candidate"]
    if not same_candidate(diagnosis, results):
        return {"shown": False, "note": f"diagnosis.json beside this results.json diagnosed another candidate "
                                        f"({diagnosis.get('candidate', '?')}); run awqguard diagnose again for "
                                        f"{candidate['source']}."}
    from awqguard.report.diagnosis import TOP, calibration_line
    return {"shown": True, "note": "", "candidate": diagnosis["candidate"], "tokens": diagnosis["tokens"],
            "kl_total": diagnosis["kl_total"], "seconds": diagnosis["seconds"],
            "blocks": diagnosis["blocks"][:TOP], "linears": diagnosis["linears"][:TOP],
            "calibration": calibration_line(diagnosis["calibration"]), "fixes": diagnosis["fixes"]}


def report_view(results: dict, diagnosis: dict | None = None) -> dict:
    """Everything the page shows, in display order, from a results.json content the schema accepts
    (one written before inconclusive gates too: `n`, `verdict` and the new counts are read with defaults)."""
    gates = [{**g, "n": g.get("n"), "threshold_text": threshold_text(g, tolerance=True),
              "value_text": number(g["value"]), "reference_text": number(g["reference"])} for g in results["gates"]]
    failed = [g for g in gates if g["status"] == "fail"]
    failed_ids = {g["id"] for g in failed}
    symptoms = [{**s, "status": "fail" if failed_ids & set(s["gates"]) else "warn"} for s in results["symptoms"]]
    symptoms.sort(key=lambda s: s["status"] != "fail")          # failures first
    rows = _rows(results)
    env, timing, summary = results["environment"], results["timing"], results["summary"]
    return {
        "passed": results["passed"], "warn_only": results["warn_only"], "summary": summary,
        "failed_of": failed_of(summary), "run_counts": run_counts(summary), "verdict": verdict_word(verdict(results)),
        "verdict_class": verdict(results), "verdict_note": verdict_note(results, "awqguard check --strict"),
        "other_counts": status_counts(summary, ("warned", "inconclusive", "uninformative", "skipped")),
        "failed": failed, "inconclusive": [g for g in gates if g["status"] == "inconclusive"],
        "gates": gates, "symptoms": symptoms,
        "notices": results["notices"], "rows": rows, "plots": _plots(results, rows),
        "flipped": sum(r["flipped"] for r in rows), "top_drift": min(TOP_DRIFT, len(rows)),
        "perplexity": results["perplexity"], "fingerprint": _fingerprint(env),
        "config": json.dumps(env["config"], indent=1, ensure_ascii=False),
        "stages": timing["stages"], "wall_s": timing["wall_s"], "created": results["created"],
        "reference": env["reference"]["source"], "candidate": env["candidate"]["source"],
        "schema_version": results["schema_version"], "fmt": number, "interval": interval,
        "diagnosis": diagnosis_view(diagnosis, results),
    }


def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("awqguard.report", "templates"),
                              autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True)


def render_report(results: dict, diagnosis: dict | None = None) -> str:
    """The report page for one results.json content (or run_gates' results, records and all), with
    the Diagnosis section when `diagnosis` (diagnosis.json's content) is given.

    Validated first, so the page reads every key it shows directly and a dict that is not what the
    engine writes is a ValueError naming the JSON paths at fault, not a KeyError from the middle."""
    validate_results(results, "results")
    return _environment().get_template("report.html.j2").render(**report_view(results, diagnosis))


def read_results(path: Path) -> dict:
    """results.json as a dict, or a ValueError naming the file and what is wrong with it."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a folder; give the results.json that awqguard check wrote into it")
    try:
        data = loads_strict(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file (awqguard check writes results.json into its --out folder)") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                         "the file is damaged") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise ValueError(f"{path}: not a results.json (its JSON is nested too deeply to read)") from None
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    validate_results(data, path)
    return data


def check_out_path(out: Path, results_path: Path, option: str = "-o") -> Path:
    """Raise ConfigError naming `out` unless the report can be written there; checked before rendering."""
    try:
        out = files.check_writable(out, option, kind="file")
        if out.exists() and not out.is_file():
            raise ConfigError(f"{option} {out} exists and is not a regular file")
        if out.exists() and out.samefile(results_path):
            raise ConfigError(f"{option} {out} is the results file itself; write the report elsewhere")
    except OSError as exc:
        raise ConfigError(f"{option} {out}: cannot be written ({exc.strerror or exc})") from None
    return out


def write_report(results: dict, out: Path, diagnosis: dict | None = None) -> Path:
    """Render and write report.html atomically: a reader never sees half a page."""
    return files.write_text(out, render_report(results, diagnosis))


def read_diagnosis(results_path: Path) -> dict | None:
    """diagnosis.json beside results.json, or None when there is none or it cannot be read (the
    report is still written; a damaged diagnosis only loses its section)."""
    path = Path(results_path).parent / "diagnosis.json"
    try:
        value = loads_strict(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    keys = ("candidate", "candidate_fingerprint", "tokens", "kl_total", "seconds", "blocks", "linears",
            "calibration", "fixes")
    return value if isinstance(value, dict) and all(k in value for k in keys) else None
