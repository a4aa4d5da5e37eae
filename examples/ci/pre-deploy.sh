#!/usr/bin/env bash
# Pre-deploy gate: refuse to ship a quantized checkpoint whose RAG pipeline drifted from the
# full-precision reference, and prove that what ships is byte for byte what passed.
# Usage: examples/ci/pre-deploy.sh CHECKPOINT_DIR [REPORT_ARCHIVE_DIR]
# Exit code: 0 ship; 1 a gate failed (do not ship); 4 bad configuration, fixtures or model, or the
# checkpoint changed after it was checked; 3 awqguard bug.
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

if [ "$status" -eq 0 ]; then
  # The archived results.json holds the sha256 of every file of the checked candidate. Run this
  # again in the deploy job, right before the copy, on the folder that is actually shipped.
  awqguard verify "$archive/$stamp/results.json" --candidate "$candidate"
  status=$?
fi

case $status in
  0) echo "awqguard: gates passed and the files verified; $candidate may ship (report: $archive/$stamp/report.html)" ;;
  1) echo "awqguard: a release-blocking gate failed; NOT deploying $candidate (report: $archive/$stamp/report.html)" >&2 ;;
  *) echo "awqguard: the check could not run or the files do not match what was checked (exit $status); NOT deploying $candidate" >&2 ;;
esac
exit $status
