#!/usr/bin/env bash
# `make demo` as a new user runs it: clone the repository into a fresh temporary folder, run
# `make demo` there N times on an idle machine, then N times beside two busy CPU loops, and print
# the pass count. The clone's first `make demo` builds its own venv (needs pip's cache or the
# network). Root (the twin). Kills only the loops it started, by PID; removes the clone.
#
#   scripts/fresh-clone-demo.sh [N]          (default 3; CORDON_REPO=path to clone another repo)
set -euo pipefail

N="${1:-3}"
REPO="${CORDON_REPO:-$(cd "$(dirname "$0")/.." && pwd)}"
BRANCH="$(git -C "$REPO" rev-parse --abbrev-ref HEAD)"
WORK="$(mktemp -d /tmp/cordon-fresh-XXXXXX)"
LOOPS=()

cleanup() {
	for pid in "${LOOPS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	LOOPS=()
	rm -rf "$WORK"
}
trap cleanup EXIT

git clone --quiet --branch "$BRANCH" "$REPO" "$WORK/cordon"
echo "fresh clone of $REPO ($BRANCH, $(git -C "$WORK/cordon" rev-parse --short HEAD)) in $WORK/cordon"

run_demos() { # $1: label; prints the number that passed
	local label="$1" passed=0 i start rc
	for i in $(seq 1 "$N"); do
		start=$(date +%s)
		rc=0
		make -C "$WORK/cordon" demo >"$WORK/demo-$label-$i.log" 2>&1 || rc=$?
		if [ "$rc" -eq 0 ]; then
			passed=$((passed + 1))
			echo "  $label run $i: passed in $(($(date +%s) - start)) s" >&2
		else
			echo "  $label run $i: FAILED (exit $rc) in $(($(date +%s) - start)) s; its last lines:" >&2
			tail -n 15 "$WORK/demo-$label-$i.log" | sed 's/^/    /' >&2
		fi
	done
	echo "$passed"
}

idle=$(run_demos idle)
for _ in 1 2; do
	python3 -c 'while True: pass' &
	LOOPS+=("$!")
done
busy=$(run_demos busy)
cleanup
trap - EXIT
echo "make demo on a fresh clone: $idle/$N passed idle, $busy/$N passed with 2 busy CPU loops"
[ "$idle" -eq "$N" ] && [ "$busy" -eq "$N" ]
