# bench/lib.sh: what compare.sh and remote.sh share (sourced): the output
# folder, the log, installing what is missing (INSTALL=1: allowed).
# shellcheck shell=bash disable=SC2034  # LOGDIR, CSV: read by the scripts that source this

# prepare_out NAME: OUT (default bench/results/DATE-NAME, made absolute),
# LOGDIR and CSV inside it.
prepare_out() {
    [ -n "$OUT" ] || OUT="$ROOT/bench/results/$(date +%Y%m%d-%H%M%S)-$1"
    mkdir -p "$OUT/logs"
    OUT=$(cd "$OUT" && pwd)
    LOGDIR="$OUT/logs"
    CSV="$OUT/results.csv"
}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" | tee -a "$OUT/run.log" >&2; }

APT_UPDATED=0
apt_install() {
    [ "$INSTALL" = 1 ] || return 1
    if [ "$APT_UPDATED" = 0 ]; then
        log "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >>"$LOGDIR/install.log" 2>&1 || true
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >>"$LOGDIR/install.log" 2>&1
}

need_cmd() { # command package
    command -v "$1" >/dev/null 2>&1 || apt_install "$2" || true
    command -v "$1" >/dev/null 2>&1
}

# timed_step TOOL STEP BYTES BASE MERGE CMD...: runs CMD (stdin closed) under
# `timeout STEP_TIMEOUT` and `/usr/bin/time -v -o BASE.time` (peak RSS); its
# stdout goes to BASE.out and stderr to BASE.log, or both to BASE.log when
# MERGE is 1. Appends the row ROUND,tool,step,status,seconds,bytes,rss_kib,
# exit_code to CSV (status ok, failed or timeout), logs it, returns CMD's exit
# status. Wall time is the measure: load from other processes only adds to it.
timed_step() {
    local tool=$1 step=$2 bytes=$3 base=$4 merge=$5
    shift 5
    local rc=0 t0 secs rss status=ok
    t0=$EPOCHREALTIME
    if [ "$merge" = 1 ]; then
        timeout -k 30 "$STEP_TIMEOUT" /usr/bin/time -v -o "$base.time" "$@" >"$base.log" 2>&1 </dev/null || rc=$?
    else
        timeout -k 30 "$STEP_TIMEOUT" /usr/bin/time -v -o "$base.time" "$@" >"$base.out" 2>"$base.log" </dev/null || rc=$?
    fi
    secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.3f", b-a}')
    rss=$(awk -F': ' '/Maximum resident set size/{print $2}' "$base.time" 2>/dev/null || true)
    [ "$rc" = 0 ] || status=failed
    [ "$rc" != 124 ] || status=timeout
    echo "$ROUND,$tool,$step,$status,$secs,$bytes,${rss:-},$rc" >>"$CSV"
    if [ "$rc" = 0 ]; then
        log "  [$ROUND] $tool $step: ${secs}s, peak RSS $(( ${rss:-0} / 1024 )) MiB"
    else
        log "  [$ROUND] $tool $step: ${status^^} (exit $rc) after ${secs}s; last lines of $base.log:"
        tail -5 "$base.log" | sed 's/^/      /' >&2 || true
    fi
    return "$rc"
}
