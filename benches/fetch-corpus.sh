#!/usr/bin/env bash
# Fetches the benchmark corpus: the TypeScript sources (`src/`) that a few npm packages ship,
# extracted under `$CARGO_TARGET_DIR/bench-corpus/` (or `target/bench-corpus/`), never committed.
# Idempotent: a package already extracted (marked in `bench-corpus.done/`, outside the corpus so
# the indexer does not see the markers) is not fetched again.
set -euo pipefail

# Pinned versions, so every run measures the same bytes.
PACKAGES=(rxjs@7.8.1 zod@4.0.5 @tanstack/query-core@5.59.0)

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
corpus="${CARGO_TARGET_DIR:-$repo/target}/bench-corpus"
done_dir="$corpus.done"
mkdir -p "$corpus" "$done_dir"

for spec in "${PACKAGES[@]}"; do
    # @scope/name@version -> scope-name-version: one flat folder per package.
    name="$(echo "$spec" | sed -e 's/^@//' -e 's/[\/@]/-/g')"
    dir="$corpus/$name"
    if [[ -f "$done_dir/$name" ]]; then
        continue
    fi
    echo "fetch-corpus: $spec -> $dir" >&2
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && npm pack --silent "$spec" >/dev/null)
    rm -rf "$dir"
    mkdir -p "$dir"
    # Only the shipped sources: the compiled output next to them is what the indexer would skip.
    tar -xzf "$tmp"/*.tgz -C "$dir" --strip-components=1 package/src
    touch "$done_dir/$name"
    rm -rf "$tmp"
    trap - EXIT
done

echo "$corpus"
