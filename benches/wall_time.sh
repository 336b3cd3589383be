#!/bin/bash
# Usage: bash benches/wall_time.sh [path/to/wg] [runs]   (build first: cargo build --release -p wg-cli --bin wg)
# Wall time of `wg agents kill` (cooperative agent) and `wg retry` (hung in-progress task),
# each on a fresh .wg with an agent started as another tool would. Prints ms per run.
WG=${1:-target/release/wg}
N=${2:-10}
for kind in kill retry; do
  times=()
  for i in $(seq $N); do
    d=$(mktemp -d); $WG --dir $d/.wg init >/dev/null
    setsid sh -c 'exec sleep 600' & pid=$!
    sleep 0.05
    ticks=$(awk '{s=$0; sub(/.*\) /,"",s); split(s,f," "); print f[20]}' /proc/$pid/stat)
    now=$(date -u +%Y-%m-%dT%H:%M:%S.000000000+00:00)
    echo '{"kind":"task","id":"t1","title":"t1","status":"in-progress","assigned":"agent-1","exec":"sleep 600"}' > $d/.wg/graph.jsonl
    printf '{"agents":{"agent-1":{"id":"agent-1","pid":%d,"task_id":"t1","executor":"shell","started_at":"%s","status":"working","process_start_ticks":%d}},"next_agent_id":2}' $pid "$now" $ticks > $d/.wg/service/registry.json
    start=$(date +%s%N)
    if [ $kind = kill ]; then $WG --dir $d/.wg agents kill agent-1 >/dev/null; else $WG --dir $d/.wg retry t1 --reason hung >/dev/null; fi
    end=$(date +%s%N)
    wait $pid 2>/dev/null
    times+=($(( (end-start)/1000 )))
    rm -rf $d
  done
  sorted=($(printf '%s\n' "${times[@]}" | sort -n))
  echo "$kind: median $((${sorted[$((N/2))]}/1000)).$(( (${sorted[$((N/2))]}%1000)/100 )) ms  min $((${sorted[0]}/1000)) ms  max $((${sorted[$((N-1))]}/1000)) ms  (n=$N)"
done
