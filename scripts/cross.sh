#!/usr/bin/env bash
# make cross: static, stripped midge binaries for small Linux boards, in
# bin/cross/midge-<target>, with their sizes. Each target is tried; any that
# fails is named with the compiler's first lines, and the script fails.
set -uo pipefail
out=${OUT:-bin/cross}
mkdir -p "$out"
failed=()
# Boards get a single-node broker: the cluster (and the NATS server it
# embeds) is left out, 11 MiB of binary and 4 MiB of idle RSS (README, Small
# boards). CROSS_TAGS= builds everything.
tags=${CROSS_TAGS-nocluster}
echo "build tags: ${tags:-none}"
# mipsle is built without the store (store/nostore.go): persistence true
# is refused there with a message that says why.
for t in ${CROSS_TARGETS:-arm64 armv7 armv6 riscv64 mipsle}; do
  env=(CGO_ENABLED=0 GOOS=linux)
  case $t in
    arm64)   env+=(GOARCH=arm64) ;;
    armv7)   env+=(GOARCH=arm GOARM=7) ;;
    armv6)   env+=(GOARCH=arm GOARM=6) ;;
    riscv64) env+=(GOARCH=riscv64) ;;
    mipsle)  env+=(GOARCH=mipsle GOMIPS=softfloat) ;;
    *) echo "cross: unknown target $t"; exit 2 ;;
  esac
  bin="$out/midge-linux-$t"
  if err=$(env "${env[@]}" ${GO:-go} build -tags "$tags" -trimpath -ldflags "-s -w" -o "$bin" . 2>&1); then
    printf '%-8s %6.1f MiB  %s\n' "$t" "$(echo "$(stat -c %s "$bin") / 1048576" | bc -l)" "$bin"
  else
    printf '%-8s FAILED\n%s\n' "$t" "$(echo "$err" | head -4)"
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "cross: failed: ${failed[*]}"
  exit 1
fi
