#!/bin/bash
# Interleaved fillrandom runs of the sharding configurations of docs/benchmarks.md
# ("Sharding"), printing every round and the median per configuration.
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

configs=("--threads 1" "--threads 2" "--threads 2 --shards 2" "--threads 1 --shards 1")
declare -A results
for _ in $(seq "$rounds"); do
  for c in "${configs[@]}"; do
    # shellcheck disable=SC2086 # the configuration is a list of flags
    ops=$($bin --benchmarks fillrandom --num "$num" $c "$@" --db "$db" --json 2>/dev/null |
      python3 -c 'import sys, json; print(int(json.loads(sys.stdin.readline())["ops_per_sec"]))')
    results["$c"]+="$ops "
  done
done
for c in "${configs[@]}"; do
  median=$(tr ' ' '\n' <<<"${results[$c]}" | grep . | sort -n | sed -n "$(( (rounds + 1) / 2 ))p")
  printf '%-24s %s  median %s\n' "$c:" "${results[$c]}" "$median"
done
