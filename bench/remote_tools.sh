# bench/remote_tools.sh: how bench/remote.sh runs each tool against the
# remote server (sourced; uses KIND, MNT, SRC, ONE_FILE, FIND_PATTERN,
# PASSWORD, ENDPOINT, REST_ENDPOINT, BUCKET, S3_KEY, S3_SECRET, FTP_PORT, FTP_USER,
# FTP_PASS, REPO_BIN). Sets CMD=(...) for a step; caches live under
# CACHE_ROOT, which read_step removes for the cold-cache run.
# shellcheck shell=bash disable=SC2034  # CMD and the SNAPs are read by remote.sh

RESTORE="$MNT/restore"

tool_available() {
    case "$1" in
        repo) [ -x "$REPO_BIN" ] ;;
        restic) command -v restic >/dev/null 2>&1 && { [ "$KIND" = s3 ] || command -v rclone >/dev/null 2>&1; } ;;
        rustic) command -v rustic >/dev/null 2>&1 ;;
    esac
}

tool_version() {
    case "$1" in
        repo) "$REPO_BIN" --version 2>/dev/null | head -1 ;;
        restic)
            restic version 2>/dev/null | head -1
            [ "$KIND" != ftp ] || echo " through $(rclone version 2>/dev/null | head -1)" ;;
        rustic) rustic --version 2>/dev/null | head -1 ;;
    esac
}

# tool_env TOOL: password, cache directories and the repository location.
tool_env() {
    local t=$1
    CACHE_ROOT="$MNT/cache/$t"
    CONF="$MNT/conf/$t"
    rm -rf "$CACHE_ROOT" "$CONF"
    mkdir -p "$CACHE_ROOT" "$CONF"
    export REPO_PASSWORD="$PASSWORD" RESTIC_PASSWORD="$PASSWORD" RUSTIC_PASSWORD="$PASSWORD"
    # repo (issue 14): REPO_CACHE_DIR, else $XDG_CACHE_HOME/repo; both are below CACHE_ROOT.
    export REPO_CACHE_DIR="$CACHE_ROOT/repo" XDG_CACHE_HOME="$CACHE_ROOT/xdg"
    export RESTIC_CACHE_DIR="$CACHE_ROOT/restic" RUSTIC_CACHE_DIR="$CACHE_ROOT/rustic"
    export XDG_CONFIG_HOME="$CONF/xdg-config"
    if [ "$KIND" = s3 ]; then
        LOC_REPO="s3://$BUCKET/repo"
        LOC_RESTIC="s3:$ENDPOINT/$BUCKET/restic"
        cat >"$CONF/rustic.toml" <<EOF
[repository]
repository = "opendal:s3"
[repository.options]
endpoint = "$ENDPOINT"
bucket = "$BUCKET"
root = "/rustic"
region = "us-east-1"
access_key_id = "$S3_KEY"
secret_access_key = "$S3_SECRET"
EOF
    elif [ "$KIND" = rest ]; then
        LOC_REPO="rest:$REST_ENDPOINT/repo/"
        LOC_RESTIC="rest:$REST_ENDPOINT/restic/"
        cat >"$CONF/rustic.toml" <<EOF
[repository]
repository = "rest:$REST_ENDPOINT/rustic/"
EOF
    else
        LOC_REPO="ftp://$FTP_USER:$FTP_PASS@127.0.0.1:$FTP_PORT/repo"
        # restic reaches FTP through `rclone serve restic --stdio` (its rclone: backend).
        LOC_RESTIC="rclone:benchftp:restic"
        export RCLONE_CONFIG_BENCHFTP_TYPE=ftp RCLONE_CONFIG_BENCHFTP_HOST=127.0.0.1
        export RCLONE_CONFIG_BENCHFTP_PORT="$FTP_PORT" RCLONE_CONFIG_BENCHFTP_USER="$FTP_USER"
        RCLONE_CONFIG_BENCHFTP_PASS=$(rclone obscure "$FTP_PASS" 2>/dev/null || true)
        export RCLONE_CONFIG_BENCHFTP_PASS RCLONE_CONFIG="$CONF/rclone.conf"
        : >"$RCLONE_CONFIG"
        cat >"$CONF/rustic.toml" <<EOF
[repository]
repository = "opendal:ftp"
[repository.options]
endpoint = "ftp://127.0.0.1:$FTP_PORT"
user = "$FTP_USER"
password = "$FTP_PASS"
root = "/rustic"
EOF
    fi
    mkdir -p "$CACHE_ROOT"
}

# tool_cmd TOOL STEP: sets CMD. Steps: init backup snapshots ls find diff
# (first and second snapshot: the unchanged backup, identical trees)
# diff_changed (second and third: the change) restore_one restore_full check
# check_read_data.
tool_cmd() {
    local t=$1 s=$2 a=${SNAP1:-latest} b=${SNAP2:-latest}
    [ "$s" != diff_changed ] || { a=${SNAP2:-latest}; b=${SNAP3:-latest}; s="diff"; }
    mkdir -p "$RESTORE"
    case "$t" in
        repo)
            local r=("$REPO_BIN" -r "$LOC_REPO")
            case "$s" in
                init) CMD=("${r[@]}" init --json) ;;
                backup) CMD=("${r[@]}" create "$SRC" -q --json) ;;
                snapshots) CMD=("${r[@]}" snapshots --json) ;;
                ls) CMD=("${r[@]}" ls latest --json) ;;
                find) CMD=("${r[@]}" find "$FIND_PATTERN" --json) ;;
                diff) CMD=("${r[@]}" diff "$a" "$b" --json) ;;
                restore_one) CMD=("${r[@]}" restore "latest:$SRC/$ONE_FILE" --target "$RESTORE" -q --json) ;;
                restore_full) CMD=("${r[@]}" restore latest --target "$RESTORE" -q --json) ;;
                check) CMD=("${r[@]}" check --json) ;;
                check_read_data) CMD=("${r[@]}" check --read-data --json) ;;
            esac ;;
        restic)
            local r=(restic -r "$LOC_RESTIC")
            case "$s" in
                init) CMD=("${r[@]}" init --repository-version 2 -q) ;;
                backup) CMD=("${r[@]}" backup --compression auto -q "$SRC") ;;
                snapshots) CMD=("${r[@]}" snapshots) ;;
                ls) CMD=("${r[@]}" ls latest) ;;
                find) CMD=("${r[@]}" find "$FIND_PATTERN") ;;
                diff) CMD=("${r[@]}" diff "$a" "$b") ;;
                restore_one) CMD=("${r[@]}" restore latest --target "$RESTORE" --include "$SRC/$ONE_FILE" -q) ;;
                restore_full) CMD=("${r[@]}" restore latest --target "$RESTORE" -q) ;;
                check) CMD=("${r[@]}" check -q) ;;
                check_read_data) CMD=("${r[@]}" check --read-data -q) ;;
            esac ;;
        rustic)
            local r=(rustic -P "$CONF/rustic.toml" --no-progress)
            case "$s" in
                init) CMD=("${r[@]}" init --set-compression 3) ;;
                backup) CMD=("${r[@]}" backup "$SRC") ;;
                snapshots) CMD=("${r[@]}" snapshots) ;;
                ls) CMD=("${r[@]}" ls latest) ;;
                find) CMD=("${r[@]}" find --glob "$FIND_PATTERN") ;;
                diff) CMD=("${r[@]}" diff "$a" "$b") ;;
                restore_one) CMD=("${r[@]}" restore "latest:$SRC/$ONE_FILE" "$RESTORE/$(basename "$ONE_FILE")") ;;
                restore_full) CMD=("${r[@]}" restore latest "$RESTORE") ;;
                check) CMD=("${r[@]}" check) ;;
                check_read_data) CMD=("${r[@]}" check --read-data) ;;
            esac ;;
    esac
}

# snapshot_ids TOOL: SNAP1, SNAP2 and SNAP3, the snapshots in time order
# (from `snapshots --json`, whatever its nesting), for the diff step.
snapshot_ids() {
    local t=$1 json
    case "$t" in
        repo) json=$("$REPO_BIN" -r "$LOC_REPO" snapshots --json 2>/dev/null || true) ;;
        restic) json=$(restic -r "$LOC_RESTIC" snapshots --json 2>/dev/null || true) ;;
        rustic) json=$(rustic -P "$CONF/rustic.toml" --no-progress snapshots --json 2>/dev/null || true) ;;
    esac
    local ids
    ids=$(printf '%s' "$json" | python3 -c '
import json, sys
found = []
def walk(v):
    if isinstance(v, dict):
        if isinstance(v.get("id"), str) and "time" in v:
            found.append((v["time"], v["id"]))
        for x in v.values():
            walk(x)
    elif isinstance(v, list):
        for x in v:
            walk(x)
try:
    walk(json.load(sys.stdin))
except ValueError:
    pass
print(" ".join(i for _, i in sorted(found)[:3]))
' || true)
    read -r SNAP1 SNAP2 SNAP3 <<<"$ids" || true
    if [ -z "$SNAP3" ]; then
        log "  $t: fewer than three snapshots ($ids); the diffs use latest where one is missing"
        : "${SNAP1:=latest}" "${SNAP2:=latest}" "${SNAP3:=latest}"
    fi
}
