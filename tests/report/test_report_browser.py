"""The report as a person sees it: headless Chromium loads it, runs its script and draws it.

Chromium's own logs are the witnesses: console messages go to stderr (--enable-logging), every
network request to a net log (--log-net-log), where the page's requests carry the page as their
initiator and the browser's own background calls do not. A control page with a console error and a remote
image proves that both witnesses would have seen a problem. Needs Debian's chromium (.ci/run
installs it); skipped without it.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs a headless Chromium (apt-get install chromium)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
         "--disable-extensions", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--metrics-recording-only", "--virtual-time-budget=3000",
         # no name resolves, so the browser's own background calls (updates, time) never leave the machine
         "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"]


def browse(page: Path, work: Path, screenshot: Path | None = None) -> dict:
    """Load `page` in Chromium: its rendered DOM, console messages and the network requests it made."""
    work.mkdir(parents=True, exist_ok=True)
    netlog = work / "netlog.json"
    base = [CHROMIUM, *FLAGS, f"--user-data-dir={work / 'profile'}", "--enable-logging=stderr", "--v=0",
            f"--log-net-log={netlog}"]
    shot = subprocess.run([*base, "--window-size=1280,2200", f"--screenshot={screenshot or work / 'shot.png'}",
                           page.as_uri()], capture_output=True, text=True, timeout=120)
    log = json.loads(netlog.read_text() or "{}")
    start_job = log.get("constants", {}).get("logEventTypes", {}).get("URL_REQUEST_START_JOB")
    requests = [e["params"]["url"] for e in log.get("events", [])          # requests the page made, not the browser
                if e.get("type") == start_job and isinstance(e.get("params"), dict) and "url" in e["params"]
                and e["params"].get("initiator") != "not an origin"]
    dom = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={work / 'profile2'}", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    console = [line for line in (shot.stderr + dom.stderr).splitlines() if "CONSOLE" in line]
    return {"dom": dom.stdout, "console": console, "requests": [u for u in requests if not u.startswith(("file:", "data:"))],
            "returncode": shot.returncode}


def test_the_witnesses_see_console_errors_and_requests(tmp_path):
    page = tmp_path / "control.html"
    page.write_text('<html><body><p id="x">control</p><img src="http://127.0.0.1:9/pixel.png">'
                    '<script>console.error("awqguard-control-error"); undefinedFunction();</script></body></html>')
    seen = browse(page, tmp_path / "control")
    assert any("awqguard-control-error" in line for line in seen["console"]), seen["console"]
    assert any("127.0.0.1:9/pixel.png" in url for url in seen["requests"])
    assert '<p id="x">control</p>' in seen["dom"]


def test_report_loads_clean_and_shows_verdict_gates_and_plots(failing_check, tmp_path):
    results, paths = failing_check
    shot = tmp_path / "report.png"
    seen = browse(paths["report"], tmp_path / "report", shot)
    assert seen["returncode"] == 0 and shot.stat().st_size > 10_000
    assert seen["console"] == [] and seen["requests"] == []
    dom = seen["dom"]
    verdict = re.search(r'<section class="verdict fail" id="verdict">(.*?)</section>', dom, re.S)
    assert verdict and "FAILED" in verdict.group(1)
    gate_rows = re.search(r'<table class="gates">.*?<tbody>(.*?)</tbody>', dom, re.S).group(1)
    assert gate_rows.count("<tr") == len(results["gates"])
    assert dom.count('<svg class="plot"') == 4 and dom.count("<polyline") >= 3
    print(f"screenshot: {shot}")
