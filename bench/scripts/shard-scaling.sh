#!/bin/bash
# Interleaved fillrandom runs of the sharding configurations of docs/benchmarks.md
# ("Sharding"), printing every round and the median per configuration.
#
# With `--shard-affine` each writer keeps to the keys of one shard. The last configuration
# is a reference, not a strata mode: two independent strata-bench processes with one writer
# each, run at the same time, their throughputs added. Nothing is shared between them but
# the machine, so it is the most two writers on this machine can reach with strata's
# per-write work (flushes included): the ceiling for sharding.
#
# usage: bench/scripts/shard-scaling.sh [ROUNDS] [NUM] [extra strata-bench flags...]
# e.g.   bench/scripts/shard-scaling.sh 5 1000000
#        bench/scripts/shard-scaling.sh 3 1000000 --memtable-mib 1024
set -euo pipefail
rounds=${1:-3}
num=${2:-1000000}
shift $(( $# < 2 ? $# : 2 ))
cd "$(dirname "$0")/../.."
cargo build --release -q -p strata-bench
bin=target/release/strata-bench
db=$(mktemp -d)
trap 'rm -rf "$db"' EXIT

ops_of() {
  python3 -c 'import sys, json; print(int(json.loads(sys.stdin.readline())["ops_per_sec"]))'
}
run() { # flags...
  $bin --benchmarks fillrandom --num "$num" "$@" --json 2>/dev/null | ops_of
}

two_processes="2 processes x 1 writer"
configs=("--threads 1" "--threads 2" "--threads 2 --shards 2" "--threads 1 --shards 1"
  "--threads 2 --shards 2 --shard-affine" "$two_processes")
declare -A results
for _ in $(seq "$rounds"); do
  for c in "${configs[@]}"; do
    if [[ $c == "$two_processes" ]]; then
      run --threads 1 "$@" --db "$db/p1" >"$db/p1.ops" &
      run --threads 1 "$@" --db "$db/p2" >"$db/p2.ops"
      wait
      ops=$(( $(cat "$db/p1.ops") + $(cat "$db/p2.ops") ))
    else
      # shellcheck disable=SC2086 # the configuration is a list of flags
      ops=$(run $c "$@" --db "$db/one")
    fi
    results["$c"]+="$ops "
  done
done
for c in "${configs[@]}"; do
  median=$(tr ' ' '\n' <<<"${results[$c]}" | grep . | sort -n | sed -n "$(( (rounds + 1) / 2 ))p")
  printf '%-24s %s  median %s\n' "$c:" "${results[$c]}" "$median"
done
