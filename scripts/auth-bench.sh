#!/bin/sh
# auth-bench.sh: the cost of authentication on midge, beside the same load
# without it (issue 16). Rounds alternate the configurations, so that the
# machine's drift falls on all of them. Prints one line per run: conns:
# connects/s and broker CPU µs per connect; fanin/pairs: delivered msg/s and
# messages per broker CPU-second. perf/results/*-auth.md records a run.
#
#   scripts/auth-bench.sh [ROUNDS] [CONNS]
set -eu
ROUNDS=${1:-3}
CONNS=${2:-5000}
cd "$(dirname "$0")/.."
go build -o bin/midge . && go build -o bin/authsvc ./perf/authsvc
dir=$(mktemp -d)
trap 'kill $svc 2>/dev/null; rm -rf "$dir"' EXIT

bin/authsvc > "$dir/svc.addr" 2> "$dir/svc.log" &
svc=$!
sleep 0.5
svcport=$(cut -d: -f2 "$dir/svc.addr")

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# conf NAME PORT: the configuration of one run.
conf() {
	echo "listener $2 127.0.0.1"
	echo "log_dest none"
	case $1 in
	none) echo "allow_anonymous true" ;;
	goauth-*)
		printf 'auth_plugin /mosquitto/go-auth.so\nauth_opt_backends http\nauth_opt_http_host 127.0.0.1\n'
		printf 'auth_opt_http_port %s\nauth_opt_http_getuser_uri /user\nauth_opt_http_superuser_uri /superuser\n' "$svcport"
		printf 'auth_opt_http_aclcheck_uri /acl\n'
		[ "$1" = goauth-nocache ] || printf 'auth_opt_cache true\nauth_opt_auth_cache_seconds 300\nauth_opt_acl_cache_seconds 300\n' ;;
	dynsec)
		cat <<CONF
plugin /usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so
plugin_opt_config_file $dir/dynsec.json
allow_anonymous true
CONF
		cat > "$dir/dynsec.json" <<JSON
{"roles":[{"rolename":"bench","acls":[
 {"acltype":"publishClientSend","topic":"bench/#","allow":true},
 {"acltype":"publishClientReceive","topic":"bench/#","allow":true},
 {"acltype":"subscribePattern","topic":"bench/#","allow":true}]}],
 "groups":[{"groupname":"anon","roles":[{"rolename":"bench"}]}],
 "anonymousGroup":"anon",
 "defaultACLAccess":{"publishClientSend":false,"publishClientReceive":true,"subscribe":false,"unsubscribe":true}}
JSON
		;;
	esac
}

# run NAME SCENARIO ARGS...: one broker, one measured run; prints JSON.
run() {
	name=$1; shift
	port=$(free_port)
	conf "$name" "$port" > "$dir/$name.conf"
	bin/midge -c "$dir/$name.conf" &
	pid=$!
	for _ in 1 2 3 4 5 6 7 8 9 10; do nc -z 127.0.0.1 "$port" 2>/dev/null && break; sleep 0.2; done
	if [ "$name" = goauth-warm ]; then # warm the cache with the same credentials
		bin/midge bench conns -p "$port" -c 100 -u bench -pw pw -progress off -json > /dev/null
	fi
	bin/midge bench "$@" -p "$port" -pid "$pid" -progress off -json
	kill -INT $pid; wait $pid 2>/dev/null || true
}

echo "# $(date -u +%F) $(nproc) CPUs, $(go version | cut -d' ' -f3), load $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$ROUNDS"); do
	for n in none goauth-nocache goauth-cold goauth-warm; do
		creds="-u bench -pw pw"
		[ $n = none ] && creds=""
		rate=$(run $n conns -c "$CONNS" $creds | jq -r '(.[0] // .) | "\(.connect_rate) \(1e6 * .broker_cpu / .connect_rate)"')
		echo "round $r conns $n $rate"
	done
	for n in none dynsec; do
		for s in fanin pairs; do
			rate=$(run $n $s -d 3s | jq -r '(.[0] // .) | "\(.rate) \(.msgs_per_broker_cpu_s)"')
			echo "round $r $s $n $rate"
		done
	done
done
echo "authsvc: $(kill -INT $svc; sleep 0.3; cat "$dir/svc.log")"
