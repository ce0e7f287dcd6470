"""pgtest.py: a real PostgreSQL 15 made by a test, on loopback.

    from pgtest import Postgres
    pg = Postgres().start()                 # initdb, postgres on 127.0.0.1:<free port>
    try:
        pg.apply("deploy/postgres/migrations/0001_fleet.sql")
        pg.psql("INSERT INTO t VALUES (:'v')", v="x")   # psql variables, quoted by psql
        rows = pg.psql("SELECT a, b FROM t")            # [("1", "x"), ...]
        client_args = ["--postgres", pg.conninfo()]
        standby = pg.standby()              # pg_basebackup -R, started, following
        standby.promote()                   # now a primary
        pg.kill()                           # SIGKILL of the postmaster (a crash)
        pg.restart()                        # same port, crash recovery
    finally:
        pg.cleanup()                        # stops it and its standbys, removes the files

Authentication: the superuser |user| has a random |password|, and TCP
connections (clients, replication) must give it (scram-sha-256); only the
unix socket, in the instance's own directory, is trusted. So the conninfo a
test hands to pkid or pkictl carries a real password, as in production, and
a test can check that no output repeats it; with trust, a client that lost
the password on the way would still connect.

The server runs as the `postgres` user when the test runs as root (initdb
and postgres refuse root), in a directory under /tmp, since postgres cannot
reach Bazel's TEST_TMPDIR under /root. postgres is started directly (not by
pg_ctl), so the pid the harness holds is the postmaster's, and kill() is a
real SIGKILL of it. fsync stays on unless a test says otherwise: the
durability the fleet relies on is the database's own.

Every wait is bounded (|timeout|, seconds). Every process started is
stopped by stop() or cleanup(), also when the test fails (call cleanup()
in a finally); a SIGTERM (Bazel's timeout) and interpreter exit stop them
too. Standard library only."""
import atexit
import csv
import io
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time

BIN = "/usr/lib/postgresql/15/bin"
PSQL = "/usr/bin/psql"
RUN_AS = "postgres"  # when root

_LIVE = []  # started and not yet stopped, for the exit handlers below


def _stop_all():
    for pg in list(_LIVE):
        try:
            pg.stop()
        except Exception:  # noqa: BLE001 - stop the others anyway
            pass


def _on_sigterm(signum, frame):
    # Raise, so that the test's finally blocks and atexit run.
    raise SystemExit(128 + signum)


atexit.register(_stop_all)
if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
    signal.signal(signal.SIGTERM, _on_sigterm)


def free_port():
    """A TCP port on 127.0.0.1 nothing listens on now."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _as_server_user():
    """subprocess arguments that run a child as the postgres user when we
    are root (setuid in the child, no wrapper process: the pid is the
    server's own), else nothing."""
    if os.geteuid() != 0:
        return {}
    pw = pwd.getpwnam(RUN_AS)
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


def _children(pid):
    """The pids whose parent is |pid| (from /proc)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                stat = f.read()
        except OSError:
            continue
        # The command may hold spaces and parentheses; the fields after
        # the last ')' are state, ppid, ...
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid:
            out.append(int(name))
    return out


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


class Postgres:
    """One PostgreSQL server: a data directory, a postmaster, a log."""

    def __init__(self, tmp_parent=None, user="pkid", password=None, settings=None,
                 timeout=30):
        self.base = tempfile.mkdtemp(prefix="pgtest-", dir=tmp_parent or "/tmp")
        self.data = os.path.join(self.base, "data")
        self.sock_dir = os.path.join(self.base, "sock")
        self.log_path = os.path.join(self.base, "postgres.log")
        self.user = user
        self.password = password or secrets.token_hex(16)
        # Extra server settings (-c name=value), e.g. {"fsync": "off"}.
        self.settings = dict(settings or {})
        self.timeout = timeout
        self.port = None
        self.proc = None
        self.standbys = []
        self._initialized = False
        os.makedirs(self.sock_dir)
        if os.geteuid() == 0:
            pw = pwd.getpwnam(RUN_AS)
            for d in (self.base, self.sock_dir):
                os.chown(d, pw.pw_uid, pw.pw_gid)

    # --- the server -------------------------------------------------------

    def _run_tool(self, args, input_text=None):
        """Runs a PostgreSQL tool as the server's user; raises with its
        output when it fails."""
        env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "PGPASSWORD": self.password}
        p = subprocess.run(args, cwd=self.base, env=env, input=input_text, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=self.timeout * 2, **_as_server_user())
        if p.returncode != 0:
            raise RuntimeError("%s failed (%d):\n%s" % (args[0], p.returncode, p.stdout))
        return p.stdout

    def _initdb(self):
        pwfile = os.path.join(self.base, "pwfile")
        with open(pwfile, "w") as f:
            f.write(self.password + "\n")
        if os.geteuid() == 0:
            pw = pwd.getpwnam(RUN_AS)
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        os.chmod(pwfile, 0o600)
        try:
            self._run_tool([os.path.join(BIN, "initdb"), "-D", self.data, "-U", self.user,
                            "--pwfile", pwfile, "--auth-local=trust",
                            "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C",
                            "--no-instructions"])
        finally:
            os.unlink(pwfile)

    def start(self):
        """initdb (the first time), then starts the server and waits until
        it accepts connections (a standby: read-only ones). Makes the
        database "pkid" the first time. Returns self."""
        first = not self._initialized
        if first and not os.path.exists(self.data):
            self._initdb()
        self._initialized = True
        keep_port = self.port is not None
        for _ in range(3):
            if not keep_port:
                self.port = free_port()
            if self._spawn():
                break
            # Only a port taken between free_port and bind is retried.
            if keep_port or "already in use" not in self.log():
                raise RuntimeError("postgres did not start:\n" + self.log())
        else:
            raise RuntimeError("postgres found no free port:\n" + self.log())
        _LIVE.append(self)
        if first and not os.path.exists(os.path.join(self.data, "standby.signal")):
            self.create_db("pkid")
        return self

    def _spawn(self):
        args = [os.path.join(BIN, "postgres"), "-D", self.data, "-p", str(self.port),
                "-k", self.sock_dir, "-c", "listen_addresses=127.0.0.1"]
        for name, value in self.settings.items():
            args += ["-c", "%s=%s" % (name, value)]
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(args, cwd=self.base, env={"PATH": "/usr/bin:/bin",
                                                               "LC_ALL": "C"},
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                     **_as_server_user())
        log.close()
        # postmaster.pid's 8th line is the server's state; "ready" (a
        # primary) or "standby" (accepting read-only connections) is what
        # pg_ctl -w waits for too.
        pidfile = os.path.join(self.data, "postmaster.pid")
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc = None
                return False
            try:
                with open(pidfile) as f:
                    lines = f.read().split("\n")
                if (len(lines) > 7 and lines[0] == str(self.proc.pid) and
                        lines[7].strip() in ("ready", "standby")):
                    return True
            except OSError:
                pass
            time.sleep(0.05)
        self._kill_now()
        raise RuntimeError("postgres not ready after %d s:\n%s" % (self.timeout, self.log()))

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, standbys=True):
        """Fast shutdown (SIGINT: sessions are ended, then a checkpoint), of
        this server and (with |standbys|) of the standbys made from it;
        SIGKILL after |timeout|. Returns the postmaster's exit status (None
        if it was not running)."""
        for s in self.standbys if standbys else ():
            s.stop()
        if self in _LIVE:
            _LIVE.remove(self)
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                self._kill_now()
        rc, self.proc = self.proc.returncode, None
        return rc

    def kill(self):
        """SIGKILL of the postmaster, as a crash. Its children end when they
        see it gone (PostgreSQL's own postmaster-death check); they are
        waited for, then killed after |timeout|, so that restart() finds no
        old process holding the shared memory."""
        if self.proc is None:
            return
        children = _children(self.proc.pid)
        self.proc.kill()
        self.proc.wait()
        self.proc = None
        if self in _LIVE:
            _LIVE.remove(self)
        deadline = time.monotonic() + self.timeout
        while any(_alive(c) for c in children) and time.monotonic() < deadline:
            time.sleep(0.05)
        for c in children:
            if _alive(c):
                os.kill(c, signal.SIGKILL)

    def _kill_now(self):
        if self.proc is not None:
            children = _children(self.proc.pid)
            self.proc.kill()
            self.proc.wait()
            self.proc = None
            for c in children:
                try:
                    os.kill(c, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def restart(self):
        """stop() if running, then start() on the same port (clients find it
        where it was). Returns self."""
        if self.running():
            # Not self.stop(): that would stop the standbys too.
            if self in _LIVE:
                _LIVE.remove(self)
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                self._kill_now()
            self.proc = None
        return self.start()

    def cleanup(self):
        """stop(), then removes the files (the log is copied to
        $TEST_UNDECLARED_OUTPUTS_DIR first, when Bazel gives one)."""
        for s in self.standbys:
            s.cleanup()
        self.stop()
        out = os.environ.get("TEST_UNDECLARED_OUTPUTS_DIR")
        if out and os.path.exists(self.log_path):
            shutil.copy(self.log_path, os.path.join(out, os.path.basename(self.base) + ".log"))
        shutil.rmtree(self.base, ignore_errors=True)

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    # --- clients ----------------------------------------------------------

    def conninfo(self, db="pkid", password=True):
        """A libpq conninfo string for |db| over TCP (with the password
        unless |password| is false)."""
        s = "host=127.0.0.1 port=%d dbname=%s user=%s" % (self.port, db, self.user)
        if password:
            s += " password=%s" % self.password
        return s

    def psql(self, sql, db="pkid", **variables):
        """Runs |sql| (one or more statements) in |db| and returns the rows
        the statements printed, as tuples of strings ('' for NULL).
        |variables| are psql variables: :'name' in |sql| is the value as a
        quoted literal, :"name" as a quoted identifier. Raises on an error
        (ON_ERROR_STOP)."""
        # CSV quotes what holds a comma or a newline, so rows read back
        # exactly, also those of several statements.
        args = [PSQL, "-X", "-q", "--csv", "-t", "-v", "ON_ERROR_STOP=1", "-d",
                self.conninfo(db, password=False)]
        for name, value in variables.items():
            args += ["-v", "%s=%s" % (name, value)]
        env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "PGPASSWORD": self.password,
               "PGCONNECT_TIMEOUT": str(self.timeout)}
        p = subprocess.run(args, input=sql, text=True, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=self.timeout * 2)
        if p.returncode != 0:
            raise RuntimeError("psql failed (%d): %s" % (p.returncode, p.stderr.strip()))
        return [tuple(r) for r in csv.reader(io.StringIO(p.stdout))]

    def create_db(self, name):
        self.psql('CREATE DATABASE :"name"', db="postgres", name=name)

    def apply(self, path, db="pkid"):
        """Runs a migration file in one transaction, as pkid would."""
        with open(path) as f:
            sql = f.read()
        self.psql("BEGIN;\n" + sql + "\nCOMMIT;\n", db=db)

    # --- replication ------------------------------------------------------

    def standby(self):
        """A streaming-replication standby of this server: pg_basebackup -R
        (standby.signal and primary_conninfo, with the password), started.
        Stopped with this one; returns it."""
        s = Postgres(tmp_parent=os.path.dirname(self.base), user=self.user,
                     password=self.password, settings=self.settings, timeout=self.timeout)
        s._run_tool([os.path.join(BIN, "pg_basebackup"), "-d",
                     "host=127.0.0.1 port=%d user=%s password=%s" % (
                         self.port, self.user, self.password),
                     "-D", s.data, "-R", "-X", "stream", "-c", "fast"])
        self.standbys.append(s)
        return s.start()

    def in_recovery(self):
        return self.psql("SELECT pg_is_in_recovery()", db="postgres") == [("t",)]

    def promote(self):
        """Makes this standby a primary, waiting until it accepts writes."""
        rows = self.psql("SELECT pg_promote(true, %d)" % self.timeout, db="postgres")
        if rows != [("t",)]:
            raise RuntimeError("promotion not done in %d s:\n%s" % (self.timeout, self.log()))
        return self
