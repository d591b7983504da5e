#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Keeps the documentation and the packaging true: every key of shoald's
# key table (daemon/conf.c) is in docs/configuration.md and shoal.conf(5)
# under its section, and neither lists a key that does not exist; every
# option that `shoald --help` and each `shoal VERB --help` print is in the
# man page; the man pages render without warnings; the example configs
# load with `shoald --check`; the systemd unit is Type=notify with a
# watchdog and does not forbid writing the slots.
#
# usage: docs-packaging.sh SHOAL SHOALD SOURCE-ROOT
set -u
SHOAL=$1
SHOALD=$2
SRC=$3
. "$(dirname "$0")/../lib/tap.sh"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

# section.key, one a line, sorted
sed -n 's/^[[:space:]]*[KE]("\([a-z_.]*\)", "\([a-z_]*\)".*/\1.\2/p' "$SRC/daemon/conf.c" | sort >"$T/table"
# shoald's part of configuration.md ends where the next "# " title starts
awk '/^# / { if (seen++) exit } /^## \[/ { sec = substr($2, 2, length($2) - 2) }
     sec && /^\| `[a-z_]+` \|/ { split($0, f, "`"); print sec "." f[2] }' "$SRC/docs/configuration.md" | sort >"$T/md"
awk '/^\.SH \[/ { sec = substr($2, 2, length($2) - 2); next } /^\.SH / { sec = "" }
     sec && prev == ".TP" && /^\.BR? [a-z_]+/ { print sec "." $2 } { prev = $1 }' "$SRC/docs/man/shoal.conf.5" | sort >"$T/man"
check "the key table has keys (the extraction works)" test "$(wc -l <"$T/table")" -ge 20
check "docs/configuration.md documents exactly the keys of daemon/conf.c" diff "$T/table" "$T/md"
check "shoal.conf(5) documents exactly the keys of daemon/conf.c" diff "$T/table" "$T/man"

# Every option of every --help is in the man page (troff writes - as \-).
options_of() { "$@" --help 2>&1 | grep -oE -- '(^|[ ,])--[a-z][a-z-]*' | sed 's/^[ ,]//' | sort -u; }
missing() { # MANPAGE CMD...: options CMD --help prints that MANPAGE lacks
	local page=$1; shift
	sed 's/\\-/-/g' "$page" >"$T/page"
	for o in $(options_of "$@"); do grep -qF -- "$o" "$T/page" || echo "$* --help: $o"; done
}
check "shoald.8 has every option of shoald --help" test -z "$(missing "$SRC/docs/man/shoald.8" "$SHOALD")"
verbs=$("$SHOAL" --help | sed -n '/^Verbs:/,/^$/s/^  \([a-z-]*\) .*/\1/p')
check "shoal --help lists verbs" test -n "$verbs"
for v in $verbs; do
	sub=$v
	case $v in
	keyring) sub="keyring create" ;;
	bundle) sub="bundle create" ;;
	release) sub="release create" ;;
	esac
	check "shoal.1 names the verb $v" sh -c "sed 's/\\\\-/-/g' '$SRC/docs/man/shoal.1' | grep -q '^\.SS \"$v'"
	# shellcheck disable=SC2086
	check "shoal $sub --help: every option has a line" sh -c "'$SHOAL' $sub --help | grep -q '^  -'"
	# shellcheck disable=SC2086
	check "shoal.1 has every option of shoal $sub --help" test -z "$(missing "$SRC/docs/man/shoal.1" "$SHOAL" $sub)"
done
for v in "release show" "release verify"; do
	# shellcheck disable=SC2086
	check "shoal.1 has every option of shoal $v --help" test -z "$(missing "$SRC/docs/man/shoal.1" "$SHOAL" $v)"
done
if command -v man >/dev/null && man --help 2>&1 | grep -q -- --warnings; then
	for p in shoal.1 shoal.conf.5 shoald.8; do
		check "man renders $p without warnings" sh -c \
			"MANWIDTH=80 man --warnings -l '$SRC/docs/man/$p' 2>&1 >/dev/null | (! grep .)"
	done
else
	skip "the man pages render without warnings" "man(1) is not installed"
fi

# Packaging: the example configs load; the unit is Type=notify with a
# watchdog and leaves the slots writable.
for f in device gateway; do
	check "packaging/$f.conf passes shoald --check" "$SHOALD" --check -c "$SRC/packaging/$f.conf"
done
U=$SRC/packaging/shoald.service
check "the unit is Type=notify" grep -qx "Type=notify" "$U"
check "the unit sets a watchdog" grep -Eq "^WatchdogSec=[1-9]" "$U"
check "the unit keeps /dev and /var writable (slots, state)" sh -c \
	"! grep -Eq '^(ProtectSystem=strict|PrivateDevices=yes|DevicePolicy=(closed|strict)|ReadOnlyPaths=.*(/dev|/var))' '$U'"
# ProtectSystem=yes|full makes /boot read-only: the bootloader environment lives there
check "the unit keeps /boot writable (bootloader environment)" sh -c \
	"! grep -Eq '^ProtectSystem=(yes|true|full)' '$U' || grep -Eq '^ReadWritePaths=.*-?/boot( |$)' '$U'"
if command -v systemd-analyze >/dev/null; then
	# shoald need not be at /usr/sbin here: point the unit at the built one
	sed "s|^ExecStart=/usr/sbin/shoald|ExecStart=$SHOALD|" "$U" >"$T/shoald.service"
	check "systemd-analyze verify accepts the unit" sh -c \
		"systemd-analyze verify '$T/shoald.service' 2>&1 | grep -v -e 'avahi-daemon.service' -e 'network-online' -e \"Command 'man \" | (! grep .)"
else
	skip "systemd-analyze verify accepts the unit" "systemd-analyze is not installed"
fi
done_testing
