#!/usr/bin/env bash
# Profiles the snapshot child with perf's software cpu-clock sampling (hardware counters
# are not available on these VMs) and prints where its time goes: the top functions with
# their own (self) share, then the top call chains.
#
#   tools/perf-child.sh [snapbench flags...]
#   e.g. tools/perf-child.sh --dataset populate --keys 10000000 --format rdb --backend uring --direct
#
# Runs one forked snapshot (no parent load, no memory probe) under `perf record -g`,
# keeps only samples of the child (it names itself `forksnap-child`), and leaves
# perf.data in $PERF_DIR (default: a temp dir) for `perf report -i`.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v perf >/dev/null || { echo "perf-child: perf not found (apt-get install linux-perf)" >&2; exit 1; }
TOP=${TOP:-25}
PERF_DIR=${PERF_DIR:-$(mktemp -d)}
cargo build --release --features cli --bin snapbench >&2
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--dataset populate --keys 10000000 --format rdb --backend uring --direct)
perf record -q -e cpu-clock -F 1999 -g -o "$PERF_DIR/perf.data" -- \
  target/release/snapbench --mode fork --runs 1 --mutate-rate 0 --no-probe --no-svg "${args[@]}" >&2
echo "== child: functions by self time (perf report --comm forksnap-child --no-children)"
perf report -i "$PERF_DIR/perf.data" --comm forksnap-child --no-children --stdio \
  --sort sym --percentage relative --percent-limit 0.5 -g none 2>/dev/null | grep -E '^ +[0-9]' | head -n "$TOP"
echo "== child: self time by kernel/user"
perf report -i "$PERF_DIR/perf.data" --comm forksnap-child --no-children --stdio \
  --sort dso --percentage relative -g none 2>/dev/null | grep -E '^ +[0-9]' | head -n 8
echo "perf data: $PERF_DIR/perf.data"
