#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The cross-check of issue 5: model mode against process mode, time until
# every device holds the image (time_all_complete_s, both from the moment
# the gateway publishes version 2). Runs each scenario RUNS times in process
# mode (real shoald daemons in namespaces; needs root) and once in model
# mode, and prints, as Markdown: the process median and spread, the bytes
# each device fetched in both modes, the model's time as shipped and with
# the process run's fetched bytes, and process / model.
#
# Why "same bytes": process mode makes version 2 with gen-image, which
# changes a share of 4 KiB blocks, so `changed = 25%` fetches 3.5 MiB of
# a 16 MiB image there and 3.8 MiB in the model (an exact share of chunks).
# The second model column runs a copy of the scenario whose `changed` is
# the share process mode actually fetched; with `base = none` both fetch
# the whole image and the columns agree.
#
# usage: sudo bench/model-vs-process.sh BUILD-DIR [SCENARIO...]
#   (default: the shipped scenarios process mode can run; delta-v1-v2
#   wants 16 devices with two 512 MiB slots each, pass it to include it)
#   RUNS=N process runs per scenario (default 3)
set -eu
B=$(cd "$1" && pwd)
shift
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SIM=$B/simulator/shoal-sim
SC=$ROOT/simulator/scenarios
[ $# -gt 0 ] || set -- "$SC/small-4.ini" "$SC/faults-4.ini" "$SC/malicious-peer.ini" "$SC/gateway-leaves.ini" "$SC/campaign-6.ini" \
	"$SC/demo-8.ini"
RUNS=${RUNS:-3}
[ "$(id -u)" = 0 ] || { echo "process mode needs root" >&2; exit 2; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

echo "| scenario | process: all complete, median (runs) | fetched each, process / model / model same bytes | model | model, same bytes | process / model (same bytes) |"
echo "|---|---|---|---|---|---|"
for sc in "$@"; do
	name=$(basename "$sc" .ini)
	for i in $(seq "$RUNS"); do
		echo "process $name run $i (load: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
		timeout 900 "$SIM" run "$sc" --out "$T/$name-p$i" --quiet --discovery static >/dev/null 2>"$T/$name-p$i.log" ||
			echo "  exit $?: see below" >&2
	done
	"$SIM" model "$sc" --out "$T/$name-m" --quiet >/dev/null || true
	# the process runs' fetched share as `changed`, for the second model run
	share=$(python3 - "$T/$name-m/results.json" "$T"/"$name"-p*/results.json <<'PY'
import json, statistics, sys
m = json.load(open(sys.argv[1]))
p = [json.load(open(f)) for f in sys.argv[2:]]
f = statistics.median(r["fetch_bytes_per_node"] for r in p) if p else m["fetch_bytes_per_node"]
print("%.4f" % (100.0 * f / m["image_bytes"]))
PY
)
	cp "$sc" "$T/$name-same.ini"
	"$SIM" model "$T/$name-same.ini" --out "$T/$name-s" --quiet >/dev/null || true
	# `changed` is a share of chunks, whose lengths vary: run at the
	# process runs' share of bytes, then once more, corrected by the
	# bytes the model fetched
	for pass in 1 2; do
		grep -q '^changed *=' "$sc" || break
		sed "s/^changed *=.*/changed = $share%/" "$sc" >"$T/$name-same.ini"
		"$SIM" model "$T/$name-same.ini" --out "$T/$name-s" --quiet >/dev/null || true
		share=$(python3 - "$share" "$T/$name-s/results.json" "$T"/"$name"-p*/results.json <<'PY'
import json, statistics, sys
s, r = float(sys.argv[1]), json.load(open(sys.argv[2]))
p = [json.load(open(f)) for f in sys.argv[3:]]
want = statistics.median(x["fetch_bytes_per_node"] for x in p) if p else r["fetch_bytes_per_node"]
print("%.4f" % min(100.0, s * want / max(1, r["fetch_bytes_per_node"])))
PY
)
	done
	python3 - "$name" "$T/$name-m/results.json" "$T/$name-s/results.json" "$T"/"$name"-p*/results.json <<'PY'
import json, os, statistics, sys
name, mf, sf = sys.argv[1:4]
p = [json.load(open(f)) for f in sys.argv[4:] if os.path.exists(f)]
m, s = json.load(open(mf)), json.load(open(sf))
t = sorted(r["time_all_complete_s"] for r in p if r["time_all_complete_s"] is not None)
mib = lambda b: b / 1048576
if t:
    med = statistics.median(t)
    runs = ", ".join("%.2f" % x for x in t)
    fp = statistics.median(r["fetch_bytes_per_node"] for r in p)
    print("| %s | %.2f s (%s) | %.2f / %.2f / %.2f MiB | %.2f s | %.2f s | %.2f |" % (
        name, med, runs, mib(fp), mib(m["fetch_bytes_per_node"]), mib(s["fetch_bytes_per_node"]), m["time_all_complete_s"],
        s["time_all_complete_s"], med / s["time_all_complete_s"]))
else:
    print("| %s | no run completed | - | %.2f s | %.2f s | - |" % (name, m["time_all_complete_s"], s["time_all_complete_s"]))
PY
done
