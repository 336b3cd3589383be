#!/bin/bash
# Usage: bash benches/throughput.sh [wg ...]          (default: target/release/wg)
#        UPSTREAM_WG=/path/to/upstream/wg bash benches/throughput.sh
#
# End-to-end throughput of a running service: TASKS ready tasks (default 1000) whose command
# (`exec`) is `true`, `[dispatcher] max_agents = MAX_AGENTS` (default 8, upstream's own key, which
# we honour), default poll interval. The clock starts when the service is started and stops
# when every task is `done` in graph.jsonl (polled every 20 ms); it prints tasks completed per
# second, and the service's own CPU time (utime + stime of all its threads, from /proc/<pid>/stat,
# not its agents'), which a loaded machine does not inflate as it does the wall time. Several
# binaries run in turn, REPS rounds (default 1), each on a fresh `.wg/`. The same for upstream's
# `wg` when UPSTREAM_WG names it (skipped when unset; upstream is started with
# UPSTREAM_SERVICE_ARGS, default `service run`, and stopped with `service stop`).
#
# Then two floors on this machine: spawning TASKS `sh -c true` MAX_AGENTS at a time (xargs -P),
# and one fsync (a 4 KiB O_DSYNC write, averaged over 200). With STRACE=1 each of our services
# runs under `strace -f -c` and its syscall summary (fsync, rename, clone, execve, flock...) is
# printed after its line: where the time goes (its wall time is then slower). With PERF=<prefix>
# each of our services runs under `perf record -F 499 --call-graph dwarf,32768` instead, its
# profile written to <prefix>.<n> (n counts the runs from 1); read it with `perf report -i
# <prefix>.<n> --children --comm wg`.
# WINDOW=N (not with STRACE) also prints, every N tasks done, the wall and CPU time of the last N
# and the sizes of registry and graph: how the cost of a task grows with the history the files
# keep. TIMEOUT (default 300 s) bounds each run. It ends what it started, by pid.
set -euo pipefail
tasks=${TASKS:-1000}
max_agents=${MAX_AGENTS:-8}
timeout=${TIMEOUT:-300}
reps=${REPS:-1}
bins=("$@")
[ ${#bins[@]} -gt 0 ] || bins=(target/release/wg)
for bin in "${bins[@]}"; do
  [ -x "$bin" ] || { echo "throughput.sh: $bin is not an executable; build it with cargo build --release -p wg-cli" >&2; exit 2; }
done
work=$(mktemp -d)
service_pid=
cleanup() {
  if [ -n "$service_pid" ]; then kill -TERM "$service_pid" 2> /dev/null || true; wait "$service_pid" 2> /dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# cpu_seconds <pid>: utime + stime of the process (every thread), in seconds.
cpu_seconds() {
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' "/proc/$1/stat"
}

# measure <label> <wg> <none|strace|perf> <service args...>: prints "<label>: N tasks in S s =
# R tasks/s, ...", the service run as it is or under strace or perf.
runs=0
measure() {
  local label=$1 bin=$2 wrap=$3 run="$work/run$RANDOM" started elapsed done_count=0 service cpu=n/a; shift 3
  runs=$((runs + 1))
  local dir="$run/.wg"
  "$bin" --dir "$dir" init > /dev/null
  for n in $(seq -f '%04g' "$tasks"); do
    printf '{"kind":"task","id":"t-%s","title":"Step %s","status":"open","exec":"true"}\n' "$n" "$n"
  done > "$dir/graph.jsonl"
  printf '[dispatcher]\nmax_agents = %d\n' "$max_agents" > "$dir/config.toml"
  started=$EPOCHREALTIME
  case $wrap in
    strace) strace -f -c -o "$run/strace.txt" "$bin" --dir "$dir" "$@" > "$run/service.log" 2>&1 & ;;
    perf)
      perf record -q -F 499 --call-graph dwarf,32768 -o "$PERF.$runs" -- "$bin" --dir "$dir" "$@" \
        > "$run/service.log" 2>&1 &
      ;;
    *) "$bin" --dir "$dir" "$@" > "$run/service.log" 2>&1 & ;;
  esac
  service_pid=$!
  local next_window=${WINDOW:-0} window_wall=$started window_cpu=0 now_cpu
  until done_count=$(grep -c '"status": *"done"' "$dir/graph.jsonl" || true) && [ "$done_count" -ge "$tasks" ]; do
    if [ "$wrap" = none ] && [ "${WINDOW:-0}" -gt 0 ] && [ "$done_count" -ge "$next_window" ]; then
      now_cpu=$(cpu_seconds "$service_pid")
      awk -v n="$done_count" -v w="$WINDOW" -v a="$window_wall" -v b="$EPOCHREALTIME" -v c="$window_cpu" -v d="$now_cpu" \
        -v r="$(stat -c %s "$dir/service/registry.json" 2> /dev/null || echo 0)" -v g="$(stat -c %s "$dir/graph.jsonl")" \
        'BEGIN { printf "  %d done: the last %d in %.2f s, service CPU %.2f s (%.2f ms a task); registry %d KiB, graph %d KiB\n", n, w, b - a, d - c, (d - c) * 1000 / w, r / 1024, g / 1024 }'
      window_wall=$EPOCHREALTIME window_cpu=$now_cpu next_window=$((next_window + WINDOW))
    fi
    if awk -v a="$started" -v b="$EPOCHREALTIME" -v t="$timeout" 'BEGIN { exit !(b - a > t) }'; then
      echo "throughput.sh: $label: only $done_count of $tasks tasks done after $timeout s; see its log:" >&2
      tail -5 "$run/service.log" >&2
      exit 1
    fi
    sleep 0.02
  done
  elapsed=$(awk -v a="$started" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')
  # Under strace or perf the service is its child.
  service=$service_pid
  [ "$wrap" != none ] && service=$(awk '{ print $1 }' "/proc/$service_pid/task/$service_pid/children" 2> /dev/null || true)
  [ -n "$service" ] && [ -r "/proc/$service/stat" ] && cpu=$(cpu_seconds "$service")
  "$bin" --dir "$dir" service stop > /dev/null 2>&1 || true
  kill -TERM "$service_pid" 2> /dev/null || true
  wait "$service_pid" 2> /dev/null || true
  service_pid=
  awk -v l="$label" -v n="$tasks" -v s="$elapsed" -v m="$max_agents" -v c="$cpu" \
    'BEGIN { printf "%s: %d tasks, max_agents %d: %.2f s = %.1f tasks/s; service CPU %s s", l, n, m, s, n / s, c
             if (c != "n/a") printf " (%.2f ms a task)", c * 1000 / n
             printf "\n" }'
  [ "$wrap" = perf ] && echo "  its profile: $PERF.$runs"
  if [ -f "$run/strace.txt" ]; then
    echo "  its system calls (strace -f -c; calls per task = calls / $tasks):"
    grep -E 'syscall|-----|fsync|fdatasync|rename|clone|execve|wait4|flock|openat|write$|read$|total' "$run/strace.txt" | sed 's/^/  /'
  fi
  rm -rf "$run"
}

wrap=none
[ "${STRACE:-0}" = 1 ] && wrap=strace
[ -n "${PERF:-}" ] && wrap=perf
for round in $(seq "$reps"); do
  for bin in "${bins[@]}"; do
    measure "$bin" "$bin" "$wrap" service run
  done
done
if [ -n "${UPSTREAM_WG:-}" ]; then
  [ -x "$UPSTREAM_WG" ] || { echo "throughput.sh: UPSTREAM_WG=$UPSTREAM_WG is not an executable" >&2; exit 2; }
  read -r -a upstream_args <<< "${UPSTREAM_SERVICE_ARGS:-service run}"
  measure "upstream $UPSTREAM_WG" "$UPSTREAM_WG" none "${upstream_args[@]}"
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
