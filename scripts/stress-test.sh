#!/usr/bin/env bash
# Runs the test suite N times while busy loops hold every CPU, and summarises
# which tests failed and how often. A test that fails here depends on machine
# speed (a sleep, a short timeout used as an assertion): fix its cause.
#
#   scripts/stress-test.sh [N] [--e2e] [--busy K]
#
#   N         runs (default 5)
#   --e2e     run the end-to-end suite instead of `npm run test:fast`; it
#             takes the shared e2e lock (/tmp/isorun-e2e.lock) for each run
#   --busy K  busy loops (default: one per CPU)
#
# Reports (vitest JSON) are kept in $TMPDIR/isorun-stress-<pid>/ for reading.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

runs=5
suite=fast
busy=$(nproc)
while [ $# -gt 0 ]; do
  case "$1" in
    --e2e) suite=e2e ;;
    --busy) busy="$2"; shift ;;
    [0-9]*) runs="$1" ;;
    *) echo "usage: $0 [N] [--e2e] [--busy K]" >&2; exit 2 ;;
  esac
  shift
done

out="${TMPDIR:-/tmp}/isorun-stress-$$"
mkdir -p "$out"

loops=()
stop_loops() {
  for pid in "${loops[@]}"; do kill "$pid" 2>/dev/null; done
  loops=()
}
trap stop_loops EXIT INT TERM
for _ in $(seq 1 "$busy"); do
  (while :; do :; done) &
  loops+=("$!")
done
echo "stress: $busy busy loop(s) running (pids ${loops[*]}); $runs run(s) of the $suite suite; reports in $out"

if [ "$suite" = e2e ]; then
  npm run build >/dev/null || { echo "stress: build failed" >&2; exit 1; }
fi

failed_runs=0
for i in $(seq 1 "$runs"); do
  report="$out/run-$i.json"
  start=$SECONDS
  if [ "$suite" = e2e ]; then
    flock /tmp/isorun-e2e.lock npx vitest run --config vitest.e2e.config.ts \
      --reporter=json --outputFile="$report" >"$out/run-$i.log" 2>&1
  else
    npx vitest run --reporter=json --outputFile="$report" >"$out/run-$i.log" 2>&1
  fi
  code=$?
  [ "$code" -ne 0 ] && failed_runs=$((failed_runs + 1))
  summary=$(jq -r '"\(.numPassedTests) passed, \(.numFailedTests) failed"' "$report" 2>/dev/null ||
    echo "no report (see $out/run-$i.log)")
  echo "stress: run $i/$runs: exit $code, $summary, $((SECONDS - start)) s"
done
stop_loops

echo
echo "stress: $failed_runs of $runs run(s) failed"
# Every failed test across the runs, with how many runs it failed in and its first message line.
cat "$out"/run-*.json 2>/dev/null | jq -rs '
  [ .[] | .testResults[] as $file
    | ( $file.assertionResults[] | select(.status == "failed")
        | { name: "\($file.name | sub(".*/test/"; "test/")) > \(.fullName)",
            message: ((.failureMessages[0] // "") | split("\n")[0]) } ),
      ( select($file.status == "failed" and ($file.message // "") != "")
        | { name: "\($file.name | sub(".*/test/"; "test/")) (whole file)",
            message: ($file.message | split("\n")[0]) } ) ]
  | group_by(.name)
  | map("  \(length)x  \(.[0].name)\n        \(.[0].message)")
  | .[]' 2>/dev/null
[ "$failed_runs" -eq 0 ]
