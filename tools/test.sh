#!/usr/bin/env bash
# The test command: installs the real servers the tests need, then runs every test.
# A test that needs a server which is missing fails; it never passes silently.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --release --all-features --no-fail-fast "$@"
  # nextest does not run doctests
  cargo test --release --all-features --doc
else
  cargo test --release --all-features --no-fail-fast "$@"
fi
