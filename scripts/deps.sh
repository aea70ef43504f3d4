#!/usr/bin/env bash
# Installs the Debian packages the tests drive (mosquitto broker and clients)
# when they are missing. Run as root (CI and the dev machines are).
set -euo pipefail
need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)
if [ ${#need[@]} -gt 0 ]; then
  echo "deps: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# WebSocket tests: MQTT.js under node, and headless Chromium for the browser
# test (loop/mqttjs_test.go).
need=()
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# Cross builds run under emulation (test/cross): qemu-aarch64, qemu-arm,
# qemu-riscv64 and qemu-mipsel, all in Debian's qemu-user.
command -v qemu-aarch64 >/dev/null 2>&1 || need+=(qemu-user)
if [ ${#need[@]} -gt 0 ]; then
  echo "deps: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
mqttjs="$(dirname "$0")/../test/mqttjs"
if [ ! -f "$mqttjs/node_modules/mqtt/dist/mqtt.min.js" ]; then
  echo "deps: installing MQTT.js (test/mqttjs)"
  (cd "$mqttjs" && npm ci --no-audit --no-fund --silent)
fi
