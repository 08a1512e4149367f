#!/usr/bin/env bash
# Builds semdex, indexes a repository on the embedded default and answers one search.
# No database server, no API key, no network: SQLite + local HNSW + the builtin embedder.
#
#   scripts/quickstart.sh [PATH] [QUERY]
set -euo pipefail
cd "$(dirname "$0")/.."
repo=${1:-fixtures/ts-app}
query=${2:-hash a password}
export SEMDEX_DATA_DIR=${SEMDEX_DATA_DIR:-$PWD/.semdex-data}
cargo build --release --quiet -p semdex --bin semdex
bin=${CARGO_TARGET_DIR:-target}/release/semdex
"$bin" index "$repo"
"$bin" search "$query"
