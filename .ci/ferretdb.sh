# shellcheck shell=bash
# Sourced by .ci/run. FerretDB v1 on its SQLite backend stands in for MongoDB in CI: it speaks the
# wire protocol and builds from the Go module proxy. Usage:
#   source .ci/ferretdb.sh; ferretdb_start; trap ferretdb_stop EXIT   # exports MONGODB_URI

FERRETDB_VERSION=v1.24.0
FERRETDB_MODULE=github.com/FerretDB/FerretDB

# Prints the path of the binary, building it on the first call (about 2 minutes cold).
_ferretdb_binary() {
  local cache="${XDG_CACHE_HOME:-$HOME/.cache}/identity-ci/ferretdb-$FERRETDB_VERSION"
  local bin="$cache/ferretdb"
  if [[ -x $bin ]]; then
    printf '%s\n' "$bin"
    return 0
  fi
  echo "ferretdb: building $FERRETDB_VERSION into $cache" >&2
  local work rc
  work=$(mktemp -d) || return 1
  # `go install …@version` needs the proxy's version list, which answers 403 here; a throwaway module
  # asking for the exact version does not. The module's build/version/version.txt is generated from
  # git, not published, and without it the binary panics at start: build a copy that has it.
  (
    cd "$work" &&
      go mod init ferretdb-build &&
      go get "$FERRETDB_MODULE/cmd/ferretdb@$FERRETDB_VERSION" &&
      cp -R "$(go list -m -f '{{.Dir}}' "$FERRETDB_MODULE")" src &&
      chmod -R u+w src &&
      printf '%s\n' "$FERRETDB_VERSION" >src/build/version/version.txt &&
      go mod edit -replace "$FERRETDB_MODULE=./src" &&
      mkdir -p "$cache" &&
      go build -o "$bin.partial" "$FERRETDB_MODULE/cmd/ferretdb" &&
      mv "$bin.partial" "$bin"
  ) >&2
  rc=$?
  rm -rf "$work"
  [[ $rc -eq 0 ]] || { echo "ferretdb: build failed" >&2; return 1; }
  printf '%s\n' "$bin"
}

# Starts FerretDB on a kernel-chosen loopback port with data in a temp dir; exports MONGODB_URI.
ferretdb_start() {
  local bin port="" i
  bin=$(_ferretdb_binary) || return 1
  FERRETDB_DIR=$(mktemp -d) || return 1
  mkdir -p "$FERRETDB_DIR/data"
  # Everything on 127.0.0.1; no debug/metrics listener, no telemetry.
  "$bin" \
    --handler=sqlite \
    --sqlite-url="file:$FERRETDB_DIR/data/" \
    --state-dir="$FERRETDB_DIR" \
    --listen-addr=127.0.0.1:0 \
    --debug-addr=- \
    --telemetry=disable \
    --log-format=text \
    >"$FERRETDB_DIR/ferretdb.log" 2>&1 &
  FERRETDB_PID=$!
  # Port 0 avoids racing for a free port; FerretDB logs the one it got once it listens.
  for ((i = 0; i < 300; i++)); do
    if ! kill -0 "$FERRETDB_PID" 2>/dev/null; then break; fi
    port=$(sed -nE 's/.*Listening on TCP 127\.0\.0\.1:([0-9]+).*/\1/p' "$FERRETDB_DIR/ferretdb.log" | head -n 1)
    if [[ -n $port ]] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      export MONGODB_URI="mongodb://127.0.0.1:$port/"
      echo "ferretdb: $FERRETDB_VERSION listening on 127.0.0.1:$port (pid $FERRETDB_PID)" >&2
      return 0
    fi
    sleep 0.1
  done
  echo "ferretdb: did not start; its log:" >&2
  cat "$FERRETDB_DIR/ferretdb.log" >&2
  ferretdb_stop
  return 1
}

ferretdb_stop() {
  if [[ -n ${FERRETDB_PID:-} ]]; then
    kill "$FERRETDB_PID" 2>/dev/null
    wait "$FERRETDB_PID" 2>/dev/null
  fi
  [[ -n ${FERRETDB_DIR:-} ]] && rm -rf "$FERRETDB_DIR"
  unset FERRETDB_PID FERRETDB_DIR MONGODB_URI
  return 0
}
