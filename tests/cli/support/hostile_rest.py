"""A hostile restic REST (v2) server for tests: serves a local repository
directory (same keys as REST, with data/<xx>/<id> shown as data/<id>) and
misbehaves on purpose in one way, chosen by MODE:

  endless-listing    GET /keys/ streams a JSON array that never ends (chunked)
  declared-listing   GET /keys/ announces a 1 TiB Content-Length
  malformed-listing  GET /keys/ answers HTML
  v1-listing         GET /keys/ answers a v1 listing (names only)
  endless-config     GET /config streams bytes forever (chunked, no length)
  declared-config    GET and HEAD /config announce an 8 GiB Content-Length
  short-range        ranged GETs of data/ answer one byte fewer than asked
  redirect-writes    POSTs of config, data, index and snapshots answer 302 to
                     /login, a page that GET answers 200 (a login portal or
                     a misconfigured proxy in front of uploads); locks and
                     reads work
  late-refusal       DELETE of a missing object answers 404, of a stored one
                     403 (a storage that looks before it checks permission,
                     so the append-only probe misses it)
  long-pack          a whole-object GET of data/ (no Range) answers the pack
                     and 256 MiB of junk after it, with a Content-Length to
                     match
  honest             misbehaves in no way (a baseline)
  dup-listing        every listing (GET /{type}/) names each object twice
  lossy              append-only (POST of an existing object: 403), the first
                     POST and DELETE of each object are carried out but their
                     response is lost (the connection closes unanswered), and
                     the first GET of each object answers 503

usage: hostile_rest.py MODE REPO_DIR SENT_FILE
Prints the port on its first stdout line; writes the bytes it sent in the
misbehaving answer to SENT_FILE when the client hangs up.
"""
import http.server
import json
import os
import sys

MODE, ROOT, SENT_FILE = sys.argv[1], sys.argv[2], sys.argv[3]
LOST = set()
TYPES = ("data", "keys", "locks", "snapshots", "index")


def local_path(rel):
    parts = rel.strip("/").split("/")
    if parts == ["config"]:
        return os.path.join(ROOT, "config")
    if len(parts) == 2 and parts[0] in TYPES and "/" not in parts[1] and not parts[1].startswith("."):
        if parts[0] == "data":
            return os.path.join(ROOT, "data", parts[1][:2], parts[1])
        return os.path.join(ROOT, parts[0], parts[1])
    return None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def endless(self, first, piece):
        """Streams `first` then `piece` forever (chunked), counting bytes."""
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        sent = 0
        try:
            chunk = first
            while True:
                if chunk:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    sent += len(chunk)
                chunk = piece
        except (BrokenPipeError, ConnectionResetError):
            pass
        with open(SENT_FILE, "w") as f:
            f.write(str(sent))
        self.close_connection = True

    def declared(self, length):
        self.send_response(200)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if self.command != "HEAD":
            try:
                self.wfile.write(b"x" * 65536)
            except (BrokenPipeError, ConnectionResetError):
                pass
        self.close_connection = True

    def plain(self, status, body, ctype="application/octet-stream"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def listing(self, kind):
        d = os.path.join(ROOT, kind)
        entries = []
        for dirpath, _, files in os.walk(d):
            for name in files:
                entries.append({"name": name, "size": os.path.getsize(os.path.join(dirpath, name))})
        if MODE == "dup-listing":
            entries = entries + entries
        self.plain(200, json.dumps(entries).encode(), "application/vnd.x.restic.rest.v2")

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        path = self.path.split("?")[0].lstrip("/")
        if path == "login" and MODE == "redirect-writes":
            return self.plain(200, b"<html>please log in</html>", "text/html")
        if path == "keys/":
            if MODE == "endless-listing":
                return self.endless(b"[", b'{"name":"' + b"a" * 64 + b'","size":1},' * 100)
            if MODE == "declared-listing":
                return self.declared(1 << 40)
            if MODE == "malformed-listing":
                return self.plain(200, b"<html>not a listing</html>", "text/html")
            if MODE == "v1-listing":
                names = os.listdir(os.path.join(ROOT, "keys"))
                return self.plain(200, json.dumps(names).encode(), "application/json")
        if path == "config":
            if MODE == "endless-config":
                return self.endless(b"", b"y" * 65536)
            if MODE == "declared-config":
                return self.declared(8 << 30)
        if path.endswith("/") and path[:-1] in TYPES:
            return self.listing(path[:-1])
        local = local_path(path)
        if local is None or not os.path.isfile(local):
            return self.plain(404, b"not found")
        if MODE == "lossy" and self.command == "GET" and "GET " + path not in LOST:
            LOST.add("GET " + path)
            return self.plain(503, b"try again")
        with open(local, "rb") as f:
            body = f.read()
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start, end = (int(x) for x in rng[len("bytes="):].split("-"))
            part = body[start : end + 1]
            if MODE == "short-range" and path.startswith("data/"):
                part = part[:-1]
            self.send_response(206)
            self.send_header("Content-Length", str(len(part)))
            self.end_headers()
            self.wfile.write(part)
            return
        if MODE == "long-pack" and path.startswith("data/"):
            return self.long_pack(body)
        self.plain(200, body)

    def long_pack(self, body):
        """The pack, then 256 MiB of junk, all announced in Content-Length."""
        junk = 256 << 20
        self.send_response(200)
        self.send_header("Content-Length", str(len(body) + junk))
        self.end_headers()
        if self.command == "HEAD":
            return
        try:
            self.wfile.write(body)
            piece = b"j" * (1 << 20)
            for _ in range(junk >> 20):
                self.wfile.write(piece)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


    def lose(self, what):
        """True (and the connection closes unanswered) the first time only."""
        if MODE != "lossy" or what in LOST:
            return False
        LOST.add(what)
        with open(SENT_FILE, "w") as f:
            f.write(str(len(LOST)))
        self.close_connection = True
        return True

    def redirect(self):
        self.send_response(302)
        self.send_header("Location", "/login")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        local = local_path(self.path.split("?")[0])
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if MODE == "redirect-writes" and not self.path.startswith("/locks/"):
            return self.redirect()
        if local is None:
            return self.plain(200 if self.path.startswith("/?create") else 400, b"")
        if MODE == "lossy" and os.path.exists(local):
            return self.plain(403, b"exists")
        os.makedirs(os.path.dirname(local), exist_ok=True)
        with open(local, "wb") as f:
            f.write(body)
        if not self.lose("POST " + self.path):
            self.plain(200, b"")

    def do_DELETE(self):
        local = local_path(self.path)
        if local is None or not os.path.isfile(local):
            return self.plain(404, b"not found")
        if MODE == "late-refusal":
            return self.plain(403, b"forbidden")
        os.remove(local)
        if not self.lose("DELETE " + self.path):
            self.plain(200, b"")


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
