#!/usr/bin/env bash
# Fuzzes the reader (with its round-trip oracle) and the LZ4 frame decoder with cargo-fuzz
# (libFuzzer, nightly), each for SECONDS (default 60), from corpora seeded with our own
# files (plain, LZF and LZ4-framed, every type) and the servers' own streams and hashes
# with field TTLs. Installs cargo-fuzz if missing.
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
# Files written by the servers themselves (tools/setup.sh installs them; a server that is
# missing leaves its seed out): streams with deletions, a consumer group and pending
# entries (Redis 7.0), hashes with field TTLs (Redis 8.2: RDB 12 types 24 and 25) and a
# vector set (a module value).
seed() { # NAME SERVER-BINARY, commands on stdin
  local out="$corpus/reader/$1.rdb" d pid
  [ -s "$out" ] || [ ! -x "$2" ] || ! command -v redis-cli >/dev/null && { cat >/dev/null; return; }
  d=$(mktemp -d)
  "$2" --port 0 --unixsocket "$d/s" --dir "$d" --save "" >/dev/null &
  pid=$!
  for _ in $(seq 100); do [ -S "$d/s" ] && break; sleep 0.05; done
  redis-cli -s "$d/s" >/dev/null
  redis-cli -s "$d/s" SAVE >/dev/null
  cp "$d/dump.rdb" "$out"
  kill "$pid"
  wait "$pid" || true
  rm -rf "$d"
}
{
  for i in $(seq 1 120); do echo "XADD s $i-1 f v$i n $i"; done
  echo "XADD s 200-0 other x"
  echo "XDEL s 5-1"
  echo "XGROUP CREATE s g 0"
  echo "XREADGROUP GROUP g alice COUNT 3 STREAMS s >"
  echo "XGROUP CREATE empty g2 \$ MKSTREAM"
} | seed streams-redis70 /usr/bin/redis-server
redis82=$(sed -n 's/^export FORKSNAP_REDIS82=//p' target/servers.env 2>/dev/null || true)
{
  echo "HSET small a 1 b 2 c 3"
  echo "HPEXPIREAT small 4000000000000 FIELDS 2 a c"
  for i in $(seq 1 200); do echo "HSET large f$i v$i"; done
  echo "HPEXPIREAT large 4000000000001 FIELDS 2 f7 f9"
  for i in $(seq 1 20); do echo "VADD vs VALUES 3 0.$i 0.5 1 e$i"; done
} | seed field-ttls-vectors-redis82 "${redis82:-/nonexistent}"
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
