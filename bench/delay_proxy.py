#!/usr/bin/env python3
"""A TCP proxy that adds latency, not a bandwidth limit: a WAN on loopback.

  delay_proxy.py --listen PORT --target HOST:PORT --delay-ms D [--bind ADDR]

This kernel has no netem, so the delay is added in user space. Every chunk read
from one side is stamped with its arrival time and written to the other side D
milliseconds later; a round trip therefore costs 2*D. Each direction of each
connection is one FIFO queue served by one writer, so bytes never reorder, and
the reader keeps reading while earlier chunks wait: throughput is whatever the
two ends manage (up to QUEUE_LIMIT bytes may be in flight per direction, far
above what 25 ms of loopback traffic needs), as on a long fat pipe. A half-close
(EOF) travels through the queue like data, so it arrives after the last byte.

Not modelled: the TCP handshake (the kernel completes it at once, so connect()
costs no round trip; HTTP keep-alive makes that rare) and packet loss.
"""

import argparse
import asyncio
import signal
import socket
import sys

CHUNK = 256 * 1024
# Bytes queued per direction before the reader pauses: only a guard against a
# stalled receiver; 64 MiB per 25 ms is 2.5 GiB/s, above loopback rates here.
QUEUE_LIMIT = 64 * 1024 * 1024


def nodelay(writer):
    """Nagle would hold small writes back for an ACK: one more hidden delay."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


class Pipe:
    """One direction of one connection: read, stamp, hold, write in order."""

    def __init__(self, reader, writer, delay):
        self.reader = reader
        self.writer = writer
        self.delay = delay
        self.queue = asyncio.Queue()
        self.queued = 0
        self.room = asyncio.Event()
        self.room.set()

    async def read_side(self):
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self.room.wait()
                data = await self.reader.read(CHUNK)
                due = loop.time() + self.delay
                if not data:
                    break
                self.queued += len(data)
                if self.queued >= QUEUE_LIMIT:
                    self.room.clear()
                self.queue.put_nowait((due, data))
        except (ConnectionError, OSError):
            due = loop.time() + self.delay
        self.queue.put_nowait((due, None))

    async def write_side(self):
        loop = asyncio.get_running_loop()
        while True:
            due, data = await self.queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if data is None:
                if self.writer.can_write_eof():
                    self.writer.write_eof()
                return
            self.writer.write(data)
            await self.writer.drain()
            self.queued -= len(data)
            if self.queued < QUEUE_LIMIT:
                self.room.set()


async def relay(reader, writer, delay):
    pipe = Pipe(reader, writer, delay)
    await asyncio.gather(pipe.read_side(), pipe.write_side())


async def handle(client_reader, client_writer, target, delay):
    host, port = target
    try:
        server_reader, server_writer = await asyncio.open_connection(host, port)
    except OSError as e:
        print(f"delay_proxy: cannot connect to {host}:{port}: {e}", file=sys.stderr)
        client_writer.close()
        return
    nodelay(client_writer)
    nodelay(server_writer)
    try:
        await asyncio.gather(
            relay(client_reader, server_writer, delay),
            relay(server_reader, client_writer, delay),
        )
    except (ConnectionError, OSError):
        pass
    finally:
        for w in (client_writer, server_writer):
            w.close()


async def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", type=int, required=True, help="port to listen on")
    ap.add_argument("--bind", default="127.0.0.1", help="address to listen on")
    ap.add_argument("--target", required=True, help="HOST:PORT to forward to")
    ap.add_argument("--delay-ms", type=float, required=True, help="delay each way (RTT = 2 x this)")
    args = ap.parse_args()
    host, _, port = args.target.rpartition(":")
    target = (host or "127.0.0.1", int(port))
    delay = args.delay_ms / 1000.0
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, target, delay), args.bind, args.listen, backlog=256)
    print(f"delay_proxy: {args.bind}:{args.listen} -> {target[0]}:{target[1]}, "
          f"{args.delay_ms:g} ms each way", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
