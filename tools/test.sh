#!/usr/bin/env bash
# The test command: installs the real servers the tests need (tools/setup.sh), then runs
# every test in the quick-release profile (optimised, no LTO: see Cargo.toml).
# A test that needs a server which is missing fails; it never passes silently.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
# shellcheck disable=SC1091
source target/servers.env
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --cargo-profile quick-release --all-features --no-fail-fast "$@"
  # nextest does not run doctests
  cargo test --profile quick-release --all-features --doc
else
  cargo test --profile quick-release --all-features --no-fail-fast "$@"
fi
