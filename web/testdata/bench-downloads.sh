#!/bin/sh
# bench-downloads.sh measures the server CPU it takes to serve a MiB of
# download: `thinfleet server` against Debian's nginx (sendfile on,
# tcp_nopush on, worker_processes auto, access_log off), both on
# loopback, serving the same zip to the same wrk load, one after the
# other. It prints one line per server and the ratio.
#
#   sh web/testdata/bench-downloads.sh          # from the repository root
#   DUR=20 CONNS=50 SIZE_MIB=8 sh web/testdata/bench-downloads.sh
#
# Needs go, nginx, wrk and zip (apt-get install -y nginx wrk zip).
set -eu
DUR=${DUR:-10}
CONNS=${CONNS:-20}
SIZE_MIB=${SIZE_MIB:-1}
TF_PORT=${TF_PORT:-18480}
NGINX_PORT=${NGINX_PORT:-18481}
NATS_PORT=${NATS_PORT:-18482}
TOKEN=5f0c9a7e3b1d48e2a6c4f09b7d3e1a58

work=$(mktemp -d)
chmod 755 "$work"
tf_pid= ng_pid=
cleanup() {
	[ -n "$tf_pid" ] && kill "$tf_pid" 2>/dev/null && wait "$tf_pid" 2>/dev/null
	[ -n "$ng_pid" ] && kill "$ng_pid" 2>/dev/null && wait "$ng_pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

go build -o "$work/thinfleet" ./cmd/thinfleet
mkdir -p "$work/zip" "$work/updates" "$work/data" "$work/nginx"
echo '{"name": "bench", "version": "1.0", "command": "true"}' >"$work/zip/manifest.json"
head -c $((SIZE_MIB * 1048576)) /dev/urandom >"$work/zip/payload.bin"
(cd "$work/zip" && zip -q -0 ../updates/bench-1.0.zip manifest.json payload.bin)
chmod -R a+rX "$work/updates"
size=$(stat -c %s "$work/updates/bench-1.0.zip")

# cpu_ticks PID...: user+system clock ticks of the processes so far.
cpu_ticks() {
	t=0
	for p in "$@"; do
		set -- $(cut -d' ' -f14,15 "/proc/$p/stat")
		t=$((t + $1 + $2))
	done
	echo "$t"
}
hz=$(getconf CLK_TCK)

# run NAME URL PIDS...: wrk against URL; prints the server CPU per MiB.
run() {
	name=$1 url=$2
	shift 2
	before=$(cpu_ticks "$@")
	out=$(wrk -t2 -c"$CONNS" -d"${DUR}s" -H "Authorization: Bearer $TOKEN" "$url")
	after=$(cpu_ticks "$@")
	reqs=$(echo "$out" | awk '/requests in/ {print $1}')
	errs=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
	if [ -n "$errs" ]; then
		echo "$name: $errs answers were not 2xx" >&2
		exit 1
	fi
	awk -v n="$name" -v r="$reqs" -v s="$size" -v c=$((after - before)) -v hz="$hz" -v d="$DUR" 'BEGIN {
		mib = r * s / 1048576
		printf "%-9s %8d requests  %9.0f MiB  %6.1f MiB/s  server CPU %6.2f s  %6.3f ms CPU per MiB\n", n, r, mib, mib / d, c / hz, c / hz * 1000 / mib
	}'
}

THINFLEET_ADMIN_TOKEN=$TOKEN THINFLEET_ENROLL_TOKEN=$TOKEN "$work/thinfleet" server \
	--data "$work/data" --updates "$work/updates" \
	--http "127.0.0.1:$TF_PORT" --nats "127.0.0.1:$NATS_PORT" >"$work/thinfleet.log" 2>&1 &
tf_pid=$!
i=0
until curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$TF_PORT/api/v1/updates" | grep -q bench-1.0.zip; do
	i=$((i + 1))
	if [ $i -gt 300 ]; then
		echo "thinfleet did not list the zip within 30 s; its log:" >&2
		cat "$work/thinfleet.log" >&2
		exit 1
	fi
	sleep 0.1
done

cat >"$work/nginx/nginx.conf" <<EOF
worker_processes auto;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
	sendfile on;
	tcp_nopush on;
	access_log off;
	client_body_temp_path $work/nginx/body;
	proxy_temp_path $work/nginx/proxy;
	fastcgi_temp_path $work/nginx/fastcgi;
	uwsgi_temp_path $work/nginx/uwsgi;
	scgi_temp_path $work/nginx/scgi;
	server {
		listen 127.0.0.1:$NGINX_PORT;
		root $work/updates;
		location /downloads/ { alias $work/updates/; }
	}
}
EOF
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" &
ng_pid=$!
i=0
until curl -sf -o /dev/null "http://127.0.0.1:$NGINX_PORT/downloads/bench-1.0.zip"; do
	i=$((i + 1))
	[ $i -gt 100 ] && { echo "nginx did not start" >&2; cat "$work/nginx/error.log" >&2; exit 1; }
	sleep 0.1
done
ng_pids="$ng_pid $(pgrep -P "$ng_pid" | tr '\n' ' ')"

echo "$(nproc) cores, $CONNS connections, ${DUR}s each, a $size-byte zip"
tf=$(run thinfleet "http://127.0.0.1:$TF_PORT/downloads/bench-1.0.zip" "$tf_pid")
echo "$tf"
ng=$(run nginx "http://127.0.0.1:$NGINX_PORT/downloads/bench-1.0.zip" $ng_pids)
echo "$ng"
echo "$tf
$ng" | awk '{v[NR] = $(NF-4)} END {printf "thinfleet / nginx CPU per MiB: %.2f\n", v[1] / v[2]}'
