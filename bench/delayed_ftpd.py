#!/usr/bin/env python3
"""A pyftpdlib FTP server on 127.0.0.1 that behaves as if it were far away.

  delayed_ftpd.py --port PORT --home DIR --user U --password P --rtt-ms RTT
                  [--data-delay-ms MS]

FTP is a round trip per command, so latency is modelled on the commands:
every reply on the control connection is sent RTT milliseconds after the
server would have sent it (the command's way there plus the reply's way
back). Replies of one connection keep their order, and the wait never blocks
the server's loop: other connections go on meanwhile, as on a real network.

Passive data connections: the server accepts each one --data-delay-ms (default
RTT) after the client connected, standing in for the TCP handshake over the
WAN; a command waiting for its data connection (RETR, STOR, MLSD, LIST) is
answered only after that, plus its own reply delay. The data bytes themselves
are not delayed (a full window is in flight after the first round trip).
"""

import argparse
import collections
import logging
import os
import time

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.handlers.ftp.dispatchers import PassiveDTP
from pyftpdlib.servers import FTPServer


class DelayedPassiveDTP(PassiveDTP):
    """Accepts a data connection only after the simulated handshake."""

    data_delay = 0.0

    def handle_accepted(self, sock, addr):
        if self.data_delay <= 0:
            return super().handle_accepted(sock, addr)
        parent = super()

        def later():
            if self._closed:
                sock.close()
                return
            parent.handle_accepted(sock, addr)

        self.ioloop.call_later(self.data_delay, later, _errback=self.handle_error)
        return None


class DelayedHandler(FTPHandler):
    """Holds every control-connection write (and the close after it) for
    `reply_delay` seconds, in order, through one timer per connection."""

    reply_delay = 0.0
    passive_dtp = DelayedPassiveDTP

    def __init__(self, *args, **kwargs):
        self._held = collections.deque()
        self._timer = None
        super().__init__(*args, **kwargs)

    def _hold(self, fn, *args):
        self._held.append((time.monotonic() + self.reply_delay, fn, args))
        if self._timer is None:
            self._arm()

    def _arm(self):
        due = self._held[0][0]
        self._timer = self.ioloop.call_later(
            max(0.0, due - time.monotonic()), self._release, _errback=self.handle_error)

    def _release(self):
        self._timer = None
        now = time.monotonic()
        while self._held and self._held[0][0] <= now:
            _, fn, args = self._held.popleft()
            if self._closed:
                self._held.clear()
                return
            fn(*args)
        if self._held:
            self._arm()

    def push(self, data):
        if self.reply_delay <= 0:
            return super().push(data)
        self._hold(super().push, data)
        return None

    def close_when_done(self):
        if self.reply_delay <= 0 or not self._held:
            return super().close_when_done()
        self._hold(super().close_when_done)
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--home", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--rtt-ms", type=float, required=True, help="delay of every reply")
    ap.add_argument("--data-delay-ms", type=float, default=None,
                    help="delay before a passive data connection is accepted (default: RTT)")
    args = ap.parse_args()
    os.makedirs(args.home, exist_ok=True)
    authorizer = DummyAuthorizer()
    authorizer.add_user(args.user, args.password, args.home, perm="elradfmwMT")
    DelayedHandler.authorizer = authorizer
    DelayedHandler.reply_delay = args.rtt_ms / 1000.0
    data_ms = args.rtt_ms if args.data_delay_ms is None else args.data_delay_ms
    DelayedPassiveDTP.data_delay = data_ms / 1000.0
    DelayedHandler.banner = f"repo bench pyftpdlib, {args.rtt_ms:g} ms per reply"
    logging.basicConfig(level=logging.WARNING)
    server = FTPServer(("127.0.0.1", args.port), DelayedHandler)
    server.max_cons = 256
    server.max_cons_per_ip = 0
    server.serve_forever()


if __name__ == "__main__":
    main()
