#!/usr/bin/env bash
# The test command (README): format and lint checks, then every test of the workspace against real
# backends. A PostgreSQL with pgvector is provisioned by scripts/test-postgres.sh and stopped on exit,
# unless SEMDEX_TEST_DATABASE_URL already names a server. Exits with the tests' status.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

fmt_color=()
if [[ ! -t 1 ]]; then
    export CARGO_TERM_COLOR=never
    fmt_color=(-- --color=never)
fi

# A CI checkout is built once: incremental compilation state (about 2 GB) would only take disk.
if [[ "${CI:-}" == "true" ]]; then
    export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
fi

if [[ -z "${SEMDEX_TEST_DATABASE_URL:-}" ]]; then
    pg_env="$(scripts/test-postgres.sh start)"
    eval "$pg_env"
    # Stop the server however this script ends, failures and interrupts included.
    trap 'scripts/test-postgres.sh stop "$SEMDEX_TEST_PG_STATE"' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
fi
export SEMDEX_TEST_DATABASE_URL

cargo fmt --all --check "${fmt_color[@]}"
cargo clippy --workspace --all-targets -- -D warnings

if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast
else
    cargo test --workspace --no-fail-fast
fi
