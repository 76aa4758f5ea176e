#!/usr/bin/env bash
# Speed-up of sketchpipe's SQL aggregates on a Ballista cluster from one executor to two,
# measured in the same run on this machine, with plain local execution as the baseline.
#
#   cargo build --release --features ballista
#   benches/cluster_speedup.sh                 # or BIN=target/debug/sketchpipe ROWS=… benches/cluster_speedup.sh
#
# Data: `sketchpipe generate low-rank` (ROWS rows, dimension DIM, 64 MiB row groups that
# DataFusion splits between tasks), kept in bench-data/cluster/. Each executor runs one task at a time (--concurrency 1), so "2
# executors" can use both cores of a 2-core machine. Best of 3 runs per setting.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/sketchpipe}
ROWS=${ROWS:-1000000}
DIM=${DIM:-64}
DATA=bench-data/cluster/rows-$ROWS-dim-$DIM
PORT=${PORT:-50350}

if "$BIN" sql --cluster df://127.0.0.1:1 "SELECT 1" 2>&1 | grep -q "without the"; then
  echo "$BIN was not built with --features ballista" >&2
  exit 2
fi
if [ ! -d "$DATA" ]; then
  mkdir -p "$DATA"
  "$BIN" -q generate low-rank --rows "$ROWS" --dim "$DIM" --out "$DATA/emb.parquet"
fi

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

"$BIN" -q scheduler --bind "127.0.0.1:$PORT" --executor-timeout 30 &
pids+=($!)
start_executor() {
  "$BIN" -q executor --scheduler "127.0.0.1:$PORT" --port "$1" --grpc-port "$2" \
    --concurrency 1 --heartbeat-interval 5 &
  pids+=($!)
}
start_executor $((PORT + 1)) $((PORT + 2))
sleep 3

QUERIES=(
  "SELECT top_eigenvector_stats(emb)['eigenvalue'] AS eigenvalue FROM '$DATA/'"
  "WITH s AS (SELECT priority_sketch(id, emb, 1000, 7) AS s FROM '$DATA/') SELECT sketch_product(s, s)[1][1] AS w FROM s"
  "SELECT count(*) AS n, avg(list_mean(emb)) AS m FROM '$DATA/'"
)

# Best of 3 wall-clock seconds of `sketchpipe sql [--cluster …] QUERY`.
best() {
  local best=""
  for _ in 1 2 3; do
    local t0 t1
    t0=$(date +%s.%N)
    "$BIN" sql --format csv "$@" >/dev/null
    t1=$(date +%s.%N)
    best=$(echo "$t0 $t1 $best" | awk '{d=$2-$1; if ($3=="" || d<$3) print d; else print $3}')
  done
  echo "$best"
}

declare -a local_t one_t two_t
for i in "${!QUERIES[@]}"; do
  local_t[$i]=$(best "${QUERIES[$i]}")
  "$BIN" sql --cluster "df://127.0.0.1:$PORT" "${QUERIES[$i]}" >/dev/null   # warm-up
  one_t[$i]=$(best --cluster "df://127.0.0.1:$PORT" "${QUERIES[$i]}")
done
start_executor $((PORT + 3)) $((PORT + 4))
sleep 6
for i in "${!QUERIES[@]}"; do
  two_t[$i]=$(best --cluster "df://127.0.0.1:$PORT" "${QUERIES[$i]}")
done

echo "rows $ROWS, dim $DIM, binary $BIN, $(nproc) cores"
echo "| query | local s | 1 executor s | 2 executors s | speed-up 1 → 2 |"
echo "|---|---|---|---|---|"
names=("top_eigenvector (exact)" "priority_sketch + sketch_product" "count + avg(list_mean)")
for i in "${!QUERIES[@]}"; do
  awk -v n="${names[$i]}" -v l="${local_t[$i]}" -v a="${one_t[$i]}" -v b="${two_t[$i]}" \
    'BEGIN { printf "| %s | %.2f | %.2f | %.2f | %.2f× |\n", n, l, a, b, a / b }'
done
