#!/bin/bash
# Usage: bash benches/profile_service.sh <wg> <perf.data>     (TASKS, default 2000)
#
# Records a `perf` profile of a running service working through TASKS ready tasks whose command
# is `true`, `max_agents = 8` (throughput.sh's setup, without its timing): `perf record -F 499
# --call-graph dwarf,32768` on `wg service run`, stopped (SIGINT, by pid) once every task is done.
# Read it with, for example:
#   perf report -i <perf.data> --children --comm wg -g none --percent-limit 1 --stdio
#   perf report -i <perf.data> -n --sort comm --stdio        # samples of the service vs its agents
# Needs perf (Debian: linux-perf). It ends what it started, by pid.
set -euo pipefail
bin=${1:?usage: profile_service.sh <wg> <perf.data>}
out=${2:?usage: profile_service.sh <wg> <perf.data>}
tasks=${TASKS:-2000}
out=$(realpath -m "$out")
bin=$(realpath "$bin")
work=$(mktemp -d)
perf_pid=
cleanup() {
  if [ -n "$perf_pid" ]; then kill -INT "$perf_pid" 2> /dev/null || true; wait "$perf_pid" 2> /dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
"$bin" --dir .wg init > /dev/null
for n in $(seq -f '%04g' "$tasks"); do
  printf '{"kind":"task","id":"t-%s","title":"Step %s","status":"open","exec":"true"}\n' "$n" "$n"
done > .wg/graph.jsonl
printf '[dispatcher]\nmax_agents = 8\n' > .wg/config.toml
perf record -F 499 --call-graph dwarf,32768 -o "$out" -- "$bin" --dir .wg service run > service.log 2>&1 &
perf_pid=$!
until [ "$(grep -c '"status": *"done"' .wg/graph.jsonl || true)" -ge "$tasks" ]; do sleep 0.2; done
# The service is perf's child; SIGINT lets it stop as on Ctrl-C, and perf then writes its file.
service=$(awk '{ print $1 }' "/proc/$perf_pid/task/$perf_pid/children")
kill -INT "$service"
wait "$perf_pid" || true
perf_pid=
echo "profile_service.sh: $tasks tasks done; profile in $out"
