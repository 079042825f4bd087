# shellcheck shell=bash
# Sourced by .ci/run. The machine's Node is not the one the service supports: fetch one from the npm
# registry (the Node project's own binaries, packaged as node-<os>-<arch>) into the cache. Usage:
#   bin=$(ci_node_dir 24)   # prints a directory holding `node`, latest release of that major

ci_node_dir() {
  local major=$1 os arch pkg dir
  os=$(uname -s | tr '[:upper:]' '[:lower:]')
  case $(uname -m) in
    x86_64 | amd64) arch=x64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) echo "node: no npm package for $(uname -m)" >&2; return 1 ;;
  esac
  # The platform package itself, not `node`: that one only runs an install script that fetches this.
  pkg="node-$os-$arch"
  [[ $os == darwin && $arch == arm64 ]] && pkg="node-bin-$os-$arch"
  dir="${XDG_CACHE_HOME:-$HOME/.cache}/identity-ci/node-$major"
  # Re-resolved on every run, so a cached copy still moves to the newest release of the major.
  npm install --prefix "$dir" --no-save --no-package-lock --ignore-scripts --no-audit --no-fund --loglevel=error "$pkg@$major" >&2 || return 1
  local bin="$dir/node_modules/$pkg/bin"
  [[ $("$bin/node" --version) == "v$major."* ]] || { echo "node: $bin/node is not v$major" >&2; return 1; }
  printf '%s\n' "$bin"
}
