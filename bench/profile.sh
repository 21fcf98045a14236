#!/bin/sh
# Profiles the thinfleet server under a simulated fleet: starts
# thinfleet-sim with N agents (the server with --pprof on loopback), takes
# a 30 s CPU profile and a heap profile 6 s into the hold (every agent
# connected and heartbeating), and a 30 s CPU profile of the report storm
# once the rollout's downloads are done. Writes them with the figures
# (result.json), the progress (sim.log) and the load average to OUTDIR.
#
#   bench/profile.sh N OUTDIR [thinfleet-sim flags...]
#   bench/profile.sh 10000 /tmp/p10k --scenarios hold,rollout,disconnect --hold 45s --timeout 5m
#   go tool pprof -top bin/thinfleet /tmp/p10k/hold-cpu.prof
#   python3 bench/pprof-owners.py /tmp/p10k/hold-cpu.prof    # CPU by owner
#
# STATE (default bench/state) is the simulator's --state: a fresh folder
# enrolls the fleet anew and starts the server without anything left from
# earlier runs (a backlog in the agent stream skews the figures).
set -u
N=$1; OUT=$2; shift 2
cd "$(dirname "$0")/.."
mkdir -p bin "$OUT"
go build -o bin/thinfleet ./cmd/thinfleet && go build -o bin/thinfleet-sim ./cmd/thinfleet-sim || exit 1
PPROF=${PPROF:-127.0.0.1:6061}
uptime > "$OUT/uptime-start"
bin/thinfleet-sim --agents "$N" --state "${STATE:-bench/state}" --thinfleet bin/thinfleet --nginx none \
	--server-args "--pprof $PPROF ${SERVER_ARGS:-}" "$@" > "$OUT/result.json" 2> "$OUT/sim.log" &
SIM=$!
waitfor() {
	while ! grep -q "$1" "$OUT/sim.log"; do
		kill -0 $SIM 2>/dev/null || return 1
		sleep 1
	done
}
if waitfor "scenario hold"; then
	sleep 6
	uptime > "$OUT/uptime-hold"
	curl -s -o "$OUT/hold-cpu.prof" "http://$PPROF/debug/pprof/profile?seconds=30"
	curl -s -o "$OUT/hold-heap.prof" "http://$PPROF/debug/pprof/heap?gc=1"
	curl -s -o "$OUT/hold-heap.txt" "http://$PPROF/debug/pprof/heap?debug=1"
	curl -s -o "$OUT/hold-goroutine.txt" "http://$PPROF/debug/pprof/goroutine?debug=1"
fi
if waitfor " downloads verified"; then
	uptime > "$OUT/uptime-storm"
	curl -s -o "$OUT/storm-cpu.prof" "http://$PPROF/debug/pprof/profile?seconds=30"
fi
wait $SIM
uptime > "$OUT/uptime-end"
