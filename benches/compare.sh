#!/usr/bin/env bash
# Times the same operations with our `wg` and another `wg` (upstream workgraph's, or any build
# that accepts `--dir`, `init`, `agents kill` and `retry`) in one run, and prints the medians and
# the ratios other/ours. Each binary works in its own fresh `.wg/` made by its own `init`.
#
#   benches/compare.sh <other-wg>          # e.g. benches/compare.sh ~/.cargo/bin/wg
#
# Operations (REPS repetitions each, alternating the two binaries; time until the command
# returns, measured by bash's $EPOCHREALTIME, or `date +%s%N` where that is missing):
#   kill   `wg agents kill agent-1` of a `sleep 600` agent started in its own process group, with
#          the registry entry upstream writes (pid, start time, and our process_start_ticks);
#   retry  `wg retry t1` of a failed task in a 10-task graph;
#   large  `wg retry t-failed` in a LARGE_TASKS-task graph (default 100000, ~85 MB), LARGE_REPS.
#
# Environment: WG (our binary; default: $CARGO_TARGET_DIR, target/ or target-bench/ release
# build), REPS (default 15), LARGE_REPS (default 5), LARGE_TASKS (default 100000).
# Every agent it starts is ended by its pid (never pid 0/1 or our own group); temp files go.
set -euo pipefail

die() { echo "compare.sh: $*" >&2; exit 2; }

[[ $# -eq 1 ]] || die "usage: $0 <other-wg-binary>"
other=$(command -v -- "$1" || true)
[[ -n $other && -x $other ]] || die "$1 is not an executable"
repo=$(cd "$(dirname "$0")/.." && pwd)
ours=${WG:-}
if [[ -z $ours ]]; then
  for candidate in "${CARGO_TARGET_DIR:-/nonexistent}/release/wg" "$repo/target/release/wg" \
                   "$repo/target-bench/release/wg"; do
    if [[ -x $candidate ]]; then ours=$candidate; break; fi
  done
fi
[[ -n $ours && -x $ours ]] || die "our wg not found: cargo build --release -p wg-cli --bin wg, or set WG"
reps=${REPS:-15}
large_reps=${LARGE_REPS:-5}
large_tasks=${LARGE_TASKS:-100000}

work=$(mktemp -d "${TMPDIR:-/tmp}/wg-compare.XXXXXX")
agents=()  # "pid:start_ticks" of every agent we started

# Field 22 of /proc/<pid>/stat (parsed after the last ')'); empty when gone or a zombie.
start_ticks() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  stat=${stat##*) }
  set -- $stat
  [[ $1 == Z ]] || echo "${20}"
}

cleanup() {
  local entry pid ticks own_group
  own_group=$(ps -o pgid= -p $$ | tr -d ' ')
  for entry in "${agents[@]}"; do
    pid=${entry%%:*} ticks=${entry##*:}
    if (( pid > 1 )) && [[ $pid != "$own_group" && $(start_ticks "$pid") == "$ticks" ]]; then
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

# Sets STAMP to the time in microseconds, without a subshell where bash allows.
stamp() {
  if [[ -n ${EPOCHREALTIME:-} ]]; then
    STAMP=${EPOCHREALTIME/[.,]/}
    STAMP=$((10#$STAMP))
  else
    STAMP=$(( $(date +%s%N) / 1000 ))
  fi
}

now_rfc3339() { date -u +%Y-%m-%dT%H:%M:%S.%N+00:00; }

# A fresh `.wg/` made by the binary's own `init`.
fresh_dir() {
  local bin=$1 dir
  dir=$(mktemp -d "$work/run.XXXXXX")/.wg
  "$bin" --dir "$dir" init >/dev/null 2>&1 || die "$bin --dir $dir init failed"
  mkdir -p "$dir/service"
  echo "$dir"
}

failures=()
# Runs `$bin --dir $dir args...`, sets ELAPSED_US; on failure records why.
timed() {
  local label=$1 bin=$2 dir=$3; shift 3
  local status=0 start
  stamp; start=$STAMP
  "$bin" --dir "$dir" "$@" >"$work/out" 2>"$work/err" || status=$?
  stamp; ELAPSED_US=$((STAMP - start))
  if (( status != 0 )); then
    failures+=("$label with $bin: exit $status: $(head -c 300 "$work/err" | tr '\n' ' ')")
  fi
}

time_kill() {
  local bin=$1 dir pid ticks now
  dir=$(fresh_dir "$bin")
  setsid sleep 600 </dev/null >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 200); do
    ticks=$(start_ticks "$pid")
    [[ -n $ticks && $(cat "/proc/$pid/comm" 2>/dev/null) == sleep ]] && break
    sleep 0.005
  done
  [[ -n $ticks ]] || die "the agent $pid did not start"
  agents+=("$pid:$ticks")
  now=$(now_rfc3339)
  printf '%s\n' '{"kind":"task","id":"t1","title":"t1","status":"in-progress","assigned":"agent-1","exec":"sleep 600"}' \
    >"$dir/graph.jsonl"
  printf '{"agents":{"agent-1":{"id":"agent-1","pid":%d,"task_id":"t1","executor":"shell","started_at":"%s","last_heartbeat":"%s","status":"working","output_file":".wg/agents/agent-1/output.log","process_start_ticks":%d}},"next_agent_id":2}\n' \
    "$pid" "$now" "$now" "$ticks" >"$dir/service/registry.json"
  timed "agents kill" "$bin" "$dir" agents kill agent-1
  if [[ $(start_ticks "$pid") == "$ticks" ]]; then
    failures+=("agents kill with $bin: the agent $pid still ran after the command returned")
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

small_graph() {
  local i
  printf '%s\n' '{"kind":"task","id":"t1","title":"Nightly checks","status":"failed","exec":"sh ./checks.sh","retry_count":1,"failure_reason":"exit code 1","log":[{"timestamp":"2026-01-19T16:15:14.460093064+00:00","actor":"agent-1","user":"agent-1","message":"Failed: exit code 1"}]}'
  for i in 2 3 4 5 6 7 8 9 10; do
    printf '{"kind":"task","id":"t%d","title":"Step %d","status":"done","assigned":"agent-%d","after":["t%d"],"completed_at":"2026-01-19T16:15:36.583856016+00:00"}\n' \
      "$i" "$i" "$i" "$((i - 1))"
  done
}

# The shape of benches/src/graphs.rs: a line of another kind, two thirds done tasks with a
# three-entry log, one third open, one failed task (t-failed) in the middle.
large_graph() {
  awk -v tasks="$1" 'function ts(i, off,   s, d, h, m) {
      s = (i * 7 + off) % 864000; d = 19 + int(s / 86400); s %= 86400
      h = int(s / 3600); m = int((s % 3600) / 60)
      return sprintf("2026-01-%02dT%02d:%02d:%02d.%03d000000+00:00", d, h, m, s % 60, (i * 37) % 1000)
    }
    function entry(i, off, actor, message) {
      return sprintf("{\"timestamp\":\"%s\",\"actor\":\"%s\",\"user\":\"%s\",\"message\":\"%s\"}", ts(i, off), actor, actor, message)
    }
    BEGIN {
      print "{\"kind\":\"actor\",\"id\":\"alice\",\"name\":\"Alice\",\"capacity\":40.0}"
      failed = int(tasks / 2)
      for (i = 0; i < tasks; i++) {
        if (i == failed) {
          printf "{\"kind\":\"task\",\"id\":\"t-failed\",\"title\":\"Migrate the nightly pipeline storage\",\"status\":\"failed\",\"after\":[\"task-%06d\"],\"tags\":[\"pipeline\",\"storage\"],\"exec\":\"sh ./steps/migrate.sh\",\"retry_count\":1,\"failure_reason\":\"exit code 1: bucket not reachable\",\"created_at\":\"%s\",\"log\":[%s,%s]}\n", i - 1, ts(i, 0), entry(i, 30, "agent-13", "Started work"), entry(i, 91, "agent-13", "Failed: exit code 1")
          continue
        }
        after = (i >= 3) ? sprintf("[\"task-%06d\",\"task-%06d\"]", i - 1, i - 3) : ((i >= 1) ? sprintf("[\"task-%06d\"]", i - 1) : "[]")
        common = sprintf("\"id\":\"task-%06d\",\"title\":\"Implement step %d of the nightly data pipeline\",\"description\":\"Run the checks for module %d, fix what fails and record the results in the log. Acceptance: the checks pass twice in a row and the report is attached.\"", i, i, i)
        extra = sprintf("\"estimate\":{\"hours\":%d.0,\"cost\":%d.0},\"after\":%s,\"tags\":[\"pipeline\",\"phase%d\"],\"skills\":[\"rust\",\"testing\"],\"exec\":\"sh ./steps/run.sh %d\",\"created_at\":\"%s\"", i % 8 + 1, (i % 8 + 1) * 100, after, i % 5 + 1, i, ts(i, 0))
        if (i % 3 != 2) {
          agent = sprintf("agent-%d", i % 97 + 1)
          printf "{\"kind\":\"task\",%s,\"status\":\"done\",%s,\"assigned\":\"%s\",\"started_at\":\"%s\",\"completed_at\":\"%s\",\"log\":[%s,%s,%s]}\n", common, extra, agent, ts(i, 30), ts(i, 400), entry(i, 30, agent, "Started work"), entry(i, 250, agent, sprintf("Checks green: %d passed, 0 failed", 100 + i % 300)), entry(i, 400, agent, "Marked done")
        } else {
          printf "{\"kind\":\"task\",%s,\"status\":\"open\",%s,\"log\":[%s]}\n", common, extra, entry(i, 0, "alice", "Task created")
        }
      }
    }'
}

time_retry() {
  local bin=$1 dir=$2 graph=$3 task=$4 label=$5
  cp "$graph" "$dir/graph.jsonl"
  timed "$label" "$bin" "$dir" retry "$task"
}

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else print v[int((NR + 1) / 2)] }'; }

small=$work/small.jsonl
large=$work/large.jsonl
small_graph >"$small"
large_graph "$large_tasks" >"$large"
echo "compare.sh: ours  = $ours"
echo "compare.sh: other = $other"
echo "compare.sh: $reps repetitions ($large_reps for the large graph: $large_tasks tasks, $(( $(stat -c %s "$large") / 1048576 )) MiB), $(nproc) cores"

declare -A samples
for bin_name in ours other; do for op in kill retry large; do samples[$bin_name.$op]=""; done; done
declare -A dirs
for bin_name in ours other; do
  bin=${!bin_name}
  dirs[$bin_name.retry]=$(fresh_dir "$bin")
  dirs[$bin_name.large]=$(fresh_dir "$bin")
done

for ((rep = 1; rep <= reps; rep++)); do
  # Alternate which binary goes first, so that drift (caches, other load) hits both alike.
  if (( rep % 2 )); then order="ours other"; else order="other ours"; fi
  for bin_name in $order; do
    bin=${!bin_name}
    time_kill "$bin"
    samples[$bin_name.kill]+="$ELAPSED_US "
    time_retry "$bin" "${dirs[$bin_name.retry]}" "$small" t1 "retry"
    samples[$bin_name.retry]+="$ELAPSED_US "
    if (( rep <= large_reps )); then
      time_retry "$bin" "${dirs[$bin_name.large]}" "$large" t-failed "retry (large)"
      samples[$bin_name.large]+="$ELAPSED_US "
    fi
  done
  printf '.' >&2
done
echo >&2

printf '\n%-34s %14s %14s %12s\n' "operation (median, command start to return)" "ours" "other" "other/ours"
for op in kill retry large; do
  case $op in
    kill) label="agents kill (sleep 600 agent)" ;;
    retry) label="retry (failed task, 10 tasks)" ;;
    large) label="retry (failed task, $large_tasks tasks)" ;;
  esac
  ours_us=$(tr ' ' '\n' <<<"${samples[ours.$op]}" | grep . | median)
  other_us=$(tr ' ' '\n' <<<"${samples[other.$op]}" | grep . | median)
  awk -v label="$label" -v a="$ours_us" -v b="$other_us" \
    'BEGIN { printf "%-44s %11.2f ms %11.2f ms %12.2f\n", label, a / 1000, b / 1000, (a > 0 ? b / a : 0) }'
done

if (( ${#failures[@]} )); then
  echo
  echo "compare.sh: ${#failures[@]} command(s) failed; their times are in the medians above:"
  printf '  %s\n' "${failures[@]}" | sort | uniq -c | head -20
  exit 1
fi
