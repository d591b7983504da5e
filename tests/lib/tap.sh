# SPDX-License-Identifier: LGPL-2.1-or-later
# A little TAP for shell tests: `check NAME CMD...` runs CMD and reports it;
# `expect_exit CODE NAME CMD...` wants that exit status; `done_testing`
# prints the plan and exits non-zero if anything failed. Output of a failing
# command is shown as TAP diagnostics.

TAP_N=0
TAP_FAILED=0
TAP_LOG=$(mktemp)

_tap_report() { # status name
	TAP_N=$((TAP_N + 1))
	if [ "$1" = ok ]; then
		echo "ok $TAP_N - $2"
	else
		echo "not ok $TAP_N - $2"
		sed 's/^/# /' "$TAP_LOG"
		TAP_FAILED=$((TAP_FAILED + 1))
	fi
}

check() {
	local name=$1; shift
	if "$@" >"$TAP_LOG" 2>&1; then _tap_report ok "$name"; else _tap_report fail "$name"; fi
}

# expect_exit CODE NAME CMD... ; the output is kept in $TAP_OUT
expect_exit() {
	local want=$1 name=$2; shift 2
	local got=0
	"$@" >"$TAP_LOG" 2>&1 || got=$?
	TAP_OUT=$(cat "$TAP_LOG")
	if [ "$got" = "$want" ]; then
		_tap_report ok "$name"
	else
		echo "expected exit $want, got $got" >>"$TAP_LOG"
		_tap_report fail "$name"
	fi
}

# output_has NAME PATTERN: the last expect_exit output matches PATTERN (grep -E)
output_has() {
	if printf '%s\n' "$TAP_OUT" | grep -Eq -- "$2"; then
		_tap_report ok "$1"
	else
		printf 'output did not match /%s/:\n%s\n' "$2" "$TAP_OUT" >"$TAP_LOG"
		_tap_report fail "$1"
	fi
}

# skip NAME REASON: a TAP skip (counts as passed, says why)
skip() {
	TAP_N=$((TAP_N + 1))
	echo "ok $TAP_N - $1 # SKIP $2"
}

# True when BINARY was built with AddressSanitizer: its allocator keeps
# freed memory in quarantine and slows everything, so memory and
# bandwidth figures mean nothing there (the plain build measures them).
built_with_asan() {
	ldd "$1" 2>/dev/null | grep -q libasan
}

# bail_out_if_failed SINCE WHY: ends the test when a check failed since the
# count SINCE and nothing later could pass, rather than wait out every bound
bail_out_if_failed() {
	[ "$TAP_FAILED" = "$1" ] && return 0
	tail -n 3 ./*.log 2>/dev/null | sed 's/^/# /'
	echo "Bail out! $2"
	exit 1
}

done_testing() {
	echo "1..$TAP_N"
	rm -f "$TAP_LOG"
	[ "$TAP_FAILED" -eq 0 ]
}
