#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Model mode at scale: runs simulator/scenarios/large-1000.ini (1000 devices,
# 256 MiB, one gateway) and prints, as Markdown, the wall time and CPU time
# of the run, its peak RSS, the simulated time until every device held the
# image, the Kumar-Ross bound and their ratio, and the bytes the gateway sent.
# The targets (issue 5): under a minute of wall time, within 1.2 x the bound.
#
# usage: bench/model-bench.sh BUILD-DIR [SCENARIO...]
#   (default: simulator/scenarios/large-1000.ini; pass others to compare)
#   SEEDS="1 2 3" runs each scenario once per seed (default "1").
# The cross-check against process mode on the small scenarios is
# bench/model-vs-process.sh.
set -eu
B=$(cd "$1" && pwd)
shift
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SIM=$B/simulator/shoal-sim
[ $# -gt 0 ] || set -- "$ROOT/simulator/scenarios/large-1000.ini"
SEEDS=${SEEDS:-1}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

echo "| scenario | seed | wall | CPU (user+sys) | peak RSS | all complete | Kumar-Ross bound | ratio | gateway sent (x image) | final states |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for sc in "$@"; do
	for seed in $SEEDS; do
		out=$T/$(basename "$sc" .ini)-$seed
		echo "running $(basename "$sc") seed $seed (load: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
		# bounded: a model run that takes 10 minutes has a bug
		timeout 600 /usr/bin/time -f '%e %U %S %M' -o "$T/time" "$SIM" model "$sc" --out "$out" --seed "$seed" --quiet >/dev/null
		read -r wall user sys rss <"$T/time"
		python3 - "$out/results.json" "$(basename "$sc")" "$seed" "$wall" "$user" "$sys" "$rss" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
name, seed, wall, user, sys_, rss = sys.argv[2:]
t = r["time_all_complete_s"]
fs = ", ".join("%s %d" % kv for kv in r["final_states"].items() if kv[1])
print("| %s | %s | %.1f s | %.1f s | %.0f MiB | %s | %.2f s | %s | %.2f | %s |" % (
    name, seed, float(wall), float(user) + float(sys_), int(rss) / 1024,
    "-" if t is None else "%.2f s" % t, r["kumar_ross_bound_s"],
    "-" if t is None else "%.3f" % (t / r["kumar_ross_bound_s"]),
    r["seed_bytes_sent"] / r["image_bytes"], fs))
PY
	done
done
