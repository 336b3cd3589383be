#!/bin/bash
# Usage: bash benches/throughput.sh [our-wg]        (default: target/release/wg)
#        UPSTREAM_WG=/path/to/upstream/wg bash benches/throughput.sh
#
# End-to-end throughput of a running service: TASKS ready tasks (default 1000) whose command
# (`exec`) is `true`, `[dispatcher] max_agents = MAX_AGENTS` (default 8, upstream's own key, which
# we honour), default poll interval. The clock starts when the service is started and stops
# when every task is `done` in graph.jsonl (polled every 20 ms); it prints tasks completed per
# second. The same for upstream's `wg` when UPSTREAM_WG names it (skipped when unset; upstream
# is started with UPSTREAM_SERVICE_ARGS, default `service run`, and stopped with `service stop`).
#
# Then two floors on this machine: spawning TASKS `sh -c true` MAX_AGENTS at a time (xargs -P),
# and one fsync (a 4 KiB O_DSYNC write, averaged over 200). With STRACE=1 our service runs under
# `strace -f -c` and its syscall summary (fsync, rename, clone, execve, flock...) is printed: where
# the time goes. TIMEOUT (default 300 s) bounds each run. It ends what it started, by pid.
set -euo pipefail
tasks=${TASKS:-1000}
max_agents=${MAX_AGENTS:-8}
timeout=${TIMEOUT:-300}
ours=${1:-target/release/wg}
[ -x "$ours" ] || { echo "throughput.sh: $ours is not an executable; build it with cargo build --release -p wg-cli" >&2; exit 2; }
work=$(mktemp -d)
service_pid=
cleanup() {
  if [ -n "$service_pid" ]; then kill -TERM "$service_pid" 2> /dev/null || true; wait "$service_pid" 2> /dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# measure <label> <wg> <service args...>: prints "<label>: N tasks in S s = R tasks/s".
measure() {
  local label=$1 bin=$2 dir="$work/$1/.wg" started elapsed done_count=0; shift 2
  "$bin" --dir "$dir" init > /dev/null
  for n in $(seq -f '%04g' "$tasks"); do
    printf '{"kind":"task","id":"t-%s","title":"Step %s","status":"open","exec":"true"}\n' "$n" "$n"
  done > "$dir/graph.jsonl"
  printf '[dispatcher]\nmax_agents = %d\n' "$max_agents" > "$dir/config.toml"
  started=$EPOCHREALTIME
  if [ "${STRACE:-0}" = 1 ] && [ "$label" = ours ]; then
    strace -f -c -o "$work/strace.txt" "$bin" --dir "$dir" "$@" > "$work/$label.log" 2>&1 &
  else
    "$bin" --dir "$dir" "$@" > "$work/$label.log" 2>&1 &
  fi
  service_pid=$!
  until done_count=$(grep -c '"status": *"done"' "$dir/graph.jsonl" || true) && [ "$done_count" -ge "$tasks" ]; do
    if awk -v a="$started" -v b="$EPOCHREALTIME" -v t="$timeout" 'BEGIN { exit !(b - a > t) }'; then
      echo "throughput.sh: $label: only $done_count of $tasks tasks done after $timeout s; see its log:" >&2
      tail -5 "$work/$label.log" >&2
      exit 1
    fi
    sleep 0.02
  done
  elapsed=$(awk -v a="$started" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')
  "$bin" --dir "$dir" service stop > /dev/null 2>&1 || true
  kill -TERM "$service_pid" 2> /dev/null || true
  wait "$service_pid" 2> /dev/null || true
  service_pid=
  awk -v l="$label" -v n="$tasks" -v s="$elapsed" -v m="$max_agents" \
    'BEGIN { printf "%-9s %d tasks, max_agents %d: %.2f s = %.1f tasks/s\n", l ":", n, m, s, n / s }'
}

measure ours "$ours" service run
if [ -n "${UPSTREAM_WG:-}" ]; then
  [ -x "$UPSTREAM_WG" ] || { echo "throughput.sh: UPSTREAM_WG=$UPSTREAM_WG is not an executable" >&2; exit 2; }
  read -r -a upstream_args <<< "${UPSTREAM_SERVICE_ARGS:-service run}"
  measure upstream "$UPSTREAM_WG" "${upstream_args[@]}"
else
  echo "upstream: skipped (set UPSTREAM_WG to upstream workgraph's wg to compare)"
fi

started=$EPOCHREALTIME
seq "$tasks" | xargs -P "$max_agents" -n 1 sh -c true
awk -v a="$started" -v b="$EPOCHREALTIME" -v n="$tasks" -v m="$max_agents" \
  'BEGIN { printf "floor, spawn only: %d x sh -c true, %d at a time: %.2f s = %.0f/s\n", n, m, b - a, n / (b - a) }'
started=$EPOCHREALTIME
for _ in $(seq 200); do dd if=/dev/zero of="$work/fsync-probe" bs=4k count=1 oflag=dsync status=none; done
awk -v a="$started" -v b="$EPOCHREALTIME" 'BEGIN { printf "floor, one fsync (4 KiB O_DSYNC write, with dd start-up): %.2f ms\n", (b - a) * 1000 / 200 }'
if [ -f "$work/strace.txt" ]; then
  echo "our service's system calls (strace -f -c; calls per task = calls / $tasks):"
  grep -E 'syscall|-----|fsync|fdatasync|rename|clone|execve|wait4|flock|openat|write$|read$|total' "$work/strace.txt"
fi
