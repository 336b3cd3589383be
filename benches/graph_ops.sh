#!/bin/bash
# Usage: bash benches/graph_ops.sh [wg-binary ...]      (default: target/release/wg)
#
# Times the graph commands on one large graph, for each binary given, alternating binaries:
# `wg retry t-failed`, `wg done`, `wg fail`, `wg add --after`, and `wg list` (human output).
# Each run starts from a fresh copy of the graph (the copy is not timed). Prints, per command,
# the median wall time, the median CPU time (user + system) and the largest peak RSS (GNU time's
# %U, %S, %M) over REPS runs, and the
# ratio of the peak RSS to the graph file's size. After each `retry` it checks the write-back
# was lossless: every line but the retried task's is byte-identical.
#
# Environment: TASKS (default 100000), SHAPE (compact, default: ~270 bytes a task, 27 MB for
# 100k tasks, the size of the issue's upstream graph; or full: the ~850-byte tasks of
# src/graphs.rs, 85 MB), REPS (default 5); GRAPH_OUT=<file> only writes the graph there. Needs bash, awk, GNU time (/usr/bin/time).
set -euo pipefail
tasks=${TASKS:-100000}
shape=${SHAPE:-compact}
reps=${REPS:-5}
bins=("$@")
[ ${#bins[@]} -gt 0 ] || bins=(target/release/wg)
[ -x /usr/bin/time ] || { echo "graph_ops.sh: needs GNU time at /usr/bin/time (apt-get install time)" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# One line of another kind, then tasks: two thirds done, one third open, one failed task
# (t-failed) in the middle; each after the one before it.
awk -v tasks="$tasks" -v shape="$shape" 'function ts(i, off,   s) {
    s = (i * 7 + off) % 86400
    return sprintf("2026-01-19T%02d:%02d:%02d.%03d000000+00:00", int(s / 3600), int((s % 3600) / 60), s % 60, (i * 37) % 1000)
  }
  BEGIN {
    print "{\"kind\":\"actor\",\"id\":\"alice\",\"name\":\"Alice\",\"capacity\":40.0}"
    failed = int(tasks / 2)
    for (i = 0; i < tasks; i++) {
      after = (i >= 1) ? sprintf("[\"task-%06d\"]", i - 1) : "[]"
      if (i == failed) {
        printf "{\"kind\":\"task\",\"id\":\"t-failed\",\"title\":\"Migrate the nightly pipeline storage\",\"status\":\"failed\",\"after\":%s,\"exec\":\"sh ./steps/migrate.sh\",\"retry_count\":1,\"failure_reason\":\"exit code 1\",\"created_at\":\"%s\",\"log\":[{\"timestamp\":\"%s\",\"actor\":\"agent-13\",\"user\":\"agent-13\",\"message\":\"Failed: exit code 1\"}]}\n", after, ts(i, 0), ts(i, 91)
        continue
      }
      status = (i % 3 != 2) ? "done" : "open"
      extra = ""
      if (shape == "full")
        extra = sprintf(",\"description\":\"Run the checks for module %d, fix what fails and record the results in the log. Acceptance: the checks pass twice in a row and the report is attached.\",\"estimate\":{\"hours\":%d.0,\"cost\":%d.0},\"tags\":[\"pipeline\",\"phase%d\"],\"skills\":[\"rust\",\"testing\"],\"created_at\":\"%s\",\"started_at\":\"%s\",\"completed_at\":\"%s\"", i, i % 8 + 1, (i % 8 + 1) * 100, i % 5 + 1, ts(i, 0), ts(i, 30), ts(i, 400))
      printf "{\"kind\":\"task\",\"id\":\"task-%06d\",\"title\":\"Step %d of the nightly pipeline\",\"status\":\"%s\",\"after\":%s,\"exec\":\"sh ./steps/run.sh %d\"%s,\"log\":[{\"timestamp\":\"%s\",\"actor\":\"agent-%d\",\"user\":\"agent-%d\",\"message\":\"Task created\"}]}\n", i, i, status, after, i, extra, ts(i, 0), i % 97 + 1, i % 97 + 1
    }
  }' > "$work/graph.jsonl"
if [ -n "${GRAPH_OUT:-}" ]; then cp "$work/graph.jsonl" "$GRAPH_OUT"; echo "wrote $GRAPH_OUT"; exit 0; fi
bytes=$(stat -c %s "$work/graph.jsonl")
for bin in "${bins[@]}"; do
  [ -x "$bin" ] || { echo "graph_ops.sh: $bin is not an executable; build it with cargo build --release -p wg-cli" >&2; exit 2; }
done
open_task=$(printf 'task-%06d' $(( (tasks / 3) * 3 + 2 < tasks ? 5 : 2 )))
echo "graph: $tasks tasks, $shape shape, $bytes bytes ($(awk -v b="$bytes" 'BEGIN { printf "%.1f MB", b / 1e6 }'))"

# run <bin> <dir> <args...>: prints "wall_seconds cpu_seconds max_rss_kib" (wall time by bash's
# clock, around GNU time, whose own figure has 10 ms steps; CPU = user + system, which a loaded
# machine does not inflate as it does the wall time); fails the script if wg failed.
run() {
  local bin=$1 dir=$2 started; shift 2
  started=$EPOCHREALTIME
  /usr/bin/time -f '%U %S %M' -o "$work/time" "$bin" --dir "$dir" "$@" > "$work/out" 2> "$work/err" \
    || { echo "graph_ops.sh: $bin $* failed:" >&2; cat "$work/err" "$work/out" >&2; exit 1; }
  awk -v a="$started" -v b="$EPOCHREALTIME" '{ printf "%.4f %.2f %d\n", b - a, $1 + $2, $3 }' "$work/time"
}

declare -A secs cpu rss
ops=(retry done fail add list)
for rep in $(seq "$reps"); do
  for index in "${!bins[@]}"; do
    bin=${bins[$index]}
    dir="$work/wg-$index/.wg"
    [ -d "$dir" ] || "$bin" --dir "$dir" init > /dev/null
    for op in "${ops[@]}"; do
      cp "$work/graph.jsonl" "$dir/graph.jsonl"
      case $op in
        retry) args=(retry t-failed) ;;
        done) args=(done "$open_task") ;;
        fail) args=(fail "$open_task" --reason bench) ;;
        add) args=(add "One more step" --after task-000001) ;;
        list) args=(list) ;;
      esac
      read -r s c kib < <(run "$bin" "$dir" "${args[@]}")
      secs[$index,$op]+="$s "
      cpu[$index,$op]+="$c "
      rss[$index,$op]+="$kib "
      if [ "$op" = retry ] && ! cmp -s <(grep -v '"id":"t-failed"' "$work/graph.jsonl") <(grep -v '"id":"t-failed"' "$dir/graph.jsonl"); then
        echo "graph_ops.sh: $bin retry changed lines other than t-failed's" >&2
        exit 1
      fi
    done
  done
  printf '.' >&2
done
echo >&2

median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
maximum() { tr ' ' '\n' | grep . | sort -n | tail -1; }
printf '%-8s' "command"
for bin in "${bins[@]}"; do printf '  %-52s' "$bin (median wall, CPU; peak RSS)"; done
echo
for op in "${ops[@]}"; do
  printf '%-8s' "$op"
  for index in "${!bins[@]}"; do
    s=$(median <<< "${secs[$index,$op]}")
    c=$(median <<< "${cpu[$index,$op]}")
    kib=$(maximum <<< "${rss[$index,$op]}")
    printf '  %-52s' "$(awk -v s="$s" -v c="$c" -v k="$kib" -v b="$bytes" 'BEGIN { printf "%.3f s, %.2f s CPU; %.1f MiB (%.2fx the file)", s, c, k / 1024, k * 1024 / b }')"
  done
  echo
done
