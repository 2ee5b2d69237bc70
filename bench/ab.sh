#!/usr/bin/env bash
# bench/ab.sh: two builds of repo side by side, interleaved, on one corpus.
#
#   bench/ab.sh OLD_BIN NEW_BIN [--rounds N] [--mib MIB] [--files N] [--dir DIR]
#
# For "no step got slower" after a change that should not alter speed
# (compare.sh compares tools; this compares two commits of one tool). Each
# round runs every step with OLD then NEW (alternating which goes first), on a
# corpus from bench/corpus.py (and a mutated copy of it for the changed
# backup and diff) in DIR (default /dev/shm, so the disk is not
# measured). Prints, per step, the best wall time and the median CPU time
# (user + system) of each binary: load from other processes only adds wall
# time, CPU time is the steadier figure.
set -euo pipefail
OLD=$1 NEW=$2; shift 2
ROUNDS=5 MIB=300 FILES=30000 DIR=/dev/shm
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS=$2; shift 2 ;;
        --mib) MIB=$2; shift 2 ;;
        --files) FILES=$2; shift 2 ;;
        --dir) DIR=$2; shift 2 ;;
        *) echo "unknown option: $1" >&2; exit 2 ;;
    esac
done
for tool in jq rsync bc /usr/bin/time python3; do
    command -v "$tool" >/dev/null || { echo "bench/ab.sh needs $tool: apt-get install jq rsync bc time python3" >&2; exit 2; }
done
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "$DIR/repo-ab.XXXXXX")
trap 'rm -rf "$work"' EXIT
python3 "$here/corpus.py" mixed "$work/base/mixed" --mib "$MIB" >/dev/null
python3 "$here/corpus.py" small "$work/base/small" --files "$FILES" >/dev/null
cp -a "$work/base" "$work/mutated"
python3 "$here/corpus.py" mutate "$work/mutated" >/dev/null
export REPO_PASSWORD=bench-password-123
results=$work/results.tsv
: >"$results"

# step NAME BIN ARGS...: run once, record wall and CPU seconds.
step() {
    local name=$1 which=$2; shift 2
    local t0 t1 cpu rc=0
    t0=$(date +%s.%N)
    /usr/bin/time -f '%U %S' -o "$work/cpu" "$@" >/dev/null 2>"$work/err" || rc=$?
    t1=$(date +%s.%N)
    [ "$rc" -eq 0 ] || { echo "$name ($which) exited $rc:" >&2; tail -3 "$work/err" >&2; }
    cpu=$(tail -1 "$work/cpu" | awk '{print $1 + $2}')
    echo -e "$name\t$which\t$(echo "$t1 - $t0" | bc)\t$cpu" >>"$results"
}

round() {
    local which=$1 bin=$2 r="$work/repo-$1"
    rm -rf "$r" "$work/restore" "$work/src"
    cp -a "$work/base" "$work/src"
    step init "$which" "$bin" init -r "$r" -q
    step "first backup" "$which" "$bin" create -r "$r" -q "$work/src"
    step "unchanged backup" "$which" "$bin" create -r "$r" -q "$work/src"
    local first
    first=$("$bin" snapshots -r "$r" --json | jq -r '.[0].id')
    rsync -a --delete "$work/mutated/" "$work/src/"
    step "changed backup" "$which" "$bin" create -r "$r" -q "$work/src"
    step snapshots "$which" "$bin" snapshots -r "$r"
    step "ls latest" "$which" "$bin" ls -r "$r" latest
    step "find" "$which" "$bin" find -r "$r" '*/small/**/*1*'
    step "diff" "$which" "$bin" diff -r "$r" "$first" latest
    step restore "$which" "$bin" restore -r "$r" latest --target "$work/restore" -q
    step check "$which" "$bin" check -r "$r" -q
    step "check --read-data" "$which" "$bin" check -r "$r" --read-data -q
    step "forget+prune" "$which" "$bin" forget -r "$r" --keep-last 1 --prune -q
}

for i in $(seq 1 "$ROUNDS"); do
    if [ $((i % 2)) -eq 1 ]; then round old "$OLD"; round new "$NEW"; else round new "$NEW"; round old "$OLD"; fi
    echo "round $i done" >&2
done

python3 - "$results" <<'PY'
import sys, statistics, collections
rows = [l.rstrip('\n').split('\t') for l in open(sys.argv[1]) if l.strip()]
wall = collections.defaultdict(list); cpu = collections.defaultdict(list); order = []
for name, which, w, c in rows:
    if name not in order: order.append(name)
    wall[(name, which)].append(float(w)); cpu[(name, which)].append(float(c or 0))
print("| step | wall, best (old / new) | CPU, median (old / new) |")
print("|---|---|---|")
for n in order:
    print(f"| {n} | {min(wall[(n,'old')]):.2f} s / {min(wall[(n,'new')]):.2f} s | "
          f"{statistics.median(cpu[(n,'old')]):.2f} s / {statistics.median(cpu[(n,'new')]):.2f} s |")
PY
