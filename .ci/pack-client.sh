#!/usr/bin/env bash
# `npm pack` of packages/client as a consumer gets it: the tarball holds dist/ (JS + .d.ts) and no
# sources; installed into a scratch project (its dependencies from the registry), it loads from plain
# Node ESM and typechecks from TypeScript with tsc. The consumer files are in .ci/pack-client/.
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# prepack builds dist/ afresh.
tarball=$(npm pack -w @identity-service/client --pack-destination "$scratch" --json | node -e 'process.stdout.write(JSON.parse(require("fs").readFileSync(0, "utf8"))[0].filename)')
# Listed once into a variable: `tar | grep -q` under pipefail fails whenever grep stops reading
# first and tar dies of SIGPIPE.
listing=$(tar -tzf "$scratch/$tarball")
if unexpected=$(grep -Ev '^package/(dist/.+\.(js|d\.ts)|package\.json|README\.md)$' <<<"$listing"); then
  echo "the tarball holds more than dist/, package.json and README.md:" >&2
  echo "$unexpected" >&2
  exit 1
fi
grep -qx 'package/dist/index.d.ts' <<<"$listing" || { echo "the tarball has no dist/index.d.ts" >&2; exit 1; }

# The consumer's tools at the versions the repository uses; fastify for the subpath's types (express needs none).
version() { node -p "require('./node_modules/$1/package.json').version"; }
tools=("fastify@$(version fastify)" "typescript@$(version typescript)" "@types/node@$(version @types/node)")
cp .ci/pack-client/consumer.mjs .ci/pack-client/consumer.ts .ci/pack-client/tsconfig.json "$scratch"
cd "$scratch"
echo '{"name":"pack-consumer","private":true,"type":"module"}' >package.json
npm install --no-audit --no-fund --no-package-lock "./$tarball" "${tools[@]}"
node consumer.mjs
npx --no-install tsc -p tsconfig.json
echo "pack check: $tarball installs, imports and typechecks"
