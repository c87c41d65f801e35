#!/usr/bin/env bash
# Rebuild the contract artifacts from source and fail if they differ from the committed ones.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
node build.mjs
git diff --exit-code -- ../src/audifi_adapters/chain/artifacts
# New, uncommitted artifact files also count as a difference.
untracked=$(git ls-files --others --exclude-standard -- ../src/audifi_adapters/chain/artifacts)
if [ -n "$untracked" ]; then
  echo "untracked artifacts (commit them):" >&2
  echo "$untracked" >&2
  exit 1
fi
echo "contract artifacts are up to date"
