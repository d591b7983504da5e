# SPDX-License-Identifier: LGPL-2.1-or-later
# Shared by shoal's shipped update modules (dir, file): sourced, never run
# (not executable, so no payload type can name it). Expects $name (the
# module's name) and $work (WORKDIR) to be set.

die() { printf '%s: %s\n' "$name" "$*" >&2; exit 1; }

meta() { # KEY [DEFAULT]
	if [ -f "$work/header/meta/$1" ]; then cat "$work/header/meta/$1"; else printf '%s' "${2-}"; fi
}

# The physical path of an existing directory.
physical() { (cd -P -- "$1" 2>/dev/null && pwd -P); }

allowed_prefixes() {
	conf=${SHOAL_MODULE_CONF_DIR:-/etc/shoal/modules.d}/$name.conf
	if [ -f "$conf" ]; then
		sed -n 's/^[[:space:]]*allow[[:space:]]*=[[:space:]]*//p' "$conf" | sed 's/[[:space:]]*$//'
	fi
	if [ -n "${SHOAL_MODULE_ALLOW-}" ]; then
		printf '%s\n' "$SHOAL_MODULE_ALLOW" | tr ':' '\n'
	fi
}

# Sets $dest from the metadata key dest, or fails saying why: absolute, no
# '.', '..' or empty component, its parent an existing directory, and under
# an allowed prefix both as written and as resolved through symlinks.
check_dest() {
	dest=$(meta dest)
	[ -n "$dest" ] || die "the release has no 'dest' metadata (shoal release create --meta dest=/path)"
	case $dest in
	/*) ;;
	*) die "dest '$dest' is not an absolute path" ;;
	esac
	dest=${dest%/}
	[ -n "$dest" ] || die "dest may not be /"
	case $dest/ in
	*/./* | */../* | *//*) die "dest '$dest' has a '.', '..' or empty component" ;;
	esac
	parent=${dest%/*}
	[ -n "$parent" ] || parent=/
	[ -d "$parent" ] || die "dest '$dest': its parent $parent is not a directory"
	real=$(physical "$parent")/${dest##*/}
	ok=
	while IFS= read -r p; do
		p=${p%/}
		[ -n "$p" ] || continue
		case $dest in
		"$p"/?*) ;;
		*) continue ;;
		esac
		# and where it really is, through any symlink on the way
		rp=$(physical "$p") || continue
		case $real in
		"$rp"/?*) ok=1 && break ;;
		esac
	done <<PREFIXES
$(allowed_prefixes)
PREFIXES
	[ -n "$ok" ] || die "dest '$dest' is not under an allowed prefix (allow = ... in ${SHOAL_MODULE_CONF_DIR:-/etc/shoal/modules.d}/$name.conf)"
}

