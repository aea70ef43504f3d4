#!/usr/bin/env bash
# Runs mosquitto 2.0.11's own broker tests (test/broker/NN-*.py from
# Debian's source package) against midge and against Debian's mosquitto,
# and fails when midge fails a test that mosquitto passes and that
# docs/mosquitto-suite.md does not list. mosquitto's code stays in the
# cache folder (gitignored), never in the repository. Run as root (CI is).
#
#   scripts/mosquitto-suite.sh [runner flags, e.g. -run '^01-' -j 2]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${MOSQ_SUITE_CACHE:-$root/.cache/mosquitto-suite}"
tree="$cache/mosquitto-2.0.11"

need=()
command -v dpkg-source >/dev/null 2>&1 || need+=(dpkg-dev)
# Debian's python3 runs the tests (01-bad-initial-packets needs psutil).
[ -x /usr/bin/python3 ] || need+=(python3)
/usr/bin/python3 -c 'import psutil' >/dev/null 2>&1 || need+=(python3-psutil)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
[ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
if [ ${#need[@]} -gt 0 ]; then
  echo "mosquitto-suite: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ ! -f "$tree/.midge-ready" ]; then
  # A deb-src twin of each Debian entry, so apt-get source can find the package.
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    grep -q '^Types:.*deb-src' "$f" && continue
    grep -q '^Types: deb$' "$f" || continue
    src="/etc/apt/sources.list.d/midge-src-$(basename "$f")"
    [ -f "$src" ] || sed 's/^Types: deb$/Types: deb-src/' "$f" >"$src"
  done
  if [ -f /etc/apt/sources.list ] && grep -q '^deb ' /etc/apt/sources.list &&
    ! grep -q '^deb-src ' /etc/apt/sources.list; then
    grep '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' >/etc/apt/sources.list.d/midge-src.list
  fi
  apt-get update -qq
  rm -rf "$cache" && mkdir -p "$cache"
  # bookworm's mosquitto is 2.0.11 (with Debian's security fixes).
  (cd "$cache" && apt-get source -qq mosquitto >"$cache/apt-source.log" 2>&1) ||
    { cat "$cache/apt-source.log" >&2; exit 1; }
  [ -d "$tree/test/broker" ] || { echo "mosquitto-suite: no $tree/test/broker" >&2; exit 1; }
  # Debian's packaging points the tests at /usr/sbin/mosquitto; the
  # upstream tests start ../../src/mosquitto, the wrapper the runner writes.
  sed -i 's|/usr/sbin/mosquitto|../../src/mosquitto|' "$tree/test/mosq_test.py" \
    "$tree/test/broker/08-tls-psk-bridge.py" "$tree/test/broker/06-bridge-reconnect-local-out.py"
  # dynsec tests load the plugin from the build tree; use Debian's.
  so="$(dpkg -L mosquitto | grep 'mosquitto_dynamic_security\.so$' | head -1)"
  [ -n "$so" ] && sed -i "s|\.\./\.\./plugins/dynamic-security/mosquitto_dynamic_security\.so|$so|" "$tree"/test/broker/14-dynsec-*.py
  # The certificates in the tarball expired (or Debian removed them): make
  # fresh ones with the tree's own script.
  # mosquitto started as root reads them as user mosquitto.
  (cd "$tree/test/ssl" && bash gen.sh >"$cache/gen-ssl.log" 2>&1 && chmod -R a+rX .)
  touch "$tree/.midge-ready"
fi

cd "$root"
go build -o bin/midge .
exec go run ./test/mosqsuite -tree "$tree" -midge "$root/bin/midge" -list "$root/docs/mosquitto-suite.md" "$@"
