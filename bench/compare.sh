#!/usr/bin/env bash
# bench/compare.sh: repo against restic, borg, rustic and bupstash on the
# same deterministic corpus, on a RAM-backed file system, in one run.
#
#   bench/compare.sh [--size SMALL|FULL] [--tools repo,restic,borg,rustic,bupstash]
#                    [--install-extra] [--no-install] [--repo-bin PATH]
#                    [--repeat N] [--out DIR] [--tmpfs-size SIZE] [--step-timeout SECS]
#
# SMALL: ~200 MiB mixed corpus + 20,000 small files, 1 round (a few minutes).
# FULL:  ~1 GiB mixed corpus + 100,000 small files, 3 rounds (the default).
# Each round runs the ceilings and every tool once, tools interleaved; the
# table shows each step's fastest round (noise from other load only adds time).
#
# Needs root (mount, apt-get). Without --tools, every tool that is installed
# (or installable with apt-get: restic, borgbackup) is compared; rustic and
# bupstash are compiled with `cargo install` only with --install-extra.
# Results: a table on stdout and, in --out (default bench/results/DATE-SIZE),
# results.csv, results.json, table.md, meta.json and per-step logs.
#
# bench/compare.sh --remote s3|ftp|rest --rtt MS [...]: repo, restic and rustic
# against a delayed S3 or FTP server instead (bench/remote.sh, which see).
# shellcheck disable=SC2016,SC2054  # sh -c '...$1' and borg's zstd,3 are intended
set -euo pipefail

for arg in "$@"; do
    case "$arg" in --remote|--remote=*) exec "$(dirname "${BASH_SOURCE[0]}")/remote.sh" "$@" ;; esac
done

SIZE=FULL
TOOLS=""
INSTALL=1
INSTALL_EXTRA=0
REPO_BIN=""
OUT=""
TMPFS_SIZE=""
STEP_TIMEOUT=3600
REPEAT=""
PASSWORD="bench-password-123"

usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --size) SIZE=$(echo "$2" | tr '[:lower:]' '[:upper:]'); shift 2 ;;
        --size=*) SIZE=$(echo "${1#*=}" | tr '[:lower:]' '[:upper:]'); shift ;;
        --tools) TOOLS=$2; shift 2 ;;
        --tools=*) TOOLS=${1#*=}; shift ;;
        --install-extra) INSTALL_EXTRA=1; shift ;;
        --no-install) INSTALL=0; shift ;;
        --repo-bin) REPO_BIN=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --tmpfs-size) TMPFS_SIZE=$2; shift 2 ;;
        --step-timeout) STEP_TIMEOUT=$2; shift 2 ;;
        --repeat) REPEAT=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
done

case "$SIZE" in
    FULL) CORPUS_MIB=1024; SMALL_FILES=100000; : "${TMPFS_SIZE:=12g}" "${REPEAT:=3}" ;;
    SMALL) CORPUS_MIB=200; SMALL_FILES=20000; : "${TMPFS_SIZE:=4g}" "${REPEAT:=1}" ;;
    *) echo "--size must be SMALL or FULL" >&2; exit 2 ;;
esac

ALL_TOOLS="repo restic borg rustic bupstash"
for t in ${TOOLS//,/ }; do
    case " $ALL_TOOLS " in *" $t "*) ;; *) echo "unknown tool: $t (known: $ALL_TOOLS)" >&2; exit 2 ;; esac
done

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
export PATH="$HOME/.cargo/bin:$PATH"
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
prepare_out "$SIZE"

if [ "$(id -u)" != 0 ]; then
    echo "compare.sh needs root (tmpfs mount, apt-get)" >&2
    exit 2
fi

# ---------------------------------------------------------------- installs
[ -x /usr/bin/time ] || apt_install time || { echo "GNU time (/usr/bin/time) is required" >&2; exit 1; }
need_cmd python3 python3 || { echo "python3 is required" >&2; exit 1; }
need_cmd rsync rsync || true
need_cmd zstd zstd || true
need_cmd b3sum b3sum || true

EXTRA_STATUS=""
if [ "$INSTALL_EXTRA" = 1 ]; then
    command -v pkg-config >/dev/null && [ -f /usr/include/sodium.h ] || apt_install libsodium-dev pkg-config || true
    for crate in rustic-rs bupstash; do
        bin=${crate%-rs}
        if command -v "$bin" >/dev/null 2>&1; then
            EXTRA_STATUS+="$crate: already installed; "
            continue
        fi
        log "cargo install --locked $crate (slow; niced)"
        t0=$EPOCHREALTIME
        if nice -n 19 cargo install --locked "$crate" >"$LOGDIR/install-$crate.log" 2>&1; then
            EXTRA_STATUS+="$crate: installed in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%d", b-a}') s; "
        else
            EXTRA_STATUS+="$crate: cargo install FAILED (see logs/install-$crate.log); "
            log "cargo install $crate failed; see $LOGDIR/install-$crate.log"
        fi
    done
fi

if [ -z "$TOOLS" ]; then
    TOOLS="repo restic borg"
    command -v rustic >/dev/null 2>&1 && TOOLS+=" rustic"
    command -v bupstash >/dev/null 2>&1 && TOOLS+=" bupstash"
else
    TOOLS=$(echo "$TOOLS" | tr ',' ' ')
fi
case " $TOOLS " in *" restic "*) need_cmd restic restic || true ;; esac
case " $TOOLS " in *" borg "*) need_cmd borg borgbackup || true ;; esac

if [ -z "$REPO_BIN" ]; then
    log "cargo build --release --locked"
    (cd "$ROOT" && cargo build --release --locked >"$LOGDIR/build.log" 2>&1) || {
        echo "cargo build --release --locked failed; see $LOGDIR/build.log" >&2
        tail -20 "$LOGDIR/build.log" >&2
        exit 1
    }
    REPO_BIN="$ROOT/target/release/repo"
fi
REPO_BIN=$(readlink -f "$REPO_BIN")
# Copy the binary so other builds cannot replace it mid-run.
STABLE_BIN_DIR=$(mktemp -d /tmp/repo-bench-bin.XXXXXX)
cp "$REPO_BIN" "$STABLE_BIN_DIR/repo"
REPO_BIN="$STABLE_BIN_DIR/repo"

# ------------------------------------------------------------------ tmpfs
MNT=$(mktemp -d /tmp/repo-bench-tmpfs.XXXXXX)
cleanup() {
    set +e
    cd /
    if mountpoint -q "$MNT"; then umount "$MNT" || umount -l "$MNT"; fi
    rmdir "$MNT" 2>/dev/null
    rm -rf "$STABLE_BIN_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mount -t tmpfs -o "size=$TMPFS_SIZE,mode=0755" tmpfs "$MNT"
log "tmpfs of $TMPFS_SIZE mounted at $MNT (all corpora, repositories, caches and restores live there)"
# In a VM the first touch of guest memory is slow (the host faults it in):
# whichever step first fills fresh pages would pay for it. Touch enough
# memory once, up front, so every tool writes into already-backed pages.
PREFAULT_MIB=$(( CORPUS_MIB * 6 ))
log "pre-faulting $PREFAULT_MIB MiB of memory through the tmpfs"
head -c "${PREFAULT_MIB}M" /dev/zero >"$MNT/prefault" || true
rm -f "$MNT/prefault"

DATA="$MNT/data"
CORPUS="$DATA/corpus"
SMALLTREE="$DATA/small"
PRISTINE="$MNT/pristine/corpus"
mkdir -p "$DATA" "$MNT/pristine"

sum_bytes() { find "$1" -type f -printf '%s\n' | awk '{s+=$1} END{printf "%d", s}'; }
count_files() { find "$1" -type f | wc -l; }
dir_bytes() { du -sb "$1" 2>/dev/null | cut -f1; }

log "generating mixed corpus (~$CORPUS_MIB MiB) and $SMALL_FILES small files"
python3 "$HERE/corpus.py" mixed "$PRISTINE" --mib "$CORPUS_MIB" >"$OUT/corpus-mixed.json"
python3 "$HERE/corpus.py" small "$SMALLTREE" --files "$SMALL_FILES" >"$OUT/corpus-small.json"
CORPUS_BYTES=$(sum_bytes "$PRISTINE")
CORPUS_FILES=$(count_files "$PRISTINE")
SMALL_BYTES=$(sum_bytes "$SMALLTREE")
# The mutated corpus is the same for every tool (seeded); measure it once.
cp -a "$PRISTINE" "$MNT/mutated-probe"
python3 "$HERE/corpus.py" mutate "$MNT/mutated-probe" >"$OUT/corpus-mutation.json"
MUTATED_BYTES=$(sum_bytes "$MNT/mutated-probe")
rm -rf "$MNT/mutated-probe"
log "mixed corpus: $CORPUS_FILES files, $CORPUS_BYTES bytes; after mutation $MUTATED_BYTES bytes; small tree: $SMALL_BYTES bytes"

echo "round,tool,step,status,seconds,bytes,rss_kib,exit_code" >"$CSV"
ROUND=1

# run_step TOOL STEP BYTES CMD...: times CMD (wall clock) with /usr/bin/time -v
# for peak RSS, appends one CSV row; returns CMD's exit status.
run_step() {
    local tool=$1 step=$2 bytes=$3
    shift 3
    timed_step "$tool" "$step" "$bytes" "$LOGDIR/$ROUND.$tool.$step" 1 "$@"
}

record() { # TOOL STEP STATUS BYTES
    echo "$ROUND,$1,$2,$3,,${4:-},," >>"$CSV"
}

# ------------------------------------------------------ per-tool commands
# cmd TOOL OP REPODIR [ARG] sets CMD=(...). OP: init backup restore check.
BORG_N=0
BUPSTASH_LAST=""
cmd() {
    local tool=$1 op=$2 r=$3 a=${4:-}
    case "$tool:$op" in
        repo:init) CMD=("$REPO_BIN" init -r "$r" -q) ;;
        repo:backup) CMD=("$REPO_BIN" create -r "$r" "$a" -q --json) ;; # summary kept in the log
        repo:restore) CMD=("$REPO_BIN" restore -r "$r" latest --target "$a" -q) ;;
        repo:check) CMD=("$REPO_BIN" check -r "$r" --read-data -q) ;;

        restic:init) CMD=(restic -r "$r" init --repository-version 2 -q) ;;
        restic:backup) CMD=(restic -r "$r" backup --compression auto -q "$a") ;;
        restic:restore) CMD=(restic -r "$r" restore latest --target "$a" -q) ;;
        restic:check) CMD=(restic -r "$r" check --read-data -q) ;;

        borg:init) BORG_N=0; CMD=(borg init -e repokey-blake2 "$r") ;;
        borg:backup) BORG_N=$((BORG_N + 1)); CMD=(borg create --compression zstd,3 "$r::a$BORG_N" "$a") ;;
        borg:restore) CMD=(env -C "$a" borg extract "$r::a$BORG_N") ;;
        borg:check) CMD=(borg check --verify-data "$r") ;;

        rustic:init) CMD=(rustic -r "$r" --no-progress init --set-compression 3) ;;
        rustic:backup) CMD=(rustic -r "$r" --no-progress backup "$a") ;;
        rustic:restore) CMD=(rustic -r "$r" --no-progress restore latest "$a") ;;
        rustic:check) CMD=(rustic -r "$r" --no-progress check --read-data) ;;

        # bupstash: the send log (stat cache) is what makes unchanged runs cheap.
        bupstash:init) CMD=(bupstash init --repository "$r") ;;
        bupstash:backup) CMD=(bupstash put --repository "$r" --compression zstd:3 --send-log "$CACHE/sendlog" "$a") ;;
        bupstash:restore) CMD=(bupstash restore --repository "$r" --into "$a" "id=$BUPSTASH_LAST") ;;
        # No read-everything check: fetching and verifying every chunk of the
        # latest snapshot is the closest equivalent.
        bupstash:check) CMD=(bupstash get --repository "$r" "id=$BUPSTASH_LAST") ;;
    esac
}

tool_available() {
    case "$1" in
        repo) [ -x "$REPO_BIN" ] ;;
        *) command -v "$1" >/dev/null 2>&1 ;;
    esac
}

tool_version() {
    case "$1" in
        repo) "$REPO_BIN" --version 2>/dev/null | head -1 ;;
        restic) restic version 2>/dev/null | head -1 ;;
        borg) borg --version 2>/dev/null | head -1 ;;
        rustic) rustic --version 2>/dev/null | head -1 ;;
        bupstash) bupstash version 2>/dev/null | head -1 ;;
    esac
}

tool_env() { # sets passwords and puts every cache on the tmpfs
    CACHE="$MNT/cache/$1"
    mkdir -p "$CACHE"
    export REPO_PASSWORD="$PASSWORD"
    export RESTIC_PASSWORD="$PASSWORD" RESTIC_CACHE_DIR="$CACHE/restic"
    export BORG_PASSPHRASE="$PASSWORD" BORG_DISPLAY_PASSPHRASE=no
    export BORG_BASE_DIR="$CACHE/borg" BORG_CACHE_DIR="$CACHE/borg/cache"
    export BORG_CONFIG_DIR="$CACHE/borg/config" BORG_SECURITY_DIR="$CACHE/borg/security"
    export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
    export RUSTIC_PASSWORD="$PASSWORD" RUSTIC_CACHE_DIR="$CACHE/rustic"
    export XDG_CACHE_HOME="$CACHE/xdg" XDG_CONFIG_HOME="$CACHE/xdg-config"
    export BUPSTASH_KEY="$CACHE/bupstash.key"
    if [ "$1" = bupstash ] && [ ! -f "$BUPSTASH_KEY" ]; then
        bupstash new-key -o "$BUPSTASH_KEY" >/dev/null
    fi
}

# backup_step TOOL STEP REPO PATH BYTES: also remembers bupstash's item id.
backup_step() {
    local tool=$1 step=$2 r=$3 p=$4 bytes=$5
    cmd "$tool" backup "$r" "$p"
    run_step "$tool" "$step" "$bytes" "${CMD[@]}" || return 1
    if [ "$tool" = bupstash ]; then
        BUPSTASH_LAST=$(grep -Eo '[0-9a-f]{32}' "$LOGDIR/$ROUND.$tool.$step.log" | tail -1)
    fi
}

# keyfile_step STEP REPO PATH BYTES: the same unchanged backup once more,
# opened with a raw key file (`repo key export`): no argon2id unlock, as
# bupstash's key files. Recorded as the pseudo-tool repo-keyfile.
keyfile_step() {
    local step=$1 r=$2 p=$3 bytes=$4 kf="$CACHE/repo.key"
    rm -f "$kf"
    "$REPO_BIN" key export -r "$r" "$kf" -q >/dev/null || return 1
    run_step repo-keyfile "$step" "$bytes" \
        env -u REPO_PASSWORD REPO_KEY_FILE="$kf" "$REPO_BIN" create -r "$r" "$p" -q --json
}

LOADS="$OUT/loads.txt"
: >"$LOADS"
load_note() { echo "$ROUND:$1 $(cut -d' ' -f1-3 /proc/loadavg)" >>"$LOADS"; }

bench_tool() {
    local t=$1
    local R="$MNT/repos/$t" RS="$MNT/repos/$t-small" RESTORE="$MNT/restore"
    log "== round $ROUND/$REPEAT, $t: $(tool_version "$t")"
    load_note "$t-start"
    tool_env "$t"
    rm -rf "$CORPUS" "$R" "$RS" "$RESTORE"
    cp -a "$PRISTINE" "$CORPUS"
    sleep 2 # let timestamps age: some tools distrust files modified "just now"

    cmd "$t" init "$R"
    if ! run_step "$t" init 0 "${CMD[@]}"; then
        for s in backup1 backup2_unchanged backup3_mutated restore check_read_data; do record "$t" "$s" skipped; done
    else
        backup_step "$t" backup1 "$R" "$CORPUS" "$CORPUS_BYTES" || true
        local size1 size3
        size1=$(dir_bytes "$R")
        record "$t" repo_size_after_backup1 ok "$size1"
        backup_step "$t" backup2_unchanged "$R" "$CORPUS" "$CORPUS_BYTES" || true
        [ "$t" != repo ] || keyfile_step backup2_unchanged "$R" "$CORPUS" "$CORPUS_BYTES" || true
        python3 "$HERE/corpus.py" mutate "$CORPUS" >/dev/null
        backup_step "$t" backup3_mutated "$R" "$CORPUS" "$MUTATED_BYTES" || true
        size3=$(dir_bytes "$R")
        record "$t" repo_growth_after_mutation ok "$((size3 - size1))"
        mkdir -p "$RESTORE"
        cmd "$t" restore "$R" "$RESTORE"
        if run_step "$t" restore "$MUTATED_BYTES" "${CMD[@]}"; then
            local got="$RESTORE$CORPUS"
            [ -d "$got" ] || got="$RESTORE"
            if diff -r --no-dereference "$CORPUS" "$got" >"$LOGDIR/$ROUND.$t.restore.diff" 2>&1; then
                record "$t" restore_verify ok
            else
                record "$t" restore_verify mismatch
                log "  $t restore differs from the source; see $LOGDIR/$ROUND.$t.restore.diff"
            fi
        fi
        rm -rf "$RESTORE"
        if [ "$t" = bupstash ]; then
            # bupstash get writes a tar stream; discard it but keep its exit status.
            run_step "$t" check_read_data "$(dir_bytes "$R")" \
                sh -c 'bupstash get --repository "$1" "id=$2" >/dev/null' sh "$R" "$BUPSTASH_LAST" || true
        else
            cmd "$t" check "$R"
            run_step "$t" check_read_data "$(dir_bytes "$R")" "${CMD[@]}" || true
        fi
    fi
    rm -rf "$R"

    cmd "$t" init "$RS"
    if run_step "$t" small_init 0 "${CMD[@]}"; then
        backup_step "$t" small_backup1 "$RS" "$SMALLTREE" "$SMALL_BYTES" || true
        record "$t" small_repo_size ok "$(dir_bytes "$RS")"
        backup_step "$t" small_backup2_unchanged "$RS" "$SMALLTREE" "$SMALL_BYTES" || true
        [ "$t" != repo ] || keyfile_step small_backup2_unchanged "$RS" "$SMALLTREE" "$SMALL_BYTES" || true
    else
        record "$t" small_backup1 skipped
        record "$t" small_backup2_unchanged skipped
    fi
    rm -rf "$RS" "$CORPUS" "$MNT/cache/$t"
    load_note "$t-end"
}

# ------------------------------------------------------------- ceilings
ceiling() {
    log "== round $ROUND/$REPEAT, machine ceilings ($(nproc) cores)"
    load_note ceiling-start
    cp -a "$PRISTINE" "$CORPUS"
    if command -v zstd >/dev/null; then
        run_step ceiling zstd3_T2_corpus "$CORPUS_BYTES" \
            sh -c 'tar -C "$1" -cf - . | zstd -3 -T2 -q -c >/dev/null' sh "$CORPUS" || true
    else
        record ceiling zstd3_T2_corpus "n/a"
    fi
    if command -v b3sum >/dev/null; then
        run_step ceiling b3sum_corpus "$CORPUS_BYTES" \
            sh -c 'cd "$1" && find . -type f -print0 | xargs -0 b3sum >/dev/null' sh "$CORPUS" || true
    else
        record ceiling b3sum_corpus "n/a"
    fi
    run_step ceiling cp_a_corpus "$CORPUS_BYTES" cp -a "$CORPUS" "$MNT/copy" || true
    rm -rf "$MNT/copy"
    if command -v rsync >/dev/null; then
        run_step ceiling rsync_a_corpus "$CORPUS_BYTES" rsync -a "$CORPUS/" "$MNT/copy/" || true
        run_step ceiling rsync_a_corpus_rerun "$CORPUS_BYTES" rsync -a "$CORPUS/" "$MNT/copy/" || true
        rm -rf "$MNT/copy"
    fi
    run_step ceiling cp_a_small "$SMALL_BYTES" cp -a "$SMALLTREE" "$MNT/copy" || true
    rm -rf "$MNT/copy"
    if command -v rsync >/dev/null; then
        run_step ceiling rsync_a_small "$SMALL_BYTES" rsync -a "$SMALLTREE/" "$MNT/copy/" || true
        run_step ceiling rsync_a_small_rerun "$SMALL_BYTES" rsync -a "$SMALLTREE/" "$MNT/copy/" || true
        rm -rf "$MNT/copy"
    fi
    rm -rf "$CORPUS"
    load_note ceiling-end
}

# ------------------------------------------------------------------ meta
REPO_SOURCE=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null | awk '{print $2}' | tr '\n' ' ' || true)
if [ -n "$DIRTY" ]; then
    REPO_SOURCE+=" + uncommitted changes in ${DIRTY% }"
fi
VERSIONS=""
for t in $ALL_TOOLS; do
    v=$(tool_available "$t" && tool_version "$t" || echo "not installed")
    VERSIONS+="$t=$v"$'\n'
done
M_DATE=$(date -Iseconds) M_SIZE=$SIZE M_NPROC=$(nproc) \
M_CPU=$(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo) \
M_MEM=$(awk '/MemTotal/{print $2}' /proc/meminfo) M_KERNEL=$(uname -r) \
M_FS="tmpfs size=$TMPFS_SIZE mounted at $MNT" \
M_CORPUS_BYTES=$CORPUS_BYTES M_CORPUS_FILES=$CORPUS_FILES M_MUTATED_BYTES=$MUTATED_BYTES \
M_SMALL_FILES=$SMALL_FILES M_SMALL_BYTES=$SMALL_BYTES M_EXTRA=$EXTRA_STATUS M_REPEAT=$REPEAT \
M_SOURCE=$REPO_SOURCE M_VERSIONS=$VERSIONS M_TOOLS=${TOOLS/repo/repo repo-keyfile} \
python3 - >"$OUT/meta.json" <<'PY'
import json, os
e = os.environ
i = lambda k: int(e[k])
print(json.dumps({
    "date": e["M_DATE"], "size": e["M_SIZE"], "nproc": i("M_NPROC"), "cpu": e["M_CPU"],
    "mem_total_kib": i("M_MEM"), "kernel": e["M_KERNEL"], "filesystem": e["M_FS"],
    "corpus_bytes": i("M_CORPUS_BYTES"), "corpus_files": i("M_CORPUS_FILES"),
    "mutated_bytes": i("M_MUTATED_BYTES"), "small_files": i("M_SMALL_FILES"),
    "small_bytes": i("M_SMALL_BYTES"), "extra_install": e["M_EXTRA"], "repeat": i("M_REPEAT"),
    "repo_source": e["M_SOURCE"],
    "versions": dict(l.split("=", 1) for l in e["M_VERSIONS"].splitlines() if "=" in l),
    "tools": e["M_TOOLS"],
}, indent=1))
PY

for ROUND in $(seq 1 "$REPEAT"); do
    ceiling
    for t in $TOOLS; do
        if tool_available "$t"; then
            bench_tool "$t" || log "$t: unexpected error in the harness; continuing"
        else
            log "== $t: not installed; recorded as n/a"
            for s in init backup1 backup2_unchanged backup3_mutated restore check_read_data small_backup1 small_backup2_unchanged; do
                record "$t" "$s" "not installed"
            done
        fi
    done
done

python3 "$HERE/report.py" "$OUT" | tee "$OUT/table.txt"
log "results in $OUT (results.csv, results.json, table.md, logs/)"
