# Shell functions the test-server scripts share (scripts/ftp-servers.sh, scripts/rest-servers.sh).
# Sourced, not run. Each script defines its own log().

alive() { # alive PIDFILE
    [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

free_port() {
    python3 - <<'PY'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
}

# make_test_certs DIR CA_NAME: a throwaway CA (DIR/ca.pem) and a leaf certificate for
# 127.0.0.1/localhost signed by it (DIR/server.pem, DIR/server.key), unless they exist. rustls
# rejects a self-signed CA used directly as the server certificate, hence the two.
make_test_certs() {
    local d=$1 name=$2
    [[ -s $d/ca.pem && -s $d/server.pem && -s $d/server.key ]] && return 0
    log "creating a test CA and a server certificate for 127.0.0.1/localhost"
    mkdir -p "$d"
    openssl req -x509 -new -newkey rsa:2048 -nodes -sha256 -days 3650 \
        -keyout "$d/ca.key" -out "$d/ca.pem" -subj "/CN=$name" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    openssl req -new -newkey rsa:2048 -nodes -sha256 \
        -keyout "$d/server.key" -out "$d/server.csr" -subj "/CN=localhost" 2>/dev/null
    cat >"$d/server.ext" <<'EXT'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost
EXT
    openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" \
        -CAcreateserial -days 3650 -sha256 -extfile "$d/server.ext" -out "$d/server.pem" 2>/dev/null
    chmod 644 "$d"/*.pem "$d"/*.key
}
