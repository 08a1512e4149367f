#!/usr/bin/env bash
# Builds semdex, indexes a repository on the embedded default and answers one search.
# No database server, no API key, no network: SQLite + local HNSW + the builtin embedder.
#
#   scripts/quickstart.sh [PATH] [QUERY]
#
# PATH is taken relative to the directory the script is run from (default: the ts-app fixture).
# The index goes to $SEMDEX_DATA_DIR, by default `.semdex-data` in this checkout; running again
# reindexes incrementally. SEMDEX_BIN names an already built semdex to use instead of building.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ $# -ge 1 ]]; then
    [[ -d "$1" ]] || {
        echo "quickstart: $1 is not a directory" >&2
        exit 2
    }
    repo="$(cd "$1" && pwd)"
else
    repo="$root/fixtures/ts-app"
fi
query=${2:-hash a password}
export SEMDEX_DATA_DIR=${SEMDEX_DATA_DIR:-$root/.semdex-data}
if [[ -n "${SEMDEX_BIN:-}" ]]; then
    bin="$SEMDEX_BIN"
else
    (cd "$root" && cargo build --release --quiet -p semdex --bin semdex)
    target="${CARGO_TARGET_DIR:-target}"
    [[ "$target" == /* ]] || target="$root/$target"
    bin="$target/release/semdex"
fi
"$bin" index "$repo"
"$bin" search "$query"
