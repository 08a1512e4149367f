#!/usr/bin/env bash
# The long crash soak beside the CI crash test: SIGKILL `semdex index` at random points many
# times per backend, recovering and comparing with a clean index after every kill.
#
#   scripts/crash-soak.sh [ITERATIONS]     (default 500 per backend)
#
# Uses SEMDEX_TEST_DATABASE_URL when set, else provisions PostgreSQL like scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
iterations="${1:-500}"
if [[ -z "${SEMDEX_TEST_DATABASE_URL:-}" ]]; then
    eval "$(scripts/test-postgres.sh start)"
    trap 'scripts/test-postgres.sh stop "$SEMDEX_TEST_PG_STATE" >/dev/null 2>&1 || true' EXIT
fi
cargo build -p semdex --bin semdex
SEMDEX_CRASH_ITERATIONS="$iterations" cargo test -p semdex-tests --test e2e crash -- --nocapture --test-threads 2
