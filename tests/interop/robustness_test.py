#!/usr/bin/python3
"""robustness_test: bad peers do not hurt good ones.

Against one pkid (short timeouts, a small connection limit): garbage
instead of TLS, garbage HTTP/2 frames, a client that never finishes its
handshake, an idle connection, a request that outlives its grpc-timeout
(Python's h2, an HTTP/2 stack we did not write, drives the raw cases), a
flood of connections past the limit. After each, a well-behaved client is
still served.

Usage: robustness_test.py PKICTL PKID PROTO
"""
import os
import socket
import ssl
import struct
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import grpc  # noqa: E402
import h2.config  # noqa: E402
import h2.connection  # noqa: E402
import h2.events  # noqa: E402
from pkidtest import (AGENT, Pkid, channel, demo_tree, load_proto, method,  # noqa: E402
                      service_files)
from testlib import finish, run  # noqa: E402

PKICTL, PKID, PROTO = (os.path.abspath(p) for p in sys.argv[1:4])
TMP = os.environ.get("TEST_TMPDIR") or tempfile.mkdtemp()
PKI = demo_tree(PKICTL, TMP)
pki_pb2 = load_proto(PROTO, TMP)

MAX_CONNS = 64
SERVER = Pkid(PKID, PKI, TMP, args=["--max-conns", str(MAX_CONNS), "--idle-timeout-ms", "1000",
                                    "--handshake-timeout-ms", "500"]).start()
PORT = SERVER.grpc

ROOT_PATH = os.path.join(PKI, "root-ca/certs/root-ca.crt")
BASE = os.path.join(PKI, "service-certificates", AGENT)
FULLCHAIN = os.path.join(TMP, "client-fullchain.pem")
with open(FULLCHAIN, "wb") as f:
    f.write(service_files(PKI, AGENT)[1])


def tls_socket():
    ctx = ssl.create_default_context(cafile=ROOT_PATH)
    ctx.check_hostname = False
    ctx.load_cert_chain(FULLCHAIN, BASE + ".key")
    ctx.set_alpn_protocols(["h2"])
    raw = socket.create_connection(("127.0.0.1", PORT), timeout=5)
    return ctx.wrap_socket(raw, server_hostname="pki-ca.cybersec-framework.local")


def closed_within(sock, seconds):
    """True when the peer closes |sock| within |seconds| (reading all)."""
    sock.settimeout(seconds)
    end = time.time() + seconds
    try:
        while time.time() < end:
            data = sock.recv(65536)
            if not data:
                return True
    except (ConnectionError, ssl.SSLError):
        return True
    except socket.timeout:
        return False
    return False


def healthy():
    """A well-behaved gRPC client is served."""
    with channel(SERVER, PKI) as ch:
        b = method(ch, "GetTrustBundle", pki_pb2.GetTrustBundleRequest, pki_pb2.TrustBundle)(
            pki_pb2.GetTrustBundleRequest(), timeout=10)
    assert len(b.stores) == 4


def test_garbage_instead_of_tls():
    s = socket.create_connection(("127.0.0.1", PORT), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + os.urandom(512))
    assert closed_within(s, 5)
    s.close()
    healthy()


def test_garbage_http2_frames():
    s = tls_socket()
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    # A frame of unknown layout: a HEADERS frame on stream 0 is a
    # connection error (RFC 7540 6.2); then noise.
    s.sendall(struct.pack(">I", 5)[1:] + b"\x01\x04\x00\x00\x00\x00" + b"\xff" * 5 +
              os.urandom(256))
    data = b""
    s.settimeout(5)
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except (ConnectionError, ssl.SSLError, socket.timeout):
        pass
    s.close()
    # nghttp2 answers a protocol error with GOAWAY (type 7) before closing.
    assert b"\x07" in data, data.hex()
    healthy()


def test_slow_handshake_closed():
    s = socket.create_connection(("127.0.0.1", PORT), timeout=5)
    s.sendall(b"\x16\x03\x01")  # the first bytes of a ClientHello, and no more
    start = time.time()
    assert closed_within(s, 5), "a stalled handshake was not closed"
    assert time.time() - start < 3
    s.close()
    healthy()


def test_idle_connection_closed():
    s = tls_socket()
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    s.sendall(conn.data_to_send())
    start = time.time()
    goaway = False
    s.settimeout(5)
    try:
        while time.time() - start < 5:
            data = s.recv(65536)
            if not data:
                break
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ConnectionTerminated):
                    goaway = True
            s.sendall(conn.data_to_send())
    except (ConnectionError, ssl.SSLError, socket.timeout):
        pass
    s.close()
    assert goaway, "no GOAWAY on idle"
    assert time.time() - start < 4
    healthy()


def test_deadline_enforced_by_server():
    s = tls_socket()
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, [(":method", "POST"), (":scheme", "https"),
                            (":path", "/pki.v1.Pki/IssueStream"),
                            (":authority", "pki-ca"), ("content-type", "application/grpc"),
                            ("te", "trailers"), ("grpc-timeout", "300m")])
    s.sendall(conn.data_to_send())  # the stream stays open: no END_STREAM
    status = None
    start = time.time()
    s.settimeout(5)
    try:
        while status is None and time.time() - start < 5:
            data = s.recv(65536)
            if not data:
                break
            for ev in conn.receive_data(data):
                if isinstance(ev, (h2.events.TrailersReceived, h2.events.ResponseReceived)):
                    for k, v in ev.headers:
                        if k in (b"grpc-status", "grpc-status"):
                            status = int(v)
            s.sendall(conn.data_to_send())
    except (ConnectionError, ssl.SSLError, socket.timeout):
        pass
    s.close()
    assert status == grpc.StatusCode.DEADLINE_EXCEEDED.value[0], status
    assert time.time() - start < 2


def test_connection_flood():
    socks = []
    refused = 0
    for _ in range(MAX_CONNS + 20):
        try:
            socks.append(socket.create_connection(("127.0.0.1", PORT), timeout=5))
        except OSError:
            refused += 1
    # Past the limit pkid closes new connections at accept.
    closed = sum(1 for s in socks[MAX_CONNS:] if closed_within(s, 2))
    for s in socks:
        s.close()
    assert closed + refused >= 10, (closed, refused)
    time.sleep(0.2)
    healthy()


def test_still_running():
    healthy()
    assert SERVER.proc.poll() is None, "pkid exited"


try:
    run("garbage_instead_of_tls", test_garbage_instead_of_tls)
    run("garbage_http2_frames", test_garbage_http2_frames)
    run("slow_handshake_closed", test_slow_handshake_closed)
    run("idle_connection_closed", test_idle_connection_closed)
    run("deadline_enforced_by_server", test_deadline_enforced_by_server)
    run("connection_flood", test_connection_flood)
    run("still_running", test_still_running)
finally:
    SERVER.stop()
finish()
