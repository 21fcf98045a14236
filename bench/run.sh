#!/bin/sh
# Runs every thinfleet-sim scenario at each fleet size given (default:
# 1000 2500) against a server the simulator starts, and writes the
# figures: bench/results/<size>.json (and <size>.log, the progress), then
# the BENCHMARKS.md table (bench/table.md) and its plot (bench/fleet-sim.png).
#
#   bench/run.sh [SIZE...]        e.g. bench/run.sh 1000 2500 5000 10000
#
# The agents' credentials and the server's data are kept in bench/state,
# so each size enrolls once. Needs nginx for the rollout's comparison and
# gnuplot for the plot (apt-get install -y nginx gnuplot-nox). Extra flags
# for thinfleet-sim go in SIM_FLAGS, e.g. SIM_FLAGS="--hold 60s".
set -eu
cd "$(dirname "$0")/.."
sizes=${*:-1000 2500}
mkdir -p bin bench/results bench/state
go build -o bin/thinfleet ./cmd/thinfleet
go build -o bin/thinfleet-sim ./cmd/thinfleet-sim
for n in $sizes; do
	echo "== $n agents (progress in bench/results/$n.log)" >&2
	# A failed scenario is in the figures' "problems"; the other sizes still run.
	bin/thinfleet-sim --agents "$n" --state bench/state --thinfleet bin/thinfleet ${SIM_FLAGS:-} \
		>"bench/results/$n.json" 2>"bench/results/$n.log" || echo "   $n agents: problems, see bench/results/$n.json" >&2
	tail -n 3 "bench/results/$n.log" >&2
done
bin/thinfleet-sim table --plot bench/fleet-sim.png bench/results/*.json | tee bench/table.md
