#!/usr/bin/env bash
# Starts the FTP servers the FtpStore integration tests run against, all on 127.0.0.1:
#
#   * pyftpdlib, plain FTP                      -> REPO_TEST_FTP_URL
#   * pyftpdlib, FTPS (explicit TLS, AUTH TLS)  -> REPO_TEST_FTPS_URL
#   * pyftpdlib without EPSV, MLST and MLSD     -> REPO_TEST_FTP_LEGACY_URL
#     (an old-style server: exercises PASV, LIST parsing and SIZE/MDTM)
#   * ProFTPD, plain FTP                        -> REPO_TEST_PROFTPD_URL
#   * ProFTPD, FTPS (mod_tls, explicit TLS)     -> REPO_TEST_PROFTPDS_URL
#   * ProFTPD, plain FTP, two sessions per host -> REPO_TEST_PROFTPD_LIMITED_URL
#     (MaxClientsPerHost 2: a third login is refused with 530)
#
# The TLS servers present a leaf certificate for 127.0.0.1/localhost signed by a throwaway CA
# (rustls rejects a self-signed CA used directly as the server certificate); the CA is written to
# REPO_TEST_FTP_CA for the client to trust.
#
# Usage: scripts/ftp-servers.sh [start|stop|restart|status]   (default: start)
#   start   installs what is missing, starts whatever is not running, writes $STATE/env
#   stop    stops the servers this script started (by their pid files)
#   restart stop, then start (picks new ports)
#   status  prints the env file and which servers are alive
#
# Idempotent: running `start` again keeps live servers and only restarts dead ones. Everything
# lives under $REPO_FTP_TEST_DIR (default /tmp/repo-ftp-test). Meant to run as root on Debian 12
# (apt-get for ProFTPD, pip for pyftpdlib).
set -euo pipefail

STATE=${REPO_FTP_TEST_DIR:-/tmp/repo-ftp-test}
ENV_FILE=$STATE/env
FTP_USER=repo
# A fixed test password; the servers listen on loopback only.
FTP_PASS=repo-test-pw
# uid/gid owning ProFTPD's home directory; the virtual user maps to it.
PROFTPD_UID=2121
PROFTPD_GID=2121

log() { printf '[ftp-servers] %s\n' "$*" >&2; }
# shellcheck source=scripts/test-servers-lib.sh
. "$(dirname "$0")/test-servers-lib.sh"

# A free port range of $1 consecutive ports (for ProFTPD's PassivePorts).
free_port_range() {
    python3 - "$1" <<'EOF'
import socket, sys, random
n = int(sys.argv[1])
for _ in range(200):
    base = random.randint(30000, 60000 - n)
    socks = []
    try:
        for p in range(base, base + n):
            s = socket.socket()
            s.bind(("127.0.0.1", p))
            socks.append(s)
    except OSError:
        continue
    finally:
        for s in socks:
            s.close()
    print(base, base + n - 1)
    break
else:
    sys.exit("no free port range")
EOF
}

wait_port() { # wait_port PORT NAME LOGFILE
    for _ in $(seq 1 100); do
        if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 0.2).close()" "$1" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    log "$2 did not come up on port $1; last log lines:"
    tail -n 30 "$3" >&2 || true
    return 1
}

# The interpreter that runs pyftpdlib: the first python3 that has pyftpdlib and pyOpenSSL.
PYTHON=
find_python() {
    local py
    for py in python3 /usr/bin/python3; do
        if command -v "$py" >/dev/null && "$py" -c 'import pyftpdlib, OpenSSL' 2>/dev/null; then
            PYTHON=$py
            return 0
        fi
    done
    return 1
}

install_deps() {
    if ! find_python; then
        log "installing pyftpdlib and pyopenssl with pip"
        # Debian's own python3 has no pip and refuses pip installs (PEP 668): use its packages.
        if ! python3 -m pip install --quiet pyftpdlib pyopenssl; then
            log "pip failed; installing python3-pyftpdlib and python3-openssl with apt-get"
            export DEBIAN_FRONTEND=noninteractive
            apt-get update -qq
            apt-get install -y -qq python3-pyftpdlib python3-openssl >/dev/null
        fi
        find_python || { log "no python3 with pyftpdlib and pyOpenSSL"; exit 1; }
    fi
    if ! command -v proftpd >/dev/null || [[ ! -e /usr/lib/proftpd/mod_tls.so ]]; then
        log "installing proftpd-core and proftpd-mod-crypto with apt-get"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq proftpd-core proftpd-mod-crypto >/dev/null
    fi
    command -v openssl >/dev/null || { apt-get update -qq; apt-get install -y -qq openssl >/dev/null; }
}

make_certs() { make_test_certs "$STATE/tls" "repo FTP test CA"; }

write_pyftpd_script() {
    cat >"$STATE/pyftpd.py" <<'EOF'
"""pyftpdlib test server on 127.0.0.1: MODE plain, tls (explicit FTPS, AUTH TLS), legacy
(no EPSV, MLST, MLSD), close-idle-data, ahead-silent, ahead-503, ahead-mute, ahead-425 or
limit-N."""
import logging
import os
import sys

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler, TLS_FTPHandler
from pyftpdlib.servers import FTPServer

mode, port, home, user, password = sys.argv[1:6]
os.makedirs(home, exist_ok=True)
authorizer = DummyAuthorizer()
authorizer.add_user(user, password, home, perm="elradfmwMT")
if mode == "tls":
    handler = TLS_FTPHandler
    handler.certfile = sys.argv[6]
    handler.keyfile = sys.argv[7]
    handler.tls_control_required = True
    handler.tls_data_required = True
elif mode == "legacy":
    # Commands missing from proto_cmds are answered with 500 and left out of FEAT.
    class LegacyHandler(FTPHandler):
        proto_cmds = {
            k: v for k, v in FTPHandler.proto_cmds.items() if k not in ("EPSV", "MLST", "MLSD")
        }
    handler = LegacyHandler
elif mode == "close-idle-data":
    # A server that closes a data connection made before its transfer command (allowed: the
    # client then asks for another port). Tests of data connections opened ahead.
    class CloseIdleDataHandler(FTPHandler):
        def _on_dtp_connection(self):
            if self._out_dtp_queue is None and self._in_dtp_queue is None:
                self.data_channel.close()
                return
            super()._on_dtp_connection()
    handler = CloseIdleDataHandler
elif mode.startswith("ahead-"):
    # A server that closes a data connection made well before its transfer command when the
    # command comes (a race with an idle timeout), then answers 150 and waits for another
    # (ahead-silent, as pyftpdlib does), and refuses a passive command meanwhile with 503
    # (ahead-503), or answers 150 only once another comes (ahead-mute), or answers 425
    # (ahead-425). Tests of data connections opened ahead.
    import time

    TRANSFERS = ("RETR", "STOR", "APPE", "MLSD", "LIST", "NLST")

    class AheadHandler(FTPHandler):
        _data_since = None
        _mute = False

        def _on_dtp_connection(self):
            self._data_since = time.monotonic()
            if self._mute:
                self._mute = False
                self.respond("150 File status okay. About to open data connection.")
            super()._on_dtp_connection()

        def respond(self, resp, *args, **kwargs):
            if self._mute and resp.startswith("150"):
                return
            super().respond(resp, *args, **kwargs)

        def process_command(self, cmd, *args, **kwargs):
            channel = self.data_channel
            since = self._data_since or time.monotonic()
            if cmd in TRANSFERS and channel is not None and time.monotonic() - since > 0.05:
                channel.close()
                self.data_channel = None
                if mode == "ahead-425":
                    self.respond("425 Can't open data connection.")
                    return
                self._mute = mode == "ahead-mute"
            pending = self._out_dtp_queue is not None or self._in_dtp_queue is not None
            if mode == "ahead-503" and cmd in ("EPSV", "PASV") and pending:
                self.respond("503 Bad sequence of commands: a transfer is pending.")
                return
            super().process_command(cmd, *args, **kwargs)
    handler = AheadHandler
elif mode.startswith("limit-"):
    # At most N sessions per client address (limit-N); the next is refused with 421.
    handler = FTPHandler
else:
    handler = FTPHandler
handler.authorizer = authorizer
handler.banner = "repo test pyftpdlib (%s)" % mode
logging.basicConfig(level=logging.INFO)
server = FTPServer(("127.0.0.1", int(port)), handler)
server.max_cons = 64
if mode.startswith("limit-"):
    server.max_cons_per_ip = int(mode[len("limit-"):])
server.serve_forever()
EOF
}

start_pyftpd() { # start_pyftpd NAME MODE
    local name=$1 mode=$2 pidfile=$STATE/$1.pid portfile=$STATE/$1.port
    if alive "$pidfile" && [[ -s $portfile ]]; then
        return 0
    fi
    local port home=$STATE/$name-home
    port=$(free_port)
    mkdir -p "$home"
    local args=("$mode" "$port" "$home" "$FTP_USER" "$FTP_PASS")
    [[ $mode == tls ]] && args+=("$STATE/tls/server.pem" "$STATE/tls/server.key")
    log "starting $name on 127.0.0.1:$port"
    nohup "$PYTHON" "$STATE/pyftpd.py" "${args[@]}" >"$STATE/$name.log" 2>&1 </dev/null &
    echo $! >"$pidfile"
    echo "$port" >"$portfile"
    wait_port "$port" "$name" "$STATE/$name.log"
}

start_proftpd() {
    local d=$STATE/proftpd pidfile=$STATE/proftpd.pid
    if alive "$pidfile" && [[ -s $STATE/proftpd.port && -s $STATE/proftpds.port &&
        -s $STATE/proftpd-limited.port ]]; then
        return 0
    fi
    mkdir -p "$d" "$STATE/proftpd-home"
    chown "$PROFTPD_UID:$PROFTPD_GID" "$STATE/proftpd-home"
    local port tls_port limited_port pasv
    port=$(free_port)
    tls_port=$(free_port)
    while [[ $tls_port == "$port" ]]; do tls_port=$(free_port); done
    limited_port=$(free_port)
    while [[ $limited_port == "$port" || $limited_port == "$tls_port" ]]; do
        limited_port=$(free_port)
    done
    pasv=$(free_port_range 100)
    local hash
    hash=$(openssl passwd -6 "$FTP_PASS")
    # AuthUserFile/AuthGroupFile in /etc/passwd format; mod_auth_file refuses world-readable
    # files only for some settings, 0600 keeps it quiet either way.
    printf '%s:%s:%s:%s::%s:/bin/false\n' "$FTP_USER" "$hash" "$PROFTPD_UID" "$PROFTPD_GID" \
        "$STATE/proftpd-home" >"$d/passwd"
    printf 'repo:x:%s:\n' "$PROFTPD_GID" >"$d/group"
    chmod 600 "$d/passwd" "$d/group"
    # What every virtual host repeats from the main server (ProFTPD does not inherit it).
    local vhost_common
    vhost_common=$(cat <<EOF
  Umask                 022
  AuthOrder             mod_auth_file.c
  AuthUserFile          $d/passwd
  AuthGroupFile         $d/group
  RequireValidShell     off
  DefaultRoot           ~
  AllowOverwrite        on
  AllowStoreRestart     on
  AllowRetrieveRestart  on
EOF
)
    cat >"$d/proftpd.conf" <<EOF
# Generated by scripts/ftp-servers.sh: ProFTPD for the FtpStore tests, loopback only.
ServerName              "repo test proftpd"
ServerType              standalone
DefaultServer           on
DefaultAddress          127.0.0.1
SocketBindTight         on
UseIPv6                 off
Port                    $port
PassivePorts            $pasv
User                    nobody
Group                   nogroup
Umask                   022
PidFile                 $pidfile
ScoreboardFile          $d/scoreboard
DelayTable              none
SystemLog               $d/system.log
TransferLog             none
# Every command with its reply code, for diagnosing client/server disagreements.
LogFormat               commands "%{iso8601} [%P] %r -> %s"
ExtendedLog             $d/commands.log ALL commands
WtmpLog                 off
UseReverseDNS           off
MaxInstances            64
TimeoutIdle             600
AuthOrder               mod_auth_file.c
AuthUserFile            $d/passwd
AuthGroupFile           $d/group
RequireValidShell       off
DefaultRoot             ~
# STOR over an existing file and RNTO onto one are refused unless this is on.
AllowOverwrite          on
AllowStoreRestart       on
AllowRetrieveRestart    on
ModulePath              /usr/lib/proftpd
LoadModule              mod_tls.c

<IfModule mod_tls.c>
  TLSEngine off
</IfModule>

<VirtualHost 127.0.0.1>
  ServerName            "repo test proftpd (two sessions per host)"
  Port                  $limited_port
  PassivePorts          $pasv
  MaxClientsPerHost     2
$vhost_common
  ExtendedLog           $d/commands-limited.log ALL commands
  TLSEngine             off
</VirtualHost>

<VirtualHost 127.0.0.1>
  ServerName            "repo test proftpd (TLS)"
  Port                  $tls_port
  PassivePorts          $pasv
$vhost_common
  ExtendedLog           $d/commands-tls.log ALL commands
  TLSEngine             on
  TLSRequired           on
  TLSLog                $d/tls.log
  TLSProtocol           TLSv1.2 TLSv1.3
  TLSRSACertificateFile $STATE/tls/server.pem
  TLSRSACertificateKeyFile $STATE/tls/server.key
  TLSCACertificateFile  $STATE/tls/ca.pem
  TLSVerifyClient       off
  # Left at ProFTPD's default on purpose: data connections must resume the control connection's
  # TLS session. rustls uses TLS 1.3 tickets once and the server issues no new one on upload
  # connections, so the client runs out after a few uploads and has to reconnect; the tests
  # cover that path. Production servers are better off with
  #   TLSOptions NoSessionReuseRequired
</VirtualHost>
EOF
    log "starting proftpd on 127.0.0.1:$port (plain), $limited_port (two sessions per host) and $tls_port (TLS)"
    proftpd -t -c "$d/proftpd.conf" >"$d/configtest.log" 2>&1 || {
        cat "$d/configtest.log" >&2
        return 1
    }
    nohup proftpd -n -c "$d/proftpd.conf" >"$d/stdout.log" 2>&1 </dev/null &
    echo $! >"$pidfile"
    echo "$port" >"$STATE/proftpd.port"
    echo "$tls_port" >"$STATE/proftpds.port"
    echo "$limited_port" >"$STATE/proftpd-limited.port"
    wait_port "$port" proftpd "$d/stdout.log"
    wait_port "$tls_port" "proftpd (TLS)" "$d/stdout.log"
    wait_port "$limited_port" "proftpd (two sessions per host)" "$d/stdout.log"
}

write_env() {
    cat >"$ENV_FILE" <<EOF
REPO_TEST_FTP_URL=ftp://$FTP_USER:$FTP_PASS@127.0.0.1:$(cat "$STATE/pyftpd.port")/
REPO_TEST_FTPS_URL=ftps://$FTP_USER:$FTP_PASS@127.0.0.1:$(cat "$STATE/pyftpds.port")/
REPO_TEST_FTP_LEGACY_URL=ftp://$FTP_USER:$FTP_PASS@127.0.0.1:$(cat "$STATE/pyftpd-legacy.port")/
REPO_TEST_PROFTPD_URL=ftp://$FTP_USER:$FTP_PASS@127.0.0.1:$(cat "$STATE/proftpd.port")/
REPO_TEST_PROFTPDS_URL=ftps://$FTP_USER:$FTP_PASS@127.0.0.1:$(cat "$STATE/proftpds.port")/
REPO_TEST_PROFTPD_LIMITED_URL=ftp://$FTP_USER:$FTP_PASS@127.0.0.1:$(cat "$STATE/proftpd-limited.port")/
REPO_TEST_FTP_CA=$STATE/tls/ca.pem
REPO_TEST_FTP_PYTHON=$PYTHON
REPO_TEST_FTP_SERVER_SCRIPT=$STATE/pyftpd.py
EOF
}

stop_all() {
    local f
    for f in "$STATE"/pyftpd.pid "$STATE"/pyftpds.pid "$STATE"/pyftpd-legacy.pid "$STATE"/proftpd.pid; do
        if alive "$f"; then
            local pid
            pid=$(cat "$f")
            log "stopping $(basename "$f" .pid) (pid $pid)"
            kill "$pid" || true
            # Wait for the exit, so that an immediate `start` does not find it still alive.
            for _ in $(seq 1 50); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
        fi
        rm -f "$f"
    done
}

status() {
    local f
    for f in pyftpd pyftpds pyftpd-legacy proftpd; do
        if alive "$STATE/$f.pid"; then echo "$f: running (pid $(cat "$STATE/$f.pid"))"; else echo "$f: stopped"; fi
    done
    if [[ -f $ENV_FILE ]]; then cat "$ENV_FILE"; fi
}

case ${1:-start} in
start)
    mkdir -p "$STATE"
    # The servers drop privileges (ProFTPD runs sessions as nobody/uid 2121) and must reach
    # their directories below $STATE whatever the caller's umask.
    chmod 755 "$STATE"
    install_deps
    make_certs
    write_pyftpd_script
    start_pyftpd pyftpd plain
    start_pyftpd pyftpds tls
    start_pyftpd pyftpd-legacy legacy
    start_proftpd
    write_env
    cat "$ENV_FILE"
    prefix=""
    [[ $STATE != /tmp/repo-ftp-test ]] && prefix="REPO_FTP_TEST_DIR=$STATE "
    cat >&2 <<EOF

[ftp-servers] env file: $ENV_FILE   (load it with: set -a; . $ENV_FILE; set +a)
[ftp-servers] stop with: $prefix$0 stop
[ftp-servers]   (or kill the pids in $STATE/{pyftpd,pyftpds,pyftpd-legacy,proftpd}.pid)
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
