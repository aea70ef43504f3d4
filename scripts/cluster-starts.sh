#!/bin/bash
# cluster-starts.sh: start three midge nodes together, N times, and count
# how many times all three joined and opened their listener (within 90 s),
# and then whether a retained message set on n1 (written to JetStream's
# files) is read on n3. Each run has fresh stores and ports; its nodes are
# stopped (SIGTERM) before the next. Prints one line per run (ok/FAIL and the time until all three
# listened), then the totals; a failed run's logs are kept in OUT.
#
#   scripts/cluster-starts.sh [N] [MIDGE] [OUT]
set -u
N=${1:-15}
BIN=${2:-bin/midge}
OUT=${3:-$(mktemp -d)}
cd "$(dirname "$0")/.."
[ -x "$BIN" ] || { go build -o bin/midge . && BIN=bin/midge; }
mkdir -p "$OUT"
ok=0 fail=0 times=()
for run in $(seq 1 "$N"); do
  d=$(mktemp -d)
  chmod 755 "$d" # a broker started as root runs as the mosquitto user once joined
  # six distinct free ports, as the kernel gives them (all held until all are picked)
  read -r -a ports <<< "$(python3 -c 'import socket
ss = [socket.socket() for _ in range(6)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))')"
  peers="127.0.0.1:${ports[0]} 127.0.0.1:${ports[1]} 127.0.0.1:${ports[2]}"
  pids=()
  for i in 1 2 3; do
    mkdir -p "$d/n$i"
    printf 'listener %d 127.0.0.1\nallow_anonymous true\npersistence_location %s\ncluster_name demo\ncluster_node_name n%d\ncluster_listen 127.0.0.1:%d\ncluster_peers %s\n' \
      "${ports[$((i+2))]}" "$d/n$i" "$i" "${ports[$((i-1))]}" "$peers" > "$d/n$i.conf"
  done
  t0=$(date +%s%N)
  for i in 1 2 3; do "$BIN" -c "$d/n$i.conf" > "$d/n$i.log" 2>&1 & pids+=($!); done
  up=0
  for _ in $(seq 1 900); do
    up=0
    for i in 1 2 3; do
      grep -q "listen socket" "$d/n$i.log" && up=$((up+1))
    done
    [ $up = 3 ] && break
    alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=$((alive+1)); done
    [ $alive -lt 3 ] && break
    sleep 0.1
  done
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  if [ $up = 3 ]; then
    got=""
    if command -v mosquitto_pub > /dev/null; then
      mosquitto_pub -p "${ports[3]}" -t "starts/$run" -m "r$run" -r -q 1
      got=$(mosquitto_sub -p "${ports[5]}" -t "starts/$run" -C 1 -W 10 2>&1)
    else
      got="r$run" # no mosquitto clients: listening only
    fi
    if [ "$got" = "r$run" ]; then
      ok=$((ok+1)); times+=("$ms"); echo "run $run ok $ms ms"
    else
      fail=$((fail+1)); echo "run $run FAIL: joined in $ms ms, but the retained message set on n1 was not read on n3 ($got)"
      cp -r "$d" "$OUT/fail$run"
    fi
  else
    fail=$((fail+1)); echo "run $run FAIL after $ms ms ($up of 3 listening)"; cp -r "$d" "$OUT/fail$run"
  fi
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "$d"
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
echo "joined: $ok of $N; failed: $fail (logs in $OUT); time until all three listened, ms: min $(echo "$sorted" | head -1), median $(echo "$sorted" | sed -n "$(( (ok+1)/2 ))p"), max $(echo "$sorted" | tail -1)"
