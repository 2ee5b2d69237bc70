#!/usr/bin/env bash
# Starts the restic REST (protocol v2) servers the `rest:` backend tests run against, all
# `rclone serve restic` on 127.0.0.1 (Debian packages rclone; restic's own rest-server is not
# packaged for Debian and this machine has no Go toolchain to build it):
#
#   * plain HTTP, no authentication, normal mode              -> REPO_TEST_REST_URL
#   * HTTPS + htpasswd user (the URL carries user:password)    -> REPO_TEST_RESTS_URL
#   * HTTPS + htpasswd, --append-only --private-repos          -> REPO_TEST_REST_APPEND_BASE
#     (https://127.0.0.1:PORT, no path) serving REPO_TEST_REST_APPEND_DIR on disk.
#     Users host01 .. host40, each with the password "pw-" + user (host07 -> pw-host07).
#     A private-repos user may use any path below its own name: /host01/, /host01/a/b/ ... are all
#     repositories of host01 (checked with rclone 1.60), so one user can hold many test
#     repositories; /host02/... is refused to host01 with 403. Append-only: POST of an existing
#     object and DELETE answer 403 Forbidden, except DELETE under locks/, which is allowed.
#
# The TLS servers present a leaf certificate for 127.0.0.1/localhost signed by a throwaway CA
# (rustls rejects a self-signed CA used directly as the server certificate); the CA is written to
# REPO_TEST_REST_CA for the client to trust (--ca-cert / REPO_CA_CERT).
#
# Listings must be read-after-write consistent for the exclusive lock (SPEC.md §10): rclone over a
# local disk is, with --cache-objects=false so it never answers from its own cache.
#
# Usage: scripts/rest-servers.sh [start|stop|restart|status]   (default: start)
#   start   installs what is missing, starts whatever is not running, writes $STATE/env
#   stop    stops the servers this script started (by their pid files)
#   restart stop, then start (picks new ports)
#   status  prints the env file and which servers are alive
#
# Idempotent: running `start` again keeps live servers and only restarts dead ones. Everything
# lives under $REPO_REST_TEST_DIR (default /tmp/repo-rest-test).
set -euo pipefail

STATE=${REPO_REST_TEST_DIR:-/tmp/repo-rest-test}
ENV_FILE=$STATE/env
REST_USER=repo
# A fixed test password; the servers listen on loopback only.
REST_PASS=repo-rest-pw
SERVERS=(rest rests append)

log() { printf '[rest-servers] %s\n' "$*" >&2; }
# shellcheck source=scripts/test-servers-lib.sh
. "$(dirname "$0")/test-servers-lib.sh"

install_deps() {
    local missing=()
    command -v rclone >/dev/null || missing+=(rclone)
    command -v openssl >/dev/null || missing+=(openssl)
    command -v curl >/dev/null || missing+=(curl)
    if [[ ${#missing[@]} -gt 0 ]]; then
        log "installing ${missing[*]} with apt-get"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

make_certs() { make_test_certs "$STATE/tls" "repo REST test CA"; }

# htpasswd files (apr1 hashes, which rclone reads) for the two authenticated servers.
make_htpasswd() {
    [[ -s $STATE/rests.htpasswd && -s $STATE/append.htpasswd ]] && return 0
    printf '%s:%s\n' "$REST_USER" "$(openssl passwd -apr1 "$REST_PASS")" >"$STATE/rests.htpasswd"
    local i u
    : >"$STATE/append.htpasswd.tmp"
    for i in $(seq -w 1 40); do
        u=host$i
        printf '%s:%s\n' "$u" "$(openssl passwd -apr1 "pw-$u")" >>"$STATE/append.htpasswd.tmp"
    done
    mv "$STATE/append.htpasswd.tmp" "$STATE/append.htpasswd"
}

# The URL a readiness request goes to: a real request that the server must answer with HTTP.
probe_url() { # probe_url NAME PORT
    case $1 in
    rest) echo "http://127.0.0.1:$2/probe/config" ;;
    rests) echo "https://$REST_USER:$REST_PASS@127.0.0.1:$2/probe/config" ;;
    append) echo "https://host01:pw-host01@127.0.0.1:$2/host01/probe/config" ;;
    esac
}

wait_ready() { # wait_ready NAME PORT LOGFILE
    local code
    for _ in $(seq 1 100); do
        # A missing config is 404: the server is up and speaks the protocol.
        code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$STATE/tls/ca.pem" \
            -I "$(probe_url "$1" "$2")" 2>/dev/null || true)
        [[ $code == 404 || $code == 200 ]] && return 0
        sleep 0.1
    done
    log "$1 did not come up on port $2; last log lines:"
    tail -n 30 "$3" >&2 || true
    return 1
}

start_server() { # start_server NAME
    local name=$1 pidfile=$STATE/$1.pid
    if alive "$pidfile" && [[ -s $STATE/$name.port ]]; then
        return 0
    fi
    local port dir=$STATE/$name-data
    port=$(free_port)
    mkdir -p "$dir"
    local args=(serve restic "$dir" --addr "127.0.0.1:$port" --cache-objects=false)
    case $name in
    rests) args+=(--cert "$STATE/tls/server.pem" --key "$STATE/tls/server.key"
        --htpasswd "$STATE/rests.htpasswd") ;;
    append) args+=(--cert "$STATE/tls/server.pem" --key "$STATE/tls/server.key"
        --htpasswd "$STATE/append.htpasswd" --append-only --private-repos) ;;
    esac
    log "starting rclone serve restic ($name) on 127.0.0.1:$port"
    nohup rclone "${args[@]}" --config /dev/null >"$STATE/$name.log" 2>&1 </dev/null &
    echo $! >"$pidfile"
    echo "$port" >"$STATE/$name.port"
    wait_ready "$name" "$port" "$STATE/$name.log"
}

write_env() {
    cat >"$ENV_FILE" <<EOF
REPO_TEST_REST_URL=rest:http://127.0.0.1:$(cat "$STATE/rest.port")/
REPO_TEST_RESTS_URL=rest:https://$REST_USER:$REST_PASS@127.0.0.1:$(cat "$STATE/rests.port")/
REPO_TEST_REST_APPEND_BASE=https://127.0.0.1:$(cat "$STATE/append.port")
REPO_TEST_REST_APPEND_DIR=$STATE/append-data
REPO_TEST_REST_CA=$STATE/tls/ca.pem
EOF
}

stop_all() {
    local name f pid
    for name in "${SERVERS[@]}"; do
        f=$STATE/$name.pid
        if alive "$f"; then
            pid=$(cat "$f")
            log "stopping $name (pid $pid)"
            kill "$pid" || true
            for _ in $(seq 1 50); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
        fi
        rm -f "$f" "$STATE/$name.port"
    done
}

status() {
    local name
    for name in "${SERVERS[@]}"; do
        if alive "$STATE/$name.pid"; then echo "$name: running (pid $(cat "$STATE/$name.pid"))"; else echo "$name: stopped"; fi
    done
    if [[ -f $ENV_FILE ]]; then cat "$ENV_FILE"; fi
}

case ${1:-start} in
start)
    mkdir -p "$STATE"
    chmod 755 "$STATE"
    install_deps
    make_certs
    make_htpasswd
    for s in "${SERVERS[@]}"; do start_server "$s"; done
    write_env
    cat "$ENV_FILE"
    prefix=""
    [[ $STATE != /tmp/repo-rest-test ]] && prefix="REPO_REST_TEST_DIR=$STATE "
    cat >&2 <<EOF

[rest-servers] env file: $ENV_FILE   (load it with: set -a; . $ENV_FILE; set +a)
[rest-servers] stop with: $prefix$0 stop
EOF
    ;;
stop) stop_all ;;
restart)
    stop_all
    exec "$0" start
    ;;
status) status ;;
*)
    echo "usage: $0 [start|stop|restart|status]" >&2
    exit 2
    ;;
esac
