"""`awqguard report`: one self-contained HTML file written from results.json alone.

`report_view` turns results into what the page shows (pure, testable without a browser); the
jinja2 template in templates/report.html.j2 lays it out with inline CSS, inline SVG plots and a
few lines of inline script for the item filter. Nothing is fetched: no fonts, no scripts, no images.
"""

from __future__ import annotations

import json
from pathlib import Path

import jinja2

from awqguard import files
from awqguard.errors import ConfigError
from awqguard.report import svg
from awqguard.report.ci import threshold_text
from awqguard.report.schema import ENV_KEYS, loads_strict, validate_results

TOP_DRIFT = 10          # items the "drifted most" filter shows


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return f"{value:.{digits}f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _plots(results: dict, rows: list[dict]) -> list[dict]:
    entropy = results.get("entropy") or {}
    plots = []
    if entropy.get("entropy_reference"):
        markers = [(entropy[k], f"onset {who}", css) for k, who, css in
                   (("onset_reference", "ref", "ref"), ("onset_candidate", "cand", "cand")) if entropy.get(k) is not None]
        chart = svg.line_chart("Entropy vs length (smoothed)", [
            svg.Series("reference", entropy["smoothed_reference"], "ref"),
            svg.Series("candidate", entropy["smoothed_candidate"], "cand")], "generated token", "entropy (nats)", markers)
        note = (f"Onset: reference {_fmt(entropy.get('onset_reference'), 0)}, candidate "
                f"{_fmt(entropy.get('onset_candidate'), 0)} (positions where smoothed entropy first exceeds twice the "
                f"reference's early median); slope excess {_fmt(entropy.get('slope_excess'))} per 100 tokens.")
        kl = svg.line_chart("KL(reference ‖ candidate) over positions", [svg.Series("KL per token", entropy["kl"], "kl")],
                            "generated token", "KL (nats)")
        kl_mean = results.get("metrics", {}).get("continuation.kl_mean", {}).get("value")
        kl_note = f"Mean {_fmt(kl_mean)} nats over {entropy.get('sequences')} long items."
    else:
        chart = svg.empty_chart("Entropy vs length", "the suite has no long items")
        kl = svg.empty_chart("KL over positions", "the suite has no long items")
        note = kl_note = "Not measured: the suite has no long items."
    plots.append({"title": "Entropy vs length", "svg": chart, "note": note})
    ranked = sorted(rows, key=lambda r: r["drift"], reverse=True)
    drift_gate = next((g for g in results["gates"] if g["metric"] == "drift.answer_ds_item_excess_max"), None)
    plots.append({"title": "Answer drift per item", "svg": svg.interval_chart(
        "Answer drift per item beyond seed noise", [r["id"] for r in ranked], [r["drift"] for r in ranked],
        [r["drift_ci"] for r in ranked], "ΔS drift", drift_gate["threshold"] if drift_gate else None),
        "note": "ΔS between the two variants' answers minus the reference's seed-to-seed ΔS; bars: 95% bootstrap "
                "interval of the raw drift over the item's prompts and seeds, shifted by the same noise floor."})
    plots.append({"title": "KL over positions", "svg": kl, "note": kl_note})
    plots.append({"title": "Coverage", "svg": svg.histogram("Anchor coverage per item", [
        svg.Series("reference", [r["coverage"][0] for r in rows], "ref"),
        svg.Series("candidate", [r["coverage"][1] for r in rows], "cand")], 10, 0.0, 1.0, "coverage of the anchor"),
        "note": "Share of the anchor section's tokens inside the retrieved chunks, averaged over each item's prompts."})
    return plots


def _rows(results: dict) -> list[dict]:
    rows = []
    for item_id, s in (results.get("items") or {}).items():
        ref, cand, drift = s["reference"], s["candidate"], s["drift"]
        noise = drift.get("seed_noise") or 0.0
        ci = drift.get("answer_ds_ci")
        flipped = ref["lambda"] != cand["lambda"] or ref.get("retrieved", [])[:1] != cand.get("retrieved", [])[:1]
        rows.append({"id": item_id, "kind": s["kind"], "question": s.get("question", ""),
                     "retrieved": [ref.get("retrieved", []), cand.get("retrieved", [])],
                     "answers": [ref.get("answer", ""), cand.get("answer", "")],
                     "ds_qr": [ref["ds_qr"], cand["ds_qr"]], "coverage": [ref["coverage"], cand["coverage"]],
                     "lambda": [ref["lambda"], cand["lambda"]], "drift": drift["answer_ds_excess"],
                     "drift_ci": [ci[0] - noise, ci[1] - noise] if ci else None, "flipped": flipped})
    rows.sort(key=lambda r: r["drift"], reverse=True)
    for rank, row in enumerate(rows):
        row["top_drift"] = rank < TOP_DRIFT
    return rows


def report_view(results: dict) -> dict:
    """Everything the page shows, in display order, from results.json's content."""
    gates = [{**g, "threshold_text": threshold_text(g, tolerance=True), "value_text": _fmt(g["value"]),
              "reference_text": _fmt(g["reference"])} for g in results["gates"]]
    failed = [g for g in gates if g["status"] == "fail"]
    failed_ids = {g["id"] for g in failed}
    symptoms = [{**s, "status": "fail" if failed_ids & set(s["gates"]) else "warn"} for s in results.get("symptoms", [])]
    symptoms.sort(key=lambda s: s["status"] != "fail")          # failures first
    rows = _rows(results)
    env = results.get("environment", {})
    fingerprint = [(k, ", ".join(env[k]) if isinstance(env.get(k), list) else _fmt(env.get(k))) for k in ENV_KEYS if k in env]
    fingerprint += [("reference", f"{env.get('reference', {}).get('source')} · {env.get('reference', {}).get('fingerprint')}"),
                    ("candidate", f"{env.get('candidate', {}).get('source')} · {env.get('candidate', {}).get('fingerprint')}"),
                    ("suite", f"{env.get('suite', {}).get('name')} ({env.get('suite', {}).get('items')} items) · "
                              f"{env.get('suite', {}).get('fingerprint')}"),
                    ("embedder", f"{env.get('embedder', {}).get('fingerprint')} · candidate pipeline: "
                                 f"{env.get('embedder', {}).get('candidate_pipeline')}"),
                    ("seeds", ", ".join(map(str, env.get("seeds", []))))]
    timing = results.get("timing", {})
    return {
        "passed": results["passed"], "warn_only": results.get("warn_only", False), "summary": results["summary"],
        "failed": failed, "gates": gates, "symptoms": symptoms,
        "notices": results.get("notices", []), "rows": rows, "plots": _plots(results, rows),
        "flipped": sum(r["flipped"] for r in rows), "top_drift": min(TOP_DRIFT, len(rows)),
        "perplexity": results.get("perplexity"), "fingerprint": fingerprint,
        "config": json.dumps(env.get("config", {}), indent=1, ensure_ascii=False),
        "stages": timing.get("stages", {}), "wall_s": timing.get("wall_s"), "created": results.get("created"),
        "reference": env.get("reference", {}).get("source", "reference"),
        "candidate": env.get("candidate", {}).get("source", "candidate"),
        "schema_version": results.get("schema_version"), "fmt": _fmt,
    }


def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("awqguard.report", "templates"),
                              autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True)


def render_report(results: dict) -> str:
    """The report page for one results.json content."""
    return _environment().get_template("report.html.j2").render(**report_view(results))


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


def write_report(results: dict, out: Path) -> Path:
    return files.write_text(out, render_report(results))
