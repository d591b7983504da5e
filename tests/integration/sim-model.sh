#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Model mode on the small shipped scenarios: each ends with the final
# states its [expect] names (shoal-sim exits 0 only then), and leaves a
# results.json with every field and a report.svg. A bad scenario is
# refused with exit 2 and FILE:LINE.
#
# usage: sim-model.sh SHOAL-SIM SCENARIO-DIR
set -u
SIM=$1
DIR=$2
. "$(dirname "$0")/../lib/tap.sh"

T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

has_fields() { # results.json
	python3 - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
top = ["nodes", "image_bytes", "seed_bytes_sent", "peer_bytes_sent", "local_bytes_reused",
       "time_all_complete_s", "time_all_committed_s", "kumar_ross_bound_s", "per_node"]
node = ["name", "final_state", "release", "bytes_from_seed", "bytes_from_peers", "bytes_reused",
        "banned_peers"]
missing = [k for k in top if k not in r]
missing += ["per_node[%d].%s" % (i, k) for i, n in enumerate(r["per_node"]) for k in node if k not in n]
if missing:
    sys.exit("missing: " + ", ".join(missing))
if len(r["per_node"]) != r["nodes"]:
    sys.exit("per_node has %d entries for %d nodes" % (len(r["per_node"]), r["nodes"]))
for n in r["per_node"]:
    if n["final_state"] not in ("committed", "rolled_back", "failed"):
        sys.exit("bad final_state " + n["final_state"])
if r["kumar_ross_bound_s"] <= 0:
    sys.exit("no bound")
PY
}

# jq-free checks of one value: python3 is on every machine that runs this
field() { python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"; }

for sc in small-4 demo-8 faults-4 gateway-leaves malicious-peer delta-v1-v2 campaign-6; do
	out=$T/$sc
	check "$sc: every device ends as expected" "$SIM" model "$DIR/$sc.ini" --out "$out" --quiet
	check "$sc: results.json has every field" has_fields "$out/results.json"
	check "$sc: report.svg is an SVG with one polyline per device" \
		test "$(grep -c '<polyline' "$out/report.svg")" = "$(field "$out/results.json" 'r["nodes"]')"
done

# what the scenarios are about
check "demo-8: dev-3 rolled back, the others committed" \
	test "$(field "$T/demo-8/results.json" '",".join(n["name"] for n in r["per_node"] if n["final_state"] == "rolled_back")')" = dev-3
check "malicious-peer: the devices that met dev-2 banned it" \
	test "$(field "$T/malicious-peer/results.json" 'sum(n["banned_peers"] for n in r["per_node"])')" -ge 1
check "campaign-6: the canary goes first, dev-5's rollback pauses the campaign" \
	test "$(field "$T/campaign-6/results.json" 'r["campaign"]["state"], [n["campaign_phase"] for n in r["per_node"]].count("canary"), [n["name"] for n in r["per_node"] if n["campaign_target"] == "failed"]')" = "('paused', 1, ['dev-5'])"
check "small-4 (rollout auto): results.json has no campaign" test "$(field "$T/small-4/results.json" 'r["campaign"]')" = None
check "delta-v1-v2: most of the image is reused locally" \
	python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); sys.exit(r["local_bytes_reused"] < 0.9 * r["image_bytes"] * r["nodes"])' "$T/delta-v1-v2/results.json"
check "small-4: the same seed gives the same results" \
	sh -c '"$0" model "$1/small-4.ini" --out "$2/again" --quiet >/dev/null &&
	       python3 -c "import json,sys; a,b=(json.load(open(p)) for p in sys.argv[1:]); [x.pop(\"wall_s\") for x in (a,b)]; sys.exit(a != b)" \
	       "$2/small-4/results.json" "$2/again/results.json"' "$SIM" "$DIR" "$T"

# a wrong expectation makes the run fail (exit 1), so the checks above can fail
sed 's/^committed = all$/rolled_back = dev-1\ncommitted = rest/' "$DIR/small-4.ini" >"$T/wrong.ini"
expect_exit 1 "a device that does not end as expected fails the run" "$SIM" model "$T/wrong.ini" --out "$T/wrong" --quiet
printf '[fleet]\ndevices = 2\nspeed = 3\n' >"$T/bad.ini"
expect_exit 2 "an unknown key is refused" "$SIM" check "$T/bad.ini"
check "with its file and line" grep -q "bad.ini:3: unknown key 'speed' in \[fleet\]" <<<"$TAP_OUT"
done_testing
