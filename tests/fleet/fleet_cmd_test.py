#!/usr/bin/python3
"""fleet_cmd_test: `pkictl fleet status` and `pkictl inventory` on a real
PostgreSQL 15 made here (tests/lib/pgtest.py), with the schema of
deploy/postgres/migrations/ applied by psql and rows written as pkid nodes
write them.

The fleet: node 1 (live lease, journal 120, shipped 117), node 2 (lease
run out, journal and shipped 40), and certificates of node 3, which has no
lease row (as after a node id was retired). Times are relative to the
database's now(), which is what pkictl measures against too.

Cases:
  - the harness: a standby made by pg_basebackup follows its primary (a
    row inserted there is read on the standby within a bound), refuses
    writes, and takes them once promoted;
  - fleet status, as JSON and as a table: every node, lag, lease left or
    "expired", certificates issued by each node and revoked among them
    (a revocation through node 1 of node 2's certificate counts for
    node 2);
  - inventory: all, --service, --expiring-within (not expired yet),
    both, --node, --revoked, --valid, as tables and JSON: exactly the
    rows expected, by not_after;
  - the harness's kill(): a SIGKILL'd server restarts on its port with
    what it had committed;
  - bad flags exit 2 with the usage; a database without the schema, a
    wrong password and a database stopped exit 1 with a clear message;
    the password is never printed, in any of these.

Usage: fleet_cmd_test.py PKICTL MIGRATION
"""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from pgtest import Postgres  # noqa: E402
from testlib import finish, run  # noqa: E402

PKICTL, MIGRATION = (os.path.abspath(p) for p in sys.argv[1:3])
REPLICATION_BOUND_S = 10

# (serial, node, ca, service, usage, not_after from now)
CERTS = [
    ("0001000000000000a1", 1, "infrastructure-ca", "vault", "server", "2 days"),
    ("0001000000000000a2", 1, "infrastructure-ca", "vault", "client", "10 days"),
    ("0002000000000000b1", 2, "agents-ca", "pki-agent", "client", "5 days"),
    ("0002000000000000b2", 2, "infrastructure-ca", "grafana", "server", "-1 days"),
    ("0002000000000000b3", 2, "infrastructure-ca", "vault", "server", "40 days"),
    ("0003000000000000c1", 3, "loadbalancer-ca", "haproxy", "server", "20 days"),
]
REVOKED = "0002000000000000b1"  # keyCompromise, through node 1
BY_NOT_AFTER = ["0002000000000000b2", "0001000000000000a1", "0002000000000000b1",
                "0001000000000000a2", "0003000000000000c1", "0002000000000000b3"]

PG = Postgres()
OUTPUTS = []  # every pkictl stdout and stderr, checked for the password


def pkictl(*args, db="pkid", conninfo=None):
    """Runs pkictl with --postgres (unless None) and returns (rc, stdout, stderr)."""
    argv = [PKICTL] + list(args)
    if db is not None:
        argv += ["--postgres", conninfo or PG.conninfo(db)]
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=30)
    OUTPUTS.append(p.stdout + p.stderr)
    return p.returncode, p.stdout, p.stderr


def ok(*args):
    rc, out, err = pkictl(*args)
    assert rc == 0, "pkictl %s: %d\n%s" % (" ".join(args), rc, err)
    assert err == "", err
    return out


def table(out):
    """(header, rows) of a table whose cells hold no spaces."""
    lines = out.splitlines()
    return lines[0].split(), [line.split() for line in lines[1:]]


def load_fleet():
    PG.apply(MIGRATION)
    PG.psql("""
INSERT INTO pkid_nodes (node_id, holder, host, version, started_at, renewed_at, lease_until,
                        journal_seq, shipped_seq)
VALUES (1, 'holder-one', 'ca-1.local', '0.5.0', now() - interval '1 hour', now(),
        now() + interval '25 seconds', 120, 117),
       (2, 'holder-two', 'ca-2.local', '0.4.9', now() - interval '3 hours',
        now() - interval '2 minutes', now() - interval '90 seconds', 40, 40);
""")
    for serial, node, ca, service, usage, after in CERTS:
        PG.psql("""
INSERT INTO pkid_certificates (serial, node_id, journal_seq, ca, service, identity, usage,
                               not_before, not_after, key_sha256, der, issued_at)
VALUES (decode(:'serial', 'hex'), :node, 7, :'ca', :'service', 'spiffe://x/' || :'service',
        :'usage', now() - interval '1 day', now() + :'after'::interval,
        sha256('k'::bytea), '\\x3000'::bytea, now() - interval '1 day');
""", serial=serial, node=node, ca=ca, service=service, usage=usage, after=after)
    PG.psql("""
INSERT INTO pkid_revocations (serial, reason, revoked_at, identity, node_id, journal_seq)
VALUES (decode(:'serial', 'hex'), 1, now() - interval '1 hour', 'spiffe://x/admin', 1, 99);
""", serial=REVOKED)


def test_standby_follows_and_promotes():
    standby = PG.standby()
    assert standby.in_recovery()
    PG.psql("CREATE TABLE harness_probe (v text); INSERT INTO harness_probe VALUES ('one')")
    deadline = time.monotonic() + REPLICATION_BOUND_S
    while True:
        try:
            if standby.psql("SELECT v FROM harness_probe") == [("one",)]:
                break
        except RuntimeError:
            pass  # the table is not there yet
        assert time.monotonic() < deadline, "standby behind after %d s" % REPLICATION_BOUND_S
        time.sleep(0.05)
    try:
        standby.psql("INSERT INTO harness_probe VALUES ('refused')")
        raise AssertionError("a standby took a write")
    except RuntimeError as e:
        assert "read-only" in str(e), e
    standby.promote()
    assert not standby.in_recovery()
    standby.psql("INSERT INTO harness_probe VALUES ('two')")
    assert standby.psql("SELECT v FROM harness_probe ORDER BY v") == [("one",), ("two",)]
    standby.cleanup()
    PG.standbys.remove(standby)
    PG.psql("DROP TABLE harness_probe")


def test_status_json():
    nodes = json.loads(ok("fleet", "status", "--json"))["nodes"]
    assert [n["node_id"] for n in nodes] == [1, 2, 3], nodes
    one, two, three = nodes
    assert (one["host"], one["holder"], one["version"]) == ("ca-1.local", "holder-one", "0.5.0")
    assert (one["journal_seq"], one["shipped_seq"], one["lag"]) == (120, 117, 3), one
    assert one["lease_expired"] is False and 10 <= one["lease_left_s"] <= 25, one
    assert (one["certificates"], one["revoked"]) == (2, 0), one
    assert two["lease_expired"] is True and two["lease_left_s"] == 0, two
    assert (two["journal_seq"], two["shipped_seq"], two["lag"]) == (40, 40, 0), two
    assert (two["certificates"], two["revoked"]) == (3, 1), two
    assert two["version"] == "0.4.9"
    for key in ("started_at", "lease_until"):
        assert one[key].endswith("Z") and len(one[key]) == 20, one[key]
    # Certificates of a node id that has no lease row.
    assert three["host"] is None and three["lease_expired"] is None, three
    assert (three["certificates"], three["revoked"]) == (1, 0), three


def test_status_table():
    head, rows = table(ok("fleet", "status"))
    assert head == ["NODE", "HOST", "VERSION", "STARTED", "LEASE", "JOURNAL", "SHIPPED", "LAG",
                    "CERTS", "REVOKED", "HOLDER"], head
    assert len(rows) == 3, rows
    one, two, three = rows
    assert one[:3] == ["1", "ca-1.local", "0.5.0"], one
    assert one[4].endswith("s") and one[4] != "expired", one
    assert one[5:] == ["120", "117", "3", "2", "0", "holder-one"], one
    assert two[4] == "expired", two
    assert two[5:] == ["40", "40", "0", "3", "1", "holder-two"], two
    assert three == ["3", "-", "-", "-", "-", "-", "-", "-", "1", "0", "-"], three


def serials(*args):
    head, rows = table(ok("inventory", *args))
    assert head == ["SERIAL", "SERVICE", "USAGE", "CA", "NOT_AFTER", "NODE", "STATE", "REASON",
                    "REVOKED_AT"], head
    return [r[0] for r in rows], rows


def test_inventory_table():
    got, rows = serials()
    assert got == BY_NOT_AFTER, got
    by_serial = {r[0]: r for r in rows}
    revoked = by_serial[REVOKED]
    assert revoked[1:4] == ["pki-agent", "client", "agents-ca"], revoked
    assert revoked[5:8] == ["2", "revoked", "keyCompromise"], revoked
    assert revoked[8].endswith("Z"), revoked
    assert by_serial["0002000000000000b2"][6:] == ["expired", "-", "-"]
    assert by_serial["0001000000000000a1"][6:] == ["valid", "-", "-"]


def test_inventory_filters():
    want = {
        ("--service", "vault"): ["0001000000000000a1", "0001000000000000a2",
                                 "0002000000000000b3"],
        # Not the expired grafana certificate: it is not "expiring".
        ("--expiring-within", "7d"): ["0001000000000000a1", "0002000000000000b1"],
        ("--expiring-within", "168h"): ["0001000000000000a1", "0002000000000000b1"],
        ("--service", "vault", "--expiring-within", "7d"): ["0001000000000000a1"],
        ("--node", "2"): ["0002000000000000b2", "0002000000000000b1", "0002000000000000b3"],
        ("--revoked",): [REVOKED],
        ("--valid",): ["0001000000000000a1", "0001000000000000a2", "0003000000000000c1",
                       "0002000000000000b3"],
        ("--service", "vault", "--revoked"): [],
        ("--service", "no-such-service"): [],
    }
    for args, expected in want.items():
        got, _ = serials(*args)
        assert got == expected, "%s: got %s, want %s" % (args, got, expected)


def test_inventory_json():
    certs = json.loads(ok("inventory", "--json"))["certificates"]
    assert [c["serial"] for c in certs] == BY_NOT_AFTER, certs
    revoked = [c for c in certs if c["revoked"]]
    assert len(revoked) == 1, revoked
    r = revoked[0]
    assert (r["serial"], r["service"], r["usage"], r["ca"], r["node_id"], r["state"],
            r["reason"]) == (REVOKED, "pki-agent", "client", "agents-ca", 2, "revoked",
                             "keyCompromise"), r
    assert r["revoked_at"].endswith("Z") and r["not_after"].endswith("Z"), r
    fine = [c for c in certs if not c["revoked"]]
    assert all(c["reason"] is None and c["revoked_at"] is None for c in fine), fine
    got = json.loads(ok("inventory", "--json", "--expiring-within", "7d", "--revoked"))
    assert [c["serial"] for c in got["certificates"]] == [REVOKED], got
    empty = json.loads(ok("inventory", "--json", "--service", "nothing"))
    assert empty == {"certificates": []}, empty


def expect_usage(args, words, db="pkid", conninfo=None):
    rc, out, err = pkictl(*args, db=db, conninfo=conninfo)
    assert rc == 2, "%s: exit %d, want 2\n%s" % (args, rc, err)
    assert out == "", out
    assert words in err and "usage: pkictl" in err, err


def test_bad_flags():
    expect_usage(["inventory", "--revoked", "--valid"], "exclude each other")
    expect_usage(["inventory", "--expiring-within", "7x"], "--expiring-within wants")
    expect_usage(["inventory", "--expiring-within", ""], "--expiring-within wants")
    expect_usage(["inventory", "--node", "40000"], "--node wants")
    expect_usage(["inventory", "--node", "one"], "--node wants")
    expect_usage(["inventory", "--frobnicate"], "unknown or incomplete option")
    expect_usage(["inventory", "extra"], "unexpected argument")
    expect_usage(["inventory"], "--postgres CONNINFO is required", db=None)
    expect_usage(["fleet"], "fleet takes status", db=None)
    expect_usage(["fleet", "nodes"], "fleet takes status", db=None)
    expect_usage(["fleet", "status", "--service", "vault"], "unknown or incomplete option")
    # A conninfo libpq cannot parse: libpq's message would quote it.
    bad = "host=127.0.0.1 password %s" % PG.password
    expect_usage(["fleet", "status"], "not a libpq connection string", conninfo=bad)


def test_no_schema():
    PG.create_db("empty")
    for args in (["fleet", "status"], ["inventory", "--json"]):
        rc, out, err = pkictl(*args, db="empty")
        assert rc == 1 and out == "", (rc, out, err)
        assert err == ("pkictl: not-found: no pkid schema in this database; start a pkid "
                       "with --postgres first\n"), err


def test_wrong_password():
    conninfo = PG.conninfo().replace("password=", "password=wrong")
    rc, out, err = pkictl("fleet", "status", conninfo=conninfo)
    assert rc == 1 and out == "", (rc, out, err)
    assert "cannot connect to PostgreSQL" in err and "password authentication failed" in err, err


def test_kill_and_restart():
    """The harness's crash: SIGKILL of the postmaster, its children gone,
    and after restart() (same port, crash recovery) what was committed is
    there."""
    PG.psql("CREATE TABLE crash_probe (v text); INSERT INTO crash_probe VALUES ('kept')")
    port, pid = PG.port, PG.proc.pid
    PG.kill()
    assert not PG.running()
    assert not os.path.exists("/proc/%d" % pid)  # killed and reaped
    rc, _, err = pkictl("fleet", "status")
    assert rc == 1 and "unavailable" in err, err
    PG.restart()
    assert PG.port == port
    assert PG.psql("SELECT v FROM crash_probe") == [("kept",)]
    PG.psql("DROP TABLE crash_probe")


def test_database_down():
    PG.stop()
    try:
        for args in (["fleet", "status"], ["inventory", "--service", "vault"]):
            started = time.monotonic()
            rc, out, err = pkictl(*args)
            assert rc == 1 and out == "", (rc, out, err)
            assert err.startswith("pkictl: unavailable: cannot connect to PostgreSQL: "), err
            assert "Connection refused" in err and err.count("\n") == 1, err
            assert time.monotonic() - started < 10
    finally:
        PG.restart()
    assert len(json.loads(ok("fleet", "status", "--json"))["nodes"]) == 3


def test_password_never_printed():
    assert OUTPUTS, "no pkictl run"
    for text in OUTPUTS:
        assert PG.password not in text, text


try:
    PG.start()
    run("standby_follows_and_promotes", test_standby_follows_and_promotes)
    load_fleet()
    run("status_json", test_status_json)
    run("status_table", test_status_table)
    run("inventory_table", test_inventory_table)
    run("inventory_filters", test_inventory_filters)
    run("inventory_json", test_inventory_json)
    run("bad_flags", test_bad_flags)
    run("no_schema", test_no_schema)
    run("wrong_password", test_wrong_password)
    run("kill_and_restart", test_kill_and_restart)
    run("database_down", test_database_down)
    run("password_never_printed", test_password_never_printed)
finally:
    PG.cleanup()
finish()
