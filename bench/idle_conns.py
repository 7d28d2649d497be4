#!/usr/bin/env python3
"""Open N keep-alive HTTP/1.1 connections to 127.0.0.1:PORT, send one request
on each (one at a time, so the proxy needs only one upstream connection),
read the response, then hold them all idle.

Prints "READY <opened>" on stdout once all are open, then holds them until
stdin is closed (or --hold seconds pass), and exits, closing them.
Used by bench.py for the per-idle-connection memory figure.
"""
import argparse
import resource
import select
import socket
import sys
import time


def read_response(s, deadline):
    buf = b""
    while b"\r\n\r\n" not in buf:
        if time.time() > deadline:
            raise TimeoutError("headers")
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed before headers")
        buf += chunk
    head, body = buf.split(b"\r\n\r\n", 1)
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v.strip())
        if k.strip().lower() == b"transfer-encoding" and b"chunked" in v.lower():
            # small chunked body: read until the terminating chunk
            while not body.endswith(b"0\r\n\r\n"):
                if time.time() > deadline:
                    raise TimeoutError("chunked body")
                chunk = s.recv(65536)
                if not chunk:
                    raise ConnectionError("closed in body")
                body += chunk
            return status
    while len(body) < length:
        if time.time() > deadline:
            raise TimeoutError("body")
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed in body")
        body += chunk
    return status


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--conns", type=int, default=1000)
    ap.add_argument("--path", default="/")
    ap.add_argument("--hold", type=float, default=120, help="maximum seconds to hold the connections")
    ap.add_argument("--open-timeout", type=float, default=45, help="maximum seconds to open them all")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, a.conns + 64)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    req = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: keep-alive\r\n\r\n"
           % (a.path, a.port)).encode()
    socks = []
    deadline = time.time() + a.open_timeout
    errors = 0
    for i in range(a.conns):
        if time.time() > deadline:
            sys.stderr.write("open timeout after %d connections\n" % len(socks))
            break
        try:
            s = socket.create_connection(("127.0.0.1", a.port), timeout=5)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(req)
            st = read_response(s, time.time() + 5)
            if st != 200:
                errors += 1
            socks.append(s)
        except Exception as e:
            errors += 1
            sys.stderr.write("connection %d: %s\n" % (i, e))
            if errors > 20:
                break
    sys.stdout.write("READY %d\n" % len(socks))
    sys.stdout.flush()
    end = time.time() + a.hold
    while time.time() < end:
        r, _, _ = select.select([sys.stdin], [], [], min(1.0, max(0.0, end - time.time())))
        if r and not sys.stdin.buffer.read1(4096):
            break
    for s in socks:
        s.close()


if __name__ == "__main__":
    main()
