#!/usr/bin/env bash
# Fuzzes the reader (with its round-trip oracle) and the LZ4 frame decoder with cargo-fuzz
# (libFuzzer, nightly), each for SECONDS (default 60), from corpora seeded with our own
# files (plain, LZF and LZ4-framed, every type) and a Redis 7.0 file of streams. Installs cargo-fuzz if missing.
#   tools/fuzz.sh [SECONDS]
# Crashes land in tools/fuzz/artifacts/<target>/ (the command to reproduce is printed).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-60}
cargo +nightly --version >/dev/null 2>&1 || {
  echo "fuzz: cargo-fuzz needs a nightly toolchain (rustup toolchain install nightly)" >&2
  exit 1
}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
corpus=tools/fuzz/corpus
mkdir -p "$corpus/reader" "$corpus/lz4_frame"
cargo build --release --features cli --bin snapbench
for fmt in rdb rdb-lzf lz4; do
  for v in 9 11; do
    out="$corpus/reader/mixed-$fmt-v$v.rdb"
    [ -s "$out" ] || target/release/snapbench --dataset mixed --keys 300 --value-size 40 \
      --format "$fmt" --rdb-version "$v" --mode inproc --backend pwrite --runs 1 \
      --mutate-rate 0 --no-probe --no-svg --out "$out" >/dev/null
  done
done
# Streams with deletions, a consumer group and pending entries, written by Redis 7.0
# itself (tools/setup.sh installs it; without it the corpus has no stream seed).
seed="$corpus/reader/streams-redis70.rdb"
if [ ! -s "$seed" ] && [ -x /usr/bin/redis-server ] && [ -x /usr/bin/redis-cli ]; then
  d=$(mktemp -d)
  /usr/bin/redis-server --port 0 --unixsocket "$d/s" --dir "$d" --save "" >/dev/null &
  pid=$!
  for _ in $(seq 100); do [ -S "$d/s" ] && break; sleep 0.05; done
  cli() { /usr/bin/redis-cli -s "$d/s" "$@" >/dev/null; }
  for i in $(seq 1 120); do cli XADD s "$i-1" f "v$i" n "$i"; done
  cli XADD s 200-0 other x
  cli XDEL s 5-1
  cli XGROUP CREATE s g 0
  cli XREADGROUP GROUP g alice COUNT 3 STREAMS s '>'
  cli XGROUP CREATE empty g2 '$' MKSTREAM
  cli SAVE
  cp "$d/dump.rdb" "$seed"
  kill "$pid"
  wait "$pid" || true
  rm -rf "$d"
fi
cp "$corpus"/reader/mixed-lz4-*.rdb "$corpus/lz4_frame/" 2>/dev/null || true
for target in reader lz4_frame; do
  echo "fuzz: $target for $SECONDS_EACH s"
  log="tools/fuzz/$target.log"
  status=0
  cargo +nightly fuzz run --fuzz-dir tools/fuzz "$target" "$corpus/$target" -- \
    -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
    >"$log" 2>&1 || status=$?
  grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|Done)" "$log" || true
  if [ "$status" != 0 ]; then
    tail -40 "$log" >&2
    echo "fuzz: $target failed (exit $status); see $log and tools/fuzz/artifacts/$target/" >&2
    exit 1
  fi
done
