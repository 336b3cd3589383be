#!/bin/bash
# Usage: bash benches/idle_service.sh [wg-binary ...]      (default: target/release/wg)
#
# What a running `wg service run` costs while nothing happens, for each binary given, all at
# once (each on its own .wg/; CPU time is per process, so they do not skew each other's figure).
# The graph is benches/graph_ops.sh's (TASKS tasks, 27 MB for 100k) with every `exec` removed,
# so nothing is ready to start, plus AGENTS tasks running `sleep 600` (max_agents = AGENTS), so
# the reaper has live agents to watch. Default poll interval (1 s). Once every agent runs and
# SETTLE seconds have passed, it reads utime + stime of the service from /proc/<pid>/stat, waits
# DURATION seconds, reads them again, and prints the service's CPU share of one core over that
# time, its resident memory (VmRSS) and peak (VmHWM), and their ratio to the graph's size.
#
# Environment: TASKS (default 100000), AGENTS (default 0), DURATION (default 60), SETTLE
# (default 5). It ends what it started, by pid: the services (SIGTERM), then every agent in
# each registry (`wg agents kill --force`).
set -euo pipefail
tasks=${TASKS:-100000}
agents=${AGENTS:-0}
duration=${DURATION:-60}
settle=${SETTLE:-5}
bins=("$@")
[ ${#bins[@]} -gt 0 ] || bins=(target/release/wg)
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
pids=()
cleanup() {
  for index in "${!pids[@]}"; do kill -TERM "${pids[$index]}" 2> /dev/null || true; done
  for index in "${!pids[@]}"; do
    wait "${pids[$index]}" 2> /dev/null || true
    for agent in $(grep -o '"agent-[0-9]*":' "$work/wg-$index/.wg/service/registry.json" 2> /dev/null | tr -d '":'); do
      "${bins[$index]}" --dir "$work/wg-$index/.wg" agents kill "$agent" --force > /dev/null 2>&1 || true
    done
  done
  rm -rf "$work"
}
trap cleanup EXIT

GRAPH_OUT="$work/graph.jsonl" TASKS=$tasks bash "$here/graph_ops.sh" > /dev/null
sed -i 's/"exec":"[^"]*",//' "$work/graph.jsonl"
bytes=$(stat -c %s "$work/graph.jsonl")
echo "graph: $tasks tasks, none ready, $bytes bytes; $agents agents running sleep 600; ${duration} s measured"

ticks() { awk '{ s = $0; sub(/.*\) /, "", s); split(s, f, " "); print f[12] + f[13] }' "/proc/$1/stat"; }
status_kib() { awk -v key="$2:" '$1 == key { print $2 }' "/proc/$1/status"; }

for index in "${!bins[@]}"; do
  dir="$work/wg-$index/.wg"
  "${bins[$index]}" --dir "$dir" init > /dev/null
  cp "$work/graph.jsonl" "$dir/graph.jsonl"
  printf '[recovery]\nmax_agents = %d\n' "$((agents > 0 ? agents : 1))" > "$dir/config.toml"
  for n in $(seq "$agents"); do
    "${bins[$index]}" --dir "$dir" add "Idle agent $n" --id "idle-$n" --exec "sleep 600" > /dev/null
  done
  setsid "${bins[$index]}" --dir "$dir" service run > "$work/service-$index.log" 2>&1 &
  pids[$index]=$!
done
# Every agent running, then a quiet moment.
deadline=$((SECONDS + 300))  # an old build takes seconds per transaction on this graph
for index in "${!bins[@]}"; do
  while working=$(grep -o '"status": *"working"' "$work/wg-$index/.wg/service/registry.json" 2> /dev/null | wc -l) \
    && [ "$working" -lt "$agents" ]; do
    [ $SECONDS -lt $deadline ] || { echo "idle_service.sh: ${bins[$index]}: agents did not all start" >&2; exit 1; }
    sleep 0.2
  done
done
sleep "$settle"
declare -a before log_lines
for index in "${!bins[@]}"; do
  before[$index]=$(ticks "${pids[$index]}")
  log_lines[$index]=$(wc -l < "$work/service-$index.log")
done
sleep "$duration"
hz=$(getconf CLK_TCK)
for index in "${!bins[@]}"; do
  pid=${pids[$index]}
  used=$(( $(ticks "$pid") - before[index] ))
  rss=$(status_kib "$pid" VmRSS)
  hwm=$(status_kib "$pid" VmHWM)
  awk -v bin="${bins[$index]}" -v used="$used" -v hz="$hz" -v d="$duration" -v rss="$rss" -v hwm="$hwm" -v b="$bytes" \
    'BEGIN { printf "%-40s CPU %5.2f %% of a core (%.2f s in %d s); RSS %.1f MiB (%.2fx the file), peak %.1f MiB (%.2fx)\n",
             bin, 100 * used / hz / d, used / hz, d, rss / 1024, rss * 1024 / b, hwm / 1024, hwm * 1024 / b }'
  # Not idle after all if the service logged anything meanwhile (an agent died, was respawned...).
  events=$(tail -n +"$((log_lines[index] + 1))" "$work/service-$index.log")
  [ -z "$events" ] || { echo "  the service logged during the measurement:"; head -5 <<< "$events" | sed 's/^/    /'; }
done
