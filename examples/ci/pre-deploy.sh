#!/usr/bin/env bash
# Pre-deploy gate: refuse to ship a quantized checkpoint whose RAG pipeline drifted from the
# full-precision reference. Usage: examples/ci/pre-deploy.sh CHECKPOINT_DIR [REPORT_ARCHIVE_DIR]
# Exit code: 0 ship; 1 a gate failed (do not ship); 4 bad configuration, fixtures or model; 3 awqguard bug.
set -uo pipefail
candidate=${1:?usage: pre-deploy.sh CHECKPOINT_DIR [REPORT_ARCHIVE_DIR]}
archive=${2:-awqguard-reports}
out=$(mktemp -d)

awqguard check --candidate "$candidate" --out "$out"
status=$?

# Keep the evidence whatever the verdict: one folder per run, named by time and checkpoint.
stamp="$(date -u +%Y%m%dT%H%M%SZ)-$(basename "$candidate")"
mkdir -p "$archive/$stamp"
cp "$out"/report.html "$out"/results.json "$out"/junit.xml "$out"/summary.md "$archive/$stamp/" 2>/dev/null

case $status in
  0) echo "awqguard: gates passed; $candidate may ship (report: $archive/$stamp/report.html)" ;;
  1) echo "awqguard: a release-blocking gate failed; NOT deploying $candidate (report: $archive/$stamp/report.html)" >&2 ;;
  *) echo "awqguard: the check could not run (exit $status); NOT deploying $candidate" >&2 ;;
esac
exit $status
