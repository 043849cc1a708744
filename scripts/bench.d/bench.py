"""salve's benchmark driver (stdlib only; run by scripts/bench, which prepares the machine).

Measures, in one run, every figure of issue 5 together with the floor it is judged
against, and writes them to a table on stdout and to target/bench/results.json:

  floors   disk fsync rate where the journal lives; one command over a warm ControlMaster
           socket, both with OpenSSH's own `ssh` and with a native mux client (the protocol
           the openssh crate's native-mux feature speaks, no process per command);
  intake   wrk against `salve serve --dry-run` posting Alertmanager v4 notifications,
           each a new incident; every 2xx checked against the journal afterwards;
  latency  enforcing salve, warm master: alert POST -> the recipe's command running on the
           target (the command prints `date +%s.%N`), one alert at a time;
  storm    1,000 alerts for 100 inventory hosts (command + command check) against raw
           parallel `ssh` over ControlMaster sockets at the same concurrency;
  rss      salve's VmRSS idle after start and VmHWM at the storm's peak;
  intake_pg  the intake stage with salve's store on PostgreSQL (a fresh database on the
           private cluster scripts/bench starts), compared with the SQLite intake;
  storm_pg   the storm with one salve on PostgreSQL, then with three salves sharing one
           database (the alert POSTs split round-robin across them), against the same
           raw-ssh floor and compared with the SQLite storm.

The SQLite stages read salve's journal file directly; the PostgreSQL ones read the
database with `psql`.

Every process it starts (sshd namespaces, salve, ssh masters) is written to the PID file
given by scripts/bench, whose exit trap kills what is still alive; this script also stops
them itself on the way out.
"""

import argparse
import calendar
import concurrent.futures
import copy
import http.client
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import muxclient  # noqa: E402

TARGET_USER = "salvetarget"
TOKEN = "bench-" + secrets.token_hex(12)
ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
FINAL_STATES = {
    "succeeded", "failed", "verify_failed", "resolved_before_run", "refused",
    "unmatched", "breaker_open", "rate_limited", "dry_run", "interrupted",
}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def median(values):
    return statistics.median(values) if values else float("nan")


def percentile(values, p):
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def parse_ts(text: str) -> float:
    """RFC 3339 UTC with up to 9 fractional digits -> Unix seconds (float)."""
    match = re.fullmatch(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text)
    if not match:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    y, mo, d, h, mi, s, frac, zone = match.groups()
    seconds = calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(s)))
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return seconds + (float("0." + frac) if frac else 0.0)


def rfc3339_now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e9):09d}Z"


def free_port(ip: str) -> int:
    with socket.socket() as sock:
        sock.bind((ip, 0))
        return sock.getsockname()[1]


def proc_status(pid: int, field: str) -> int | None:
    """A `kB` field of /proc/PID/status (VmRSS, VmHWM), in bytes."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def proc_cpu_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return None


def remote_line(command: str, timeout_s: int, simple: bool) -> str:
    """What salve's executor sends for a non-sudo command (engine/remediate.rs remote_line):
    a simple command (one program, literal arguments: `is_simple_command` there) right after
    `timeout`, anything else as one quoted word for `sh -c`."""
    if simple:
        return f"timeout -k 5 {max(timeout_s, 1) + 5} {command}"
    quoted = "'" + command.replace("'", "'\\''") + "'"
    return f"timeout -k 5 {max(timeout_s, 1) + 5} sh -c {quoted}"


def psql(url: str, sql: str) -> str:
    """One statement through /usr/bin/psql (unaligned, tuples only, tab-separated)."""
    out = subprocess.run(
        ["/usr/bin/psql", "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql],
        capture_output=True, text=True, timeout=300,
    )
    if out.returncode != 0:
        raise RuntimeError(f"psql failed ({out.returncode}) on {sql[:200]!r}: {out.stderr.strip()}")
    return out.stdout


def database_url(admin_url: str, name: str) -> str:
    """The admin URL (`postgres://user@host:port/postgres[?options]`) with another database
    name (options kept)."""
    parts = urllib.parse.urlsplit(admin_url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


class PsqlReader:
    """The little of sqlite3.Connection the stages use (`execute(sql).fetchone()/fetchall()`),
    answered by psql against a PostgreSQL store; integer fields come back as int."""

    class Rows:
        def __init__(self, rows):
            self.rows = rows

        def fetchone(self):
            return self.rows[0] if self.rows else None

        def fetchall(self):
            return self.rows

    def __init__(self, url: str):
        self.url = url

    def execute(self, sql: str, params=()):
        if params:
            raise ValueError("PsqlReader takes no parameters")
        rows = []
        for line in psql(self.url, sql).splitlines():
            rows.append(tuple(int(f) if re.fullmatch(r"-?\d+", f) else f for f in line.split("\t")))
        return PsqlReader.Rows(rows)

    def close(self) -> None:
        pass


class Processes:
    """Everything this run started, by PID, recorded for scripts/bench's trap too."""

    def __init__(self, pid_file: Path):
        self.pid_file = pid_file
        self.lock = threading.Lock()

    def record(self, pid: int, name: str) -> None:
        with self.lock, open(self.pid_file, "a") as out:
            out.write(f"{pid} {name}\n")


class SshHost:
    """A private sshd in its own mount + PID namespace (like tests/it/support/sshd.rs)."""

    def __init__(self, bench, ip: str, name: str):
        self.ip = ip
        self.name = name
        self.dir = bench.work / f"sshd-{name}"
        self.dir.mkdir()
        self.dir.chmod(0o755)
        host_key = self.dir / "host_key"
        keygen(host_key, f"salve-bench-host-{name}")
        self.host_public_key = " ".join((self.dir / "host_key.pub").read_text().split()[:2])
        self.log_path = self.dir / "sshd.log"
        self.proc = None
        self.init_pid = None
        for attempt in range(3):
            self.port = free_port(ip)
            config = self.dir / "sshd_config"
            config.write_text(
                f"ListenAddress {ip}:{self.port}\n"
                f"HostKey {host_key}\n"
                f"AuthorizedKeysFile {bench.authorized_keys}\n"
                f"PidFile {self.dir / 'sshd.pid'}\n"
                "UsePAM no\nStrictModes no\nPasswordAuthentication no\n"
                "KbdInteractiveAuthentication no\nPermitRootLogin no\n"
                f"AllowUsers {TARGET_USER}\nPrintMotd no\nUseDNS no\n"
                # A storm opens up to engine.max_parallel masters at once on one sshd:
                # the default MaxStartups (10:30:100) would drop some of them.
                "MaxStartups 1000\nMaxSessions 100\n"
            )
            check = subprocess.run(["/usr/sbin/sshd", "-t", "-f", str(config)], capture_output=True, text=True)
            if check.returncode != 0:
                raise RuntimeError(f"sshd -t rejected {config}: {check.stderr}")
            script = (
                "set -eu\n"
                "mount -t tmpfs -o size=16m,mode=1777 salve-bench-tmp /tmp\n"
                'exec /usr/sbin/sshd -D -e -f "$1"\n'
            )
            logfile = open(self.log_path, "w")
            self.proc = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "--pid", "--fork",
                 "--mount-proc", "--kill-child", "--", "/bin/sh", "-c", script,
                 "salve-bench-host", str(config)],
                stdin=subprocess.DEVNULL, stdout=logfile, stderr=logfile,
                env={"PATH": ROOT_PATH}, start_new_session=True,
            )
            logfile.close()
            bench.procs.record(self.proc.pid, "unshare")
            deadline = time.monotonic() + 15
            while True:
                text = self.log_path.read_text(errors="replace")
                if "Server listening on" in text:
                    children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
                    self.init_pid = int(children[0]) if children else None
                    if self.init_pid:
                        bench.procs.record(self.init_pid, "sshd")
                    return
                if self.proc.poll() is not None:
                    if "Address already in use" in text and attempt < 2:
                        break
                    raise RuntimeError(f"sshd exited before listening:\n{text[-2000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sshd not listening after 15 s:\n{text[-2000:]}")
                time.sleep(0.01)
        raise RuntimeError("sshd could not bind a free port")

    def known_hosts_line(self) -> str:
        return f"[{self.ip}]:{self.port} {self.host_public_key}"

    def accepted_logins(self) -> int:
        return self.log_path.read_text(errors="replace").count("Accepted publickey for")

    def stop(self) -> None:
        if self.init_pid:
            try:
                os.kill(self.init_pid, signal.SIGKILL)  # the kernel kills the whole namespace
            except ProcessLookupError:
                pass
        if self.proc and self.proc.poll() is None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def keygen(path: Path, comment: str) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True)


class Salve:
    """One `salve serve` in its own directory (config, recipes, journal, logs)."""

    def __init__(self, bench, name: str, config: str, recipes: dict[str, str] | Path, dry_run=False,
                 pg_url: str | None = None):
        self.bench = bench
        self.pg_url = pg_url  # the store is this PostgreSQL database, not salve.db
        self.dir = bench.work / name
        self.dir.mkdir()
        (self.dir / "salve.toml").write_text(config)
        recipes_dir = self.dir / "recipes"
        if isinstance(recipes, Path):
            shutil.copytree(recipes, recipes_dir, ignore=shutil.ignore_patterns("tests"))
        else:
            recipes_dir.mkdir()
            for file, text in recipes.items():
                (recipes_dir / file).write_text(text)
        self.db = self.dir / "salve.db"
        env = {key: os.environ[key] for key in ("PATH", "HOME") if key in os.environ}
        self.env = env
        command = [str(bench.salve), "serve", "--config", str(self.dir / "salve.toml")]
        if dry_run:
            command.append("--dry-run")
        self.stderr_path = self.dir / "salve.stderr.log"
        stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen(
            command, cwd=self.dir, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=stderr, text=True, start_new_session=True,
        )
        stderr.close()
        bench.procs.record(self.proc.pid, "salve")
        self.pid = self.proc.pid
        ready = {}

        def wait_ready():
            for line in self.proc.stdout:
                if line.startswith("listening on "):
                    ready["address"] = line.split("listening on ", 1)[1].strip()
                    break
            # Keep draining stdout so salve never blocks on a full pipe.
            for _ in self.proc.stdout:
                pass

        threading.Thread(target=wait_ready, daemon=True).start()
        deadline = time.monotonic() + 30
        while "address" not in ready:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"salve did not start:\n{self.stderr_path.read_text()[-3000:]}")
            time.sleep(0.01)
        self.host, port = ready["address"].rsplit(":", 1)
        self.port = int(port)
        self.started_at = time.monotonic()

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=30)

    def post(self, conn: http.client.HTTPConnection, body: bytes) -> int:
        conn.request("POST", "/hooks/alertmanager", body=body, headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {TOKEN}",
            "User-Agent": "Alertmanager/0.25.0",
        })
        response = conn.getresponse()
        response.read()
        return response.status

    def metrics(self) -> str:
        conn = self.connection()
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        conn.close()
        return text

    def reader(self) -> sqlite3.Connection | PsqlReader:
        if self.pg_url:
            return PsqlReader(self.pg_url)
        return sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)

    def history(self, limit: int) -> list:
        if self.pg_url:
            return pg_history(self.pg_url, limit)
        out = subprocess.run(
            [str(self.bench.salve), "history", "--json", "--limit", str(limit),
             "--config", str(self.dir / "salve.toml")],
            cwd=self.dir, env=self.env, capture_output=True, text=True, timeout=300,
        )
        if out.returncode != 0:
            raise RuntimeError(f"salve history failed: {out.stderr}")
        value = json.loads(out.stdout)
        return value if isinstance(value, list) else [value]

    def rss(self) -> int | None:
        return proc_status(self.pid, "VmRSS")

    def hwm(self) -> int | None:
        return proc_status(self.pid, "VmHWM")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def pg_history(url: str, limit: int) -> list:
    """What `salve history --json` lists (newest first), read from a PostgreSQL store with
    psql: each incident's state and labels, and its journal (kind, at, detail) in order."""
    sql = (
        "SELECT coalesce(json_agg(x ORDER BY x_id DESC), '[]'::json) FROM ("
        " SELECT i.id AS x_id, json_build_object("
        "  'id', i.id, 'state', i.state, 'labels', i.labels::json,"
        "  'events', (SELECT coalesce(json_agg(json_build_object("
        "     'kind', e.kind, 'at', e.at, 'detail', e.detail::json) ORDER BY e.id), '[]'::json)"
        "   FROM events e WHERE e.incident_id = i.id)) AS x"
        f" FROM incidents i ORDER BY i.id DESC LIMIT {int(limit)}) page"
    )
    return json.loads(psql(url, sql))


class Bench:
    def __init__(self, args):
        self.args = args
        self.repo = Path(args.repo).resolve()
        self.salve = Path(args.salve).resolve()
        self.work = Path(args.work).resolve()
        self.sockets = Path(args.sockets)
        self.procs = Processes(Path(args.pid_file))
        self.results: dict = {"started": rfc3339_now(), "machine": machine_facts(self.work)}
        self.hosts: list[SshHost] = []
        self.salves: list[Salve] = []
        self.masters: list[Path] = []
        self.client_key = self.work / "client_key"
        keygen(self.client_key, "salve-bench-client")
        self.authorized_keys = self.work / "authorized_keys"
        shutil.copy(self.work / "client_key.pub", self.authorized_keys)
        self.authorized_keys.chmod(0o644)
        fixture = json.loads((self.repo / "tests/fixtures/intake/alertmanager-0.25-firing.json").read_text())
        self.am_template = fixture["body"]

    # ---- helpers -------------------------------------------------------------------

    def ssh_base(self, host: SshHost, control_path: Path, master: str = "auto") -> list[str]:
        return [
            "ssh", "-F", "/dev/null", "-i", str(self.client_key), "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
            "-o", f"ControlMaster={master}", "-o", f"ControlPath={control_path}", "-o", "ControlPersist=60",
            "-p", str(host.port), "-l", TARGET_USER, host.ip,
        ]

    def record_master(self, host: SshHost, control_path: Path) -> None:
        """Remembers a ControlPersist master (it forked into the background) for cleanup."""
        self.masters.append((host, control_path))
        check = subprocess.run(["ssh", "-F", "/dev/null", "-o", f"ControlPath={control_path}", "-O", "check",
                                "-p", str(host.port), host.ip], capture_output=True, text=True)
        match = re.search(r"pid=(\d+)", check.stderr)
        if match:
            self.procs.record(int(match.group(1)), "ssh")

    @staticmethod
    def am_fingerprint(labels: dict) -> str:
        """Alertmanager's fingerprint of a label set (FNV-1a 64 over the sorted names and
        values, each followed by 0xff), which salve computes itself and keys incidents by."""
        h = 14695981039346656037
        for name in sorted(labels):
            for part in (name, labels[name]):
                for byte in part.encode() + b"\xff":
                    h = ((h ^ byte) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
        return f"{h:016x}"

    def am_body(self, labels: dict, fingerprint: str, starts_at: str) -> bytes:
        body = copy.deepcopy(self.am_template)
        alert = body["alerts"][0]
        alert["labels"] = labels
        alert["fingerprint"] = fingerprint
        alert["startsAt"] = starts_at
        body["groupLabels"] = {k: labels[k] for k in ("alertname", "instance")}
        body["commonLabels"] = labels
        body["groupKey"] = "{}:{" + ", ".join(f'{k}="{v}"' for k, v in body["groupLabels"].items()) + "}"
        return json.dumps(body, separators=(",", ":")).encode()

    def base_config(self, mode: str, extra: str = "", store_url: str = "sqlite://salve.db") -> str:
        return (
            '[server]\nlisten = "127.0.0.1:0"\n\n'
            f'[server.auth]\nbearer_token = "{TOKEN}"\n\n'
            f'[store]\nurl = "{store_url}"\n\n'
            '[recipes]\ndir = "recipes"\n\n'
            f'[engine]\nmode = "{mode}"\nmax_parallel = {self.args.max_parallel}\n\n'
            "[limits]\nremediations_per_minute = 100000\nper_host_per_minute = 100000\n\n"
            '[escalation]\ndefault = ["oncall-email"]\n\n'
            '[escalation.channels.oncall-email]\nkind = "log"\n\n'
            '[escalation.channels.tickets]\nkind = "log"\n\n'
            + extra
        )

    def enforcing_config(self, inventory: list[tuple[str, SshHost]], store_url: str = "sqlite://salve.db") -> str:
        control_dir = self.sockets / f"salve-{len(self.salves)}"
        ssh = (
            f'[ssh]\nuser = "{TARGET_USER}"\nidentity_file = "{self.client_key}"\n'
            f'known_hosts = "{self.known_hosts}"\nconnect_timeout = "10s"\n'
            f'control_dir = "{control_dir}"\n\n'
        )
        hosts = "".join(
            f'[[hosts]]\nname = "{name}"\naddress = "{host.ip}"\nport = {host.port}\nuser = "{TARGET_USER}"\n\n'
            for name, host in inventory
        )
        return self.base_config("enforce", ssh + hosts, store_url)

    def start_salve(self, *args, **kwargs) -> Salve:
        salve = Salve(self, *args, **kwargs)
        self.salves.append(salve)
        return salve

    def postgres_cpu(self) -> dict | None:
        """CPU seconds of the cluster's postmaster and each of its children, by PID (None if
        the cluster's directory is not known)."""
        if not self.args.postgres_dir:
            return None
        try:
            postmaster = int((Path(self.args.postgres_dir) / "data/postmaster.pid").read_text().split()[0])
            children = Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split()
        except (OSError, ValueError, IndexError):
            return None
        cpu = {}
        for pid in [postmaster] + [int(child) for child in children]:
            value = proc_cpu_seconds(pid)
            if value is not None:
                cpu[pid] = value
        return cpu

    def fresh_database(self, name: str) -> str:
        """A new, empty database on the private cluster for one salve run: its URL."""
        psql(self.args.postgres_url, f'DROP DATABASE IF EXISTS "{name}"')
        psql(self.args.postgres_url, f'CREATE DATABASE "{name}"')
        return database_url(self.args.postgres_url, name)

    # ---- 1. floors -------------------------------------------------------------------

    def floor_fsync(self) -> None:
        seconds = 2.0
        probe = self.work / "fsync-probe"
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        block = b"\0" * 4096
        count = 0
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            os.write(fd, block)
            os.fsync(fd)
            count += 1
        elapsed = time.perf_counter() - started
        os.close(fd)
        probe.unlink()
        rate = count / elapsed
        self.results["floor_fsync"] = {"dir": str(self.work), "fsyncs": count, "seconds": elapsed,
                                       "per_second": rate, "ms_each": 1000 / rate}
        log(f"floor: fsync (4 KiB append + fsync) in {self.work}: {rate:.0f}/s ({1000 / rate:.2f} ms each)")
        # The same floor as SQLite sees it: one-row transactions, WAL, synchronous=FULL (the
        # journal's settings), i.e. what a store committing every webhook alone would reach.
        db_path = self.work / "commit-probe.db"
        db = sqlite3.connect(db_path, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        row = "x" * 700
        commits = 0
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO t (body) VALUES (?)", (row,))
            db.execute("COMMIT")
            commits += 1
        elapsed = time.perf_counter() - started
        db.close()
        for suffix in ("", "-wal", "-shm"):
            Path(str(db_path) + suffix).unlink(missing_ok=True)
        self.results["floor_sqlite_commit"] = {"commits": commits, "seconds": elapsed,
                                               "per_second": commits / elapsed, "sqlite": sqlite3.sqlite_version}
        log(f"floor: SQLite one-row commits (WAL, synchronous=FULL): {commits / elapsed:.0f}/s")

    def floor_ssh(self) -> None:
        host = self.hosts[0]
        control = self.sockets / "floor"
        base = self.ssh_base(host, control)
        warm_started = time.perf_counter()
        subprocess.run(base + ["true"], check=True, stdin=subprocess.DEVNULL)
        warm_ms = (time.perf_counter() - warm_started) * 1000
        self.record_master(host, control)
        n = self.args.floor_n
        raw = []
        for _ in range(n):
            started = time.perf_counter()
            subprocess.run(base + ["true"], check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
            raw.append((time.perf_counter() - started) * 1000)
        mux = []
        for _ in range(n):
            started = time.perf_counter()
            status, _ = muxclient.run(str(control), "true")
            mux.append((time.perf_counter() - started) * 1000)
            if status != 0:
                raise RuntimeError(f"mux `true` exited {status}")
        # Start latency: request sent -> the command runs on the target (same clock).
        def start_latency(command):
            values = []
            for _ in range(n):
                sent = {}
                status, out = muxclient.run(str(control), command, on_sent=lambda: sent.setdefault("t", time.time()))
                if status != 0:
                    raise RuntimeError(f"mux `{command}` exited {status}")
                values.append((float(out.split()[0]) - sent["t"]) * 1000)
            return values
        checks = []
        for _ in range(n):
            started = time.perf_counter()
            muxclient.alive(str(control))
            checks.append((time.perf_counter() - started) * 1000)
        mux_start = start_latency("date +%s.%N")
        mux_start_wrapped = start_latency(remote_line("date +%s.%N", 10, simple=True))
        mux_start_wrapped_sh = start_latency(remote_line("date +%s.%N", 10, simple=False))
        self.results["floor_ssh"] = {
            "first_connection_ms": warm_ms,
            "controlmaster_ssh_true_ms": summary(raw),
            "native_mux_true_ms": summary(mux),
            "native_mux_start_ms": summary(mux_start),
            "native_mux_start_wrapped_ms": summary(mux_start_wrapped),
            "native_mux_start_wrapped_sh_ms": summary(mux_start_wrapped_sh),
            "native_mux_alive_check_ms": summary(checks),
            "n": n,
        }
        log(f"floor: ssh over ControlMaster `true`: median {median(raw):.2f} ms; "
            f"native mux `true`: median {median(mux):.2f} ms; mux request -> command running: "
            f"{median(mux_start):.2f} ms ({median(mux_start_wrapped):.2f} ms under salve's `timeout` backstop, "
            f"{median(mux_start_wrapped_sh):.2f} ms with `timeout … sh -c`); "
            f"mux alive check {median(checks):.2f} ms; first connection {warm_ms:.0f} ms")

    # ---- 2. durable intake -------------------------------------------------------------

    def intake(self, pg: bool = False) -> None:
        """Durable intake; with `pg`, salve's store is a fresh PostgreSQL database and the
        figures go to results["intake_pg"] with the ratio to the SQLite intake of this run."""
        stage = "intake_pg" if pg else "intake"
        pg_url = self.fresh_database("salve_bench_intake") if pg else None
        hosts = '[[hosts]]\nname = "host1"\naddress = "127.0.0.1"\n\n'
        config = self.base_config("dry-run", hosts, pg_url) if pg else self.base_config("dry-run", hosts)
        salve = self.start_salve(stage, config, self.repo / "recipes", dry_run=True, pg_url=pg_url)
        time.sleep(1.0)
        idle_rss = salve.rss()
        script = self.work / "intake.lua"
        script.write_text(self.wrk_script())
        threads, connections, duration = self.args.wrk_threads, self.args.wrk_connections, self.args.wrk_duration
        url = f"http://{salve.host}:{salve.port}/hooks/alertmanager"
        cpu_before = proc_cpu_seconds(salve.pid)
        pg_cpu_before = self.postgres_cpu() if pg else None
        children_before = os.times()
        log(f"{stage}: wrk -t{threads} -c{connections} -d{duration}s --latency against salve serve --dry-run"
            + (" (store: PostgreSQL)" if pg else ""))
        out = subprocess.run(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "5s",
             "-s", str(script), url],
            capture_output=True, text=True, timeout=duration + 60,
        )
        children_after = os.times()
        cpu_after = proc_cpu_seconds(salve.pid)
        pg_cpu_after = self.postgres_cpu() if pg else None
        (self.work / f"wrk-{stage}.txt").write_text(out.stdout + out.stderr)
        if out.returncode != 0:
            raise RuntimeError(f"wrk failed: {out.stderr}")
        line = next(line for line in out.stdout.splitlines() if line.startswith("BENCH_JSON "))
        wrk = json.loads(line[len("BENCH_JSON "):])
        seconds = wrk["duration_us"] / 1e6
        acked = wrk["requests"] - wrk["err_status"]
        # Let every request salve had already taken finish, then compare with the journal.
        time.sleep(1.0)
        metrics = salve.metrics()
        answered = {}
        for match in re.finditer(r'^(?:salve_)?webhook_request_duration_seconds_count\{([^}]*)\} (\d+)', metrics, re.M):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
            if labels.get("source") == "alertmanager":
                answered[labels.get("code")] = answered.get(labels.get("code"), 0) + int(match.group(2))
        reader = salve.reader()
        stored = reader.execute("SELECT count(*) FROM incidents WHERE source = 'alertmanager'").fetchone()[0]
        # Intake only journals; the engine plans behind it. How far behind was it, and how
        # long does it take to catch up once the load stops?
        backlog = reader.execute("SELECT count(*) FROM incidents WHERE state = 'received'").fetchone()[0]
        drain_started = time.monotonic()
        remaining = backlog
        while remaining and time.monotonic() - drain_started < 120:
            time.sleep(0.2)
            remaining = reader.execute("SELECT count(*) FROM incidents WHERE state = 'received'").fetchone()[0]
        drain_seconds = time.monotonic() - drain_started
        reader.close()
        salve_200 = answered.get("200", 0)
        rate = acked / seconds
        fsync = self.results["floor_fsync"]["per_second"]
        self.results[stage] = {
            "store": "postgresql" if pg else "sqlite",
            "wrk": wrk, "threads": threads, "connections": connections, "seconds": seconds,
            "acked_2xx_seen_by_wrk": acked, "answered_by_code_per_salve": answered,
            "incidents_stored": stored, "notifications_per_second": rate,
            "ratio_to_fsync_rate": rate / fsync,
            "p50_ms": wrk["p50_us"] / 1000, "p90_ms": wrk["p90_us"] / 1000, "p99_ms": wrk["p99_us"] / 1000,
            "max_ms": wrk["max_us"] / 1000,
            "salve_cpu_seconds": (cpu_after or 0) - (cpu_before or 0),
            "wrk_cpu_seconds": (children_after.children_user + children_after.children_system)
            - (children_before.children_user + children_before.children_system),
            "idle_rss_bytes": idle_rss, "peak_rss_bytes": salve.hwm(),
            "planning_backlog_1s_after_load": backlog, "planning_backlog_drain_seconds": drain_seconds,
            "planning_backlog_left": remaining,
            # Nothing acknowledged lost: every 200 salve sent is an incident in the journal,
            # and wrk saw no more 2xx than that (wrk drops in-flight requests when it stops).
            "nothing_acked_lost": stored == salve_200 and acked <= stored,
        }
        if pg:
            sqlite_rate = self.results.get("intake", {}).get("notifications_per_second")
            self.results[stage]["sqlite_notifications_per_second"] = sqlite_rate
            self.results[stage]["ratio_to_sqlite"] = rate / sqlite_rate if sqlite_rate else None
            # The server's processes (backends, WAL writer, ...) under the load, next to salve's.
            self.results[stage]["postgres_cpu_seconds"] = (
                sum(cpu - pg_cpu_before.get(pid, 0.0) for pid, cpu in pg_cpu_after.items())
                if pg_cpu_before is not None and pg_cpu_after is not None else None)
            pg_cpu = self.results[stage]["postgres_cpu_seconds"]
            log(f"{stage}: ratio to the SQLite intake of this run: "
                + (f"{rate / sqlite_rate:.2f}" if sqlite_rate else "- (intake stage not run)")
                + f"; CPU seconds under the load: salve {(cpu_after or 0) - (cpu_before or 0):.2f}, PostgreSQL "
                + (f"{pg_cpu:.2f}" if pg_cpu is not None else "?"))
        log(f"{stage}: {rate:.0f} notifications/s ({rate / fsync:.1f}x the fsync rate), "
            f"p50 {wrk['p50_us'] / 1000:.2f} ms, p99 {wrk['p99_us'] / 1000:.2f} ms; "
            f"wrk 2xx {acked}, salve 200s {salve_200}, incidents stored {stored}, "
            f"errors {json.dumps({k: v for k, v in wrk.items() if k.startswith('err_')})}")
        log(f"{stage}: 1 s after the load {backlog} incidents still waited to be planned; "
            f"planned after {drain_seconds:.1f} s more (left: {remaining})")
        salve.stop()

    def wrk_script(self) -> str:
        fp_marker, starts_marker = "FPMARKER0000000", "STARTSMARKER"
        labels = dict(self.am_template["alerts"][0]["labels"])
        # A label unique per request: every request is another alert (salve computes the
        # fingerprint from the labels; the one sent is Alertmanager's, unchecked here).
        labels["bench_seq"] = fp_marker
        body = self.am_body(labels, fp_marker, starts_marker).decode()
        parts = re.split(f"({fp_marker}|{starts_marker})", body)
        pieces = []
        for part in parts:
            if part == fp_marker:
                pieces.append("fp")
            elif part == starts_marker:
                pieces.append("starts")
            else:
                if "]==]" in part:
                    raise RuntimeError("template contains the Lua long-bracket terminator")
                pieces.append(f"[==[{part}]==]")
        nonce = secrets.randbelow(0xFF)
        return f"""-- Generated by scripts/bench.d/bench.py: a real Alertmanager 0.25 notification
-- (tests/fixtures/intake/alertmanager-0.25-firing.json), with a startsAt unique per
-- request so that every request creates a new incident of the same alert (salve computes
-- the fingerprint from the labels and ignores the one sent here).
local next_id = 0
function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
end
local counter = 0
local headers = {{
  ["Content-Type"] = "application/json",
  ["Authorization"] = "Bearer {TOKEN}",
  ["User-Agent"] = "Alertmanager/0.25.0",
}}
request = function()
  counter = counter + 1
  local fp = string.format("%02x%02x%012x", {nonce}, tid, counter)
  local starts = string.format("2026-11-28T01:28:%02d.%09dZ", tid % 60, counter)
  local body = {" .. ".join(pieces)}
  return wrk.format("POST", "/hooks/alertmanager", headers, body)
end
function done(summary, latency, requests)
  io.write(string.format(
    'BENCH_JSON {{"requests":%d,"duration_us":%d,"bytes":%d,"err_connect":%d,"err_read":%d,' ..
    '"err_write":%d,"err_status":%d,"err_timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"mean_us":%.1f}}\\n',
    summary.requests, summary.duration, summary.bytes, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
end
"""

    # ---- 3. alert -> first command started ----------------------------------------------

    def latency(self) -> None:
        host = self.hosts[0]
        recipe = (
            'name = "bench-latency"\n'
            'description = "Print the target clock: the moment the command started"\n'
            "match = ['alertname=\"BenchLatency\"']\n"
            'target = "{{ labels.instance | host }}"\n'
            'mode = "enforce"\n\n'
            '[remediate]\nrun = ["date +%s.%N"]\ntimeout = "10s"\n\n'
            '[escalate]\nto = ["oncall-email"]\n'
        )
        salve = self.start_salve("latency", self.enforcing_config([("bench-lat", host)]),
                                 {"bench-latency.toml": recipe})
        conn = salve.connection()
        reader = salve.reader()
        nonce = secrets.token_hex(4)
        posts = {}
        k = self.args.latency_k
        log(f"latency: 1 warm-up alert, then {k} alerts one at a time (command: date +%s.%N)")
        for seq in range(k + 1):
            labels = {"alertname": "BenchLatency", "instance": "bench-lat:9100", "job": "node",
                      "nonce": nonce, "seq": str(seq)}
            fingerprint = self.am_fingerprint(labels)
            body = self.am_body(labels, fingerprint, rfc3339_now())
            time.sleep(0.05)  # let the previous incident's last commit settle
            sent = time.time()
            status = salve.post(conn, body)
            acked = time.time()
            if status != 200:
                raise RuntimeError(f"latency: POST answered {status}")
            posts[str(seq)] = (sent, acked)
            deadline = time.monotonic() + 30
            while True:
                row = reader.execute("SELECT state FROM incidents WHERE fingerprint = ?", (fingerprint,)).fetchone()
                if row and row[0] in FINAL_STATES:
                    if row[0] != "succeeded":
                        raise RuntimeError(f"latency: incident ended {row[0]}:\n{salve.stderr_path.read_text()[-2000:]}")
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"latency: incident not final after 30 s ({row})")
                time.sleep(0.02)
        conn.close()
        reader.close()
        history = salve.history(k + 10)
        stages = {name: [] for name in (
            "ack", "received", "planned", "remediation_started", "step_started", "command_running",
            "step_finished", "final")}
        durations = []
        for incident in history:
            seq = incident["labels"].get("seq")
            if seq in (None, "0"):
                continue
            sent, acked = posts[seq]
            at = {}
            for event in incident["events"]:
                at.setdefault(event["kind"], event)
            ms = lambda t: (t - sent) * 1000  # noqa: E731
            stages["ack"].append(ms(acked))
            for kind in ("received", "planned", "remediation_started", "step_started", "step_finished"):
                stages[kind].append(ms(parse_ts(at[kind]["at"])))
            stages["final"].append(ms(parse_ts(at["succeeded"]["at"])))
            finished = at["step_finished"]["detail"]
            stages["command_running"].append(ms(float(finished["stdout"].split()[0])))
            durations.append(finished["duration_ms"])
        floors = self.results["floor_ssh"]
        value = median(stages["command_running"])
        self.results["latency"] = {
            "k": len(stages["command_running"]),
            "median_ms_after_post": {kind: median(values) for kind, values in stages.items()},
            "p90_ms_after_post": {kind: percentile(values, 90) for kind, values in stages.items()},
            "alert_to_command_running_ms": summary(stages["command_running"]),
            "step_finished_duration_ms": summary(durations),
            "floor_native_mux_ms": floors["native_mux_true_ms"]["median"],
            "floor_controlmaster_ssh_ms": floors["controlmaster_ssh_true_ms"]["median"],
            "floor_native_mux_start_ms": floors["native_mux_start_ms"]["median"],
        }
        log("latency: median ms after POST: " + ", ".join(
            f"{kind} {median(values):.2f}" for kind, values in stages.items()))
        log(f"latency: alert -> command running on the target: median {value:.2f} ms "
            f"(floors: native mux {floors['native_mux_true_ms']['median']:.2f} ms, "
            f"ssh over ControlMaster {floors['controlmaster_ssh_true_ms']['median']:.2f} ms)")
        salve.stop()

    # ---- 4 + 5. storm and RSS -------------------------------------------------------------

    def storm_setup(self):
        n_hosts = self.args.storm_hosts
        inventory = [(f"storm-{i + 1:03d}", self.hosts[i % len(self.hosts)]) for i in range(n_hosts)]
        recipe = (
            'name = "bench-storm"\n'
            'description = "One short command, one command check"\n'
            "match = ['alertname=\"BenchStorm\"']\n"
            'target = "{{ labels.instance | host }}"\n'
            'mode = "enforce"\n\n'
            '[remediate]\nrun = ["touch /tmp/storm-{{ target_name }}"]\ntimeout = "10s"\n\n'
            '[verify]\nwithin = "30s"\ninterval = "1s"\n'
            'checks = [{ command = "test -e /tmp/storm-{{ target_name }}" }]\n\n'
            '[escalate]\nto = ["oncall-email"]\n'
        )
        return inventory, recipe

    def storm_run(self, stage: str, replicas: int = 1, pg_url: str | None = None) -> dict:
        """One storm against `replicas` salves (same config, each its own port and control
        dir; more than one only on a shared PostgreSQL store), the alert POSTs split across
        them round-robin. Returns the figures and what ran (for the raw floors)."""
        n_hosts, n_alerts = self.args.storm_hosts, self.args.storm_alerts
        inventory, recipe = self.storm_setup()
        salves = []
        for r in range(replicas):
            name = stage if replicas == 1 else f"{stage}-r{r + 1}"
            config = (self.enforcing_config(inventory, pg_url) if pg_url else self.enforcing_config(inventory))
            salves.append(self.start_salve(name, config, {"bench-storm.toml": recipe}, pg_url=pg_url))
        salve = salves[0]
        time.sleep(2.0)
        idle_rss = salve.rss()
        idle_threads = len(os.listdir(f"/proc/{salve.pid}/task"))
        log(f"{stage}: {replicas} salve(s), idle VmRSS {idle_rss / 2**20:.1f} MiB; posting {n_alerts} alerts for "
            f"{n_hosts} hosts ({len(self.hosts)} sshds), engine.max_parallel = {self.args.max_parallel}"
            + (" each (store: PostgreSQL, shared)" if pg_url else ""))
        logins_before = sum(h.accepted_logins() for h in self.hosts)
        nonce = secrets.token_hex(4)
        bodies = []
        for j in range(n_alerts):
            name = inventory[j % n_hosts][0]
            labels = {"alertname": "BenchStorm", "instance": f"{name}:9100", "job": "node",
                      "nonce": nonce, "n": str(j)}
            bodies.append(self.am_body(labels, self.am_fingerprint(labels), rfc3339_now()))
        rss_samples = []
        thread_samples = []
        sampling = threading.Event()

        def sample():
            while not sampling.is_set():
                value = salve.rss()
                if value:
                    rss_samples.append(value)
                try:
                    thread_samples.append(len(os.listdir(f"/proc/{salve.pid}/task")))
                except OSError:
                    pass
                time.sleep(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        posters = 8
        statuses = []
        lock = threading.Lock()

        def post_share(index):
            # Alert j goes to replica j % replicas (round-robin); one connection per replica.
            conns = [s.connection() for s in salves]
            for j in range(index, n_alerts, posters):
                target = j % replicas
                status = salves[target].post(conns[target], bodies[j])
                with lock:
                    statuses.append(status)
            for conn in conns:
                conn.close()

        first_post = time.time()
        cpu_before = [proc_cpu_seconds(s.pid) for s in salves]
        with concurrent.futures.ThreadPoolExecutor(posters) as pool:
            list(pool.map(post_share, range(posters)))
        last_ack = time.time()
        reader = salve.reader()
        deadline = time.monotonic() + self.args.storm_deadline
        while True:
            rows = dict(reader.execute("SELECT state, count(*) FROM incidents GROUP BY state").fetchall())
            final = sum(count for state, count in rows.items() if state in FINAL_STATES)
            if final >= n_alerts:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{stage}: not done after {self.args.storm_deadline} s: {rows}")
            time.sleep(0.1)
        cpu_after = [proc_cpu_seconds(s.pid) for s in salves]
        sampling.set()
        sampler.join()
        peak_hwm = salve.hwm()
        peak_hwms = [s.hwm() for s in salves]
        # Which replica ran how many (PostgreSQL: incidents.owner is the claiming replica).
        owners = (dict((str(owner), count) for owner, count in reader.execute(
            "SELECT coalesce(owner::text, 'none'), count(*) FROM incidents GROUP BY 1 ORDER BY 1").fetchall())
            if pg_url else None)
        reader.close()
        history = salve.history(n_alerts + 10)
        for s in salves:
            s.stop()
        states = {}
        ends, commands, checks, waits = [], [], [], []
        executed = {}
        runs_by_host = {}
        for incident in history:
            states[incident["state"]] = states.get(incident["state"], 0) + 1
            at = {}
            for event in incident["events"]:
                at.setdefault(event["kind"], event)
            if "succeeded" in at:
                ends.append(parse_ts(at["succeeded"]["at"]))
            if "step_finished" in at and "duration_ms" in at["step_finished"]["detail"]:
                commands.append(at["step_finished"]["detail"]["duration_ms"])
            if "step_started" in at:
                host = incident["labels"]["instance"].split(":")[0]
                executed.setdefault(host, at["step_started"]["detail"]["executed"])
                if "received" in at:
                    waits.append(parse_ts(at["remediation_started"]["at"]) - parse_ts(at["received"]["at"]))
                if "succeeded" in at:
                    runs_by_host.setdefault(host, []).append(
                        (parse_ts(at["remediation_started"]["at"]), parse_ts(at["succeeded"]["at"])))
            if "check_poll" in at and "verify_started" in at:
                checks.append((parse_ts(at["check_poll"]["at"]) - parse_ts(at["verify_started"]["at"])) * 1000)
        overlaps = 0
        for runs in runs_by_host.values():
            runs.sort()
            overlaps += sum(1 for a, b in zip(runs, runs[1:]) if b[0] < a[1])
        salve_wall = max(ends) - first_post if ends else float("nan")
        logins = sum(h.accepted_logins() for h in self.hosts) - logins_before
        log(f"{stage}: {replicas} salve(s) {states} in {salve_wall:.2f} s from the first POST "
            f"(all POSTs acked after {last_ack - first_post:.2f} s; {logins} SSH logins)"
            + (f"; incidents by owning replica {owners}" if owners else ""))
        return {
            "inventory": inventory, "executed": executed,
            "idle_rss": idle_rss, "idle_threads": idle_threads, "peak_hwm": peak_hwm,
            "rss_samples": rss_samples, "thread_samples": thread_samples,
            "figures": {
                "alerts": n_alerts, "hosts": n_hosts, "sshds": len(self.hosts),
                "max_parallel": self.args.max_parallel, "replicas": replicas,
                "posters": posters, "post_statuses": {str(s): statuses.count(s) for s in set(statuses)},
                "states": states, "salve_wall_seconds": salve_wall,
                "all_posts_acked_after_seconds": last_ack - first_post,
                "salve_ssh_logins": logins,
                "salve_cpu_seconds": sum((a or 0) - (b or 0) for a, b in zip(cpu_after, cpu_before)),
                "per_host_overlapping_runs": overlaps,
                "median_command_ms": median(commands), "median_verify_started_to_check_poll_ms": median(checks),
                "median_wait_received_to_started_s": median(waits),
                "peak_hwm_bytes_per_replica": peak_hwms,
                "incidents_by_owner": owners,
            },
        }

    def storm(self) -> None:
        run = self.storm_run("storm")
        figures = run["figures"]
        del figures["replicas"], figures["peak_hwm_bytes_per_replica"], figures["incidents_by_owner"]
        inventory, executed, n_alerts = run["inventory"], run["executed"], figures["alerts"]
        salve_wall = figures["salve_wall_seconds"]
        rss_samples, thread_samples = run["rss_samples"], run["thread_samples"]
        idle_rss, idle_threads, peak_hwm = run["idle_rss"], run["idle_threads"], run["peak_hwm"]

        raw = self.raw_storm(inventory, executed, n_alerts)
        mux = self.mux_storm(inventory, executed, n_alerts)
        self.results["storm"] = {
            **figures,
            "raw": raw, "ratio": salve_wall / raw["wall_seconds"],
            "mux": mux, "ratio_to_mux": salve_wall / mux["wall_seconds"],
        }
        self.results["rss"] = {
            "idle_bytes": idle_rss, "peak_hwm_bytes": peak_hwm,
            "peak_sampled_bytes": max(rss_samples) if rss_samples else None,
            "peak_threads": max(thread_samples) if thread_samples else None,
            "idle_threads": idle_threads,
        }
        log(f"storm: raw parallel ssh {raw['wall_seconds']:.2f} s -> ratio {salve_wall / raw['wall_seconds']:.2f}; "
            f"native mux {mux['wall_seconds']:.2f} s -> ratio {salve_wall / mux['wall_seconds']:.2f}; "
            f"salve VmHWM {peak_hwm / 2**20:.1f} MiB, threads {idle_threads} idle, "
            f"{max(thread_samples) if thread_samples else '?'} at most")

    def storm_pg(self) -> None:
        """The storm on PostgreSQL: one salve, then three sharing one database, each on a
        fresh database, against the raw-ssh floor of the SQLite storm of this run (measured
        here, after the first PostgreSQL run, if the storm stage did not run)."""
        runs = {}
        for replicas in (1, 3):
            pg_url = self.fresh_database(f"salve_bench_storm_{replicas}")
            runs[replicas] = self.storm_run(f"storm_pg{replicas}", replicas, pg_url)
            if replicas == 1:
                if "storm" in self.results:
                    raw = self.results["storm"]["raw"]
                else:
                    run = runs[1]
                    raw = self.raw_storm(run["inventory"], run["executed"], run["figures"]["alerts"])
        sqlite_wall = self.results.get("storm", {}).get("salve_wall_seconds")
        result = {"store": "postgresql", "raw": raw, "sqlite_wall_seconds": sqlite_wall}
        for replicas, run in runs.items():
            figures = run["figures"]
            wall = figures["salve_wall_seconds"]
            figures["ratio"] = wall / raw["wall_seconds"]
            figures["ratio_to_sqlite"] = wall / sqlite_wall if sqlite_wall else None
            result[f"replicas_{replicas}"] = figures
            log(f"storm_pg: {replicas} replica(s) {wall:.2f} s -> ratio {figures['ratio']:.2f} to raw ssh "
                f"({raw['wall_seconds']:.2f} s), "
                + (f"{wall / sqlite_wall:.2f} to the SQLite storm ({sqlite_wall:.2f} s)" if sqlite_wall
                   else "storm stage not run"))
        self.results["storm_pg"] = result

    def raw_storm(self, inventory, executed, n_alerts) -> dict:
        """The same commands over raw `ssh` with one ControlMaster per inventory host, one
        host's incidents in order, max_parallel hosts at once (xargs -P)."""
        n_hosts = len(inventory)
        per_host = n_alerts // n_hosts
        sockets = self.sockets / "raw"
        sockets.mkdir()
        log(f"storm: raw baseline: xargs -P {self.args.max_parallel}, {n_hosts} hosts x {per_host} x (command + check) "
            "with ssh over per-host ControlMaster sockets (opened on first use)")
        shell_job = self.work / "raw-job.sh"
        shell_job.write_text(
            "#!/bin/bash\n"
            "# One inventory host's share of the raw storm: (command, check) x N over one master.\n"
            "set -euo pipefail\n"
            'name=$1 ip=$2 port=$3 count=$4 command=$5 check=$6\n'
            f'base=(ssh -F /dev/null -i "{self.client_key}" -o IdentitiesOnly=yes '
            f'-o "UserKnownHostsFile={self.known_hosts}" -o GlobalKnownHostsFile=/dev/null '
            '-o StrictHostKeyChecking=yes -o BatchMode=yes -o ControlMaster=auto '
            f'-o "ControlPath={sockets}/$name" -o ControlPersist=60 -p "$port" -l {TARGET_USER} "$ip")\n'
            'for ((i = 0; i < count; i++)); do\n'
            '  "${base[@]}" "$command" </dev/null >/dev/null\n'
            '  "${base[@]}" "$check" </dev/null >/dev/null\n'
            'done\n'
        )
        shell_job.chmod(0o755)
        args_file = self.work / "raw-args.txt"
        with open(args_file, "wb") as out:
            for name, host in inventory:
                command = executed.get(name) or remote_line(f"touch /tmp/storm-'{name}'", 10, simple=True)
                check = remote_line(f"test -e /tmp/storm-'{name}'", 29, simple=False)
                for field in (name, host.ip, str(host.port), str(per_host), command, check):
                    out.write(field.encode() + b"\0")
        logins_before = sum(h.accepted_logins() for h in self.hosts)
        started = time.time()
        result = subprocess.run(
            ["xargs", "-0", "-n", "6", "-P", str(self.args.max_parallel), "-a", str(args_file), str(shell_job)],
            capture_output=True, text=True, timeout=self.args.storm_deadline,
        )
        wall = time.time() - started
        logins = sum(h.accepted_logins() for h in self.hosts) - logins_before
        for name, host in inventory:
            self.record_master(host, sockets / name)
        if result.returncode != 0:
            raise RuntimeError(f"raw storm failed ({result.returncode}): {result.stderr[-2000:]}")
        return {"wall_seconds": wall, "ssh_logins": logins, "commands": 2 * per_host * n_hosts,
                "concurrency": self.args.max_parallel}

    def mux_storm(self, inventory, executed, n_alerts) -> dict:
        """A tighter floor than raw `ssh`: the same commands through the native mux protocol
        (no process per command), one master per host opened on first use, max_parallel hosts
        at once, one host's incidents in order."""
        per_host = n_alerts // len(inventory)
        sockets = self.sockets / "mux"
        sockets.mkdir()
        log(f"storm: native-mux baseline: {self.args.max_parallel} threads, same commands, masters opened on first use")

        def host_job(entry):
            name, host = entry
            control = sockets / name
            opener = self.ssh_base(host, control, master="yes")
            opener[1:1] = ["-N", "-f"]  # authenticate, then keep the master in the background
            subprocess.run(opener, check=True, stdin=subprocess.DEVNULL)
            command = executed.get(name) or remote_line(f"touch /tmp/storm-'{name}'", 10, simple=True)
            check = remote_line(f"test -e /tmp/storm-'{name}'", 29, simple=False)
            for _ in range(per_host):
                for line in (command, check):
                    status, _ = muxclient.run(str(control), line)
                    if status != 0:
                        raise RuntimeError(f"mux storm: `{line}` on {name} exited {status}")

        started = time.time()
        try:
            with concurrent.futures.ThreadPoolExecutor(self.args.max_parallel) as pool:
                list(pool.map(host_job, inventory))
        finally:
            wall = time.time() - started
            for name, host in inventory:
                if (sockets / name).exists():
                    self.record_master(host, sockets / name)
        return {"wall_seconds": wall, "commands": 2 * per_host * len(inventory),
                "concurrency": self.args.max_parallel}

    # ---- driver ------------------------------------------------------------------------

    def run(self) -> int:
        stages = self.args.stages.split(",")
        if any(stage.endswith("_pg") for stage in stages):
            self.results["postgres"] = {
                "server_version": psql(self.args.postgres_url, "SHOW server_version").strip(),
                "settings": dict(line.split("\t", 1) for line in psql(
                    self.args.postgres_url,
                    "SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', "
                    "'wal_sync_method', 'shared_buffers', 'max_connections', 'full_page_writes')").splitlines()),
                "dir": self.args.postgres_dir,
                "disk": machine_facts_disk(self.args.postgres_dir) if self.args.postgres_dir else None,
            }
        try:
            log("floors: disk fsync rate")
            self.floor_fsync()
            n_sshd = self.args.sshds
            log(f"starting {n_sshd} private sshd(s) (own mount+pid namespace, user {TARGET_USER})")
            for i in range(n_sshd):
                self.hosts.append(SshHost(self, f"127.0.0.{i + 1}", f"h{i + 1}"))
            self.known_hosts = self.work / "known_hosts"
            self.known_hosts.write_text("".join(h.known_hosts_line() + "\n" for h in self.hosts))
            log("floors: one command over a warm ControlMaster socket")
            self.floor_ssh()
            if "intake" in stages:
                self.intake()
            if "latency" in stages:
                self.latency()
            if "storm" in stages:
                self.storm()
            if "intake_pg" in stages:
                self.intake(pg=True)
            if "storm_pg" in stages:
                self.storm_pg()
        finally:
            self.results["finished"] = rfc3339_now()
            self.results["machine"]["loadavg_at_end"] = Path("/proc/loadavg").read_text().strip()
            self.cleanup()
            Path(self.args.results).write_text(json.dumps(self.results, indent=2) + "\n")
        return report(self.results)

    def cleanup(self) -> None:
        for salve in self.salves:
            salve.stop()
        for host, control in self.masters:
            subprocess.run(["ssh", "-F", "/dev/null", "-o", f"ControlPath={control}", "-O", "exit",
                            "-p", str(host.port), host.ip], capture_output=True)
        for host in self.hosts:
            host.stop()


STAGES = ("intake", "latency", "storm", "intake_pg", "storm_pg")


def machine_facts_disk(path: str) -> str:
    """The device, file system and options under `path` (findmnt), to compare with the journal's."""
    try:
        return subprocess.run(["findmnt", "-no", "SOURCE,FSTYPE,OPTIONS", "-T", path],
                              capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        return ""


def summary(values) -> dict:
    return {"median": median(values), "p10": percentile(values, 10), "p90": percentile(values, 90),
            "min": min(values) if values else None, "max": max(values) if values else None, "n": len(values)}


def machine_facts(work: Path) -> dict:
    def run(command):
        try:
            return subprocess.run(command, capture_output=True, text=True, timeout=10).stdout.strip()
        except OSError:
            return ""
    return {
        "nproc": os.cpu_count(), "kernel": platform.release(),
        "cpu": next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name")), ""),
        "memory": run(["free", "-h"]), "disk": run(["findmnt", "-no", "SOURCE,FSTYPE,OPTIONS", "-T", str(work)]),
        "loadavg_at_start": Path("/proc/loadavg").read_text().strip(),
    }


def report(results: dict) -> int:
    """The table: metric, value, floor, ratio, target, verdict."""
    rows = []
    fsync = results["floor_fsync"]["per_second"]
    floors = results["floor_ssh"]
    rows.append(("floor: disk fsync rate", f"{fsync:.0f}/s", "-", "-", "-", f"{1000 / fsync:.2f} ms each"))
    if "floor_sqlite_commit" in results:
        commit = results["floor_sqlite_commit"]["per_second"]
        rows.append(("floor: SQLite 1-row commits", f"{commit:.0f}/s", "-", "-", "-", "WAL, synchronous=FULL"))
    rows.append(("floor: native mux `true`", f"{floors['native_mux_true_ms']['median']:.2f} ms", "-", "-", "-", "median of "
                 f"{floors['n']}"))
    rows.append(("floor: ssh ControlMaster `true`", f"{floors['controlmaster_ssh_true_ms']['median']:.2f} ms", "-", "-", "-",
                 f"median of {floors['n']}"))
    missed = 0

    def verdict(ok, how):
        nonlocal missed
        if not ok:
            missed += 1
        return "met" if ok else f"MISSED {how}"

    if "intake" in results:
        intake = results["intake"]
        rate = intake["notifications_per_second"]
        rows.append(("intake notifications/s", f"{rate:.0f}/s", f"{fsync:.0f} fsync/s",
                     f"{rate / fsync:.1f}x", ">= 10000/s",
                     verdict(rate >= 10000, f"by {10000 - rate:.0f}/s ({rate / 10000:.0%} of target)")))
        rows.append(("intake p50 latency", f"{intake['p50_ms']:.2f} ms", f"{1000 / fsync:.2f} ms (1 fsync)",
                     f"{intake['p50_ms'] * fsync / 1000:.1f}x", "-", "-"))
        p99 = intake["p99_ms"]
        rows.append(("intake p99 latency", f"{p99:.2f} ms", f"{1000 / fsync:.2f} ms (1 fsync)",
                     f"{p99 * fsync / 1000:.1f}x", "<= 25 ms", verdict(p99 <= 25, f"by {p99 - 25:.2f} ms")))
        rows.append(("intake: acked == stored", f"{intake['incidents_stored']} stored",
                     f"{intake['answered_by_code_per_salve'].get('200', 0)} x 200", "-", "equal",
                     verdict(intake["nothing_acked_lost"], "(acknowledged alerts missing!)")))
    if "latency" in results:
        lat = results["latency"]
        value = lat["alert_to_command_running_ms"]["median"]
        mux = lat["floor_native_mux_ms"]
        raw = lat["floor_controlmaster_ssh_ms"]
        rows.append(("alert -> command running (median)", f"{value:.2f} ms", f"{mux:.2f} ms native mux",
                     f"{value / mux:.1f}x ({value - mux:+.2f} ms)", f"<= {mux + 5:.2f} ms",
                     verdict(value <= mux + 5, f"by {value - mux - 5:.2f} ms")))
        rows.append(("  same vs ssh ControlMaster", f"{value:.2f} ms", f"{raw:.2f} ms ssh",
                     f"{value / raw:.1f}x ({value - raw:+.2f} ms)", f"<= {raw + 5:.2f} ms",
                     verdict(value <= raw + 5, f"by {value - raw - 5:.2f} ms")))
    if "storm" in results:
        storm = results["storm"]
        ok = storm["states"].get("succeeded", 0) == storm["alerts"]
        rows.append((f"storm {storm['alerts']} alerts/{storm['hosts']} hosts", f"{storm['salve_wall_seconds']:.2f} s",
                     f"{storm['raw']['wall_seconds']:.2f} s raw ssh -P{storm['max_parallel']}",
                     f"{storm['ratio']:.2f}x", "<= 1.3x",
                     verdict(storm["ratio"] <= 1.3 and ok,
                             f"by {storm['ratio'] - 1.3:.2f}x" if ok else f"(states {storm['states']})")))
        rows.append(("  same vs native mux -P", f"{storm['salve_wall_seconds']:.2f} s",
                     f"{storm['mux']['wall_seconds']:.2f} s native mux -P{storm['max_parallel']}",
                     f"{storm['ratio_to_mux']:.2f}x", "(info)", "-"))
        rss = results["rss"]
        idle, peak = rss["idle_bytes"] / 1e6, rss["peak_hwm_bytes"] / 1e6
        rows.append(("RSS idle (VmRSS)", f"{idle:.1f} MB ({rss['idle_bytes'] / 2**20:.1f} MiB)", "-", "-", "<= 25 MB",
                     verdict(idle <= 25, f"by {idle - 25:.1f} MB")))
        rows.append(("RSS storm peak (VmHWM)", f"{peak:.1f} MB ({rss['peak_hwm_bytes'] / 2**20:.1f} MiB)", "-", "-",
                     "<= 150 MB", verdict(peak <= 150, f"by {peak - 150:.1f} MB")))
    if "intake_pg" in results:
        pg = results["intake_pg"]
        rate = pg["notifications_per_second"]
        rows.append(("intake on PostgreSQL notifications/s", f"{rate:.0f}/s", f"{fsync:.0f} fsync/s",
                     f"{rate / fsync:.1f}x", ">= 10000/s",
                     verdict(rate >= 10000, f"by {10000 - rate:.0f}/s ({rate / 10000:.0%} of target)")))
        ratio = pg["ratio_to_sqlite"]
        if ratio is not None:
            sqlite_rate = pg["sqlite_notifications_per_second"]
            rows.append(("  same vs SQLite intake", f"{rate:.0f}/s", f"{sqlite_rate:.0f}/s SQLite", f"{ratio:.2f}x",
                         ">= 0.5x (within 2x)", verdict(ratio >= 0.5, f"by {0.5 - ratio:.2f}x")))
        p99 = pg["p99_ms"]
        rows.append(("intake on PostgreSQL p99 latency", f"{p99:.2f} ms", f"{1000 / fsync:.2f} ms (1 fsync)",
                     f"{p99 * fsync / 1000:.1f}x", "<= 25 ms", verdict(p99 <= 25, f"by {p99 - 25:.2f} ms")))
        rows.append(("intake on PostgreSQL: acked == stored", f"{pg['incidents_stored']} stored",
                     f"{pg['answered_by_code_per_salve'].get('200', 0)} x 200", "-", "equal",
                     verdict(pg["nothing_acked_lost"], "(acknowledged alerts missing!)")))
    if "storm_pg" in results:
        spg = results["storm_pg"]
        for replicas in (1, 3):
            run = spg.get(f"replicas_{replicas}")
            if not run:
                continue
            ok = run["states"].get("succeeded", 0) == run["alerts"]
            rows.append((f"storm on PostgreSQL, {replicas} replica{'s' if replicas > 1 else ''}",
                         f"{run['salve_wall_seconds']:.2f} s",
                         f"{spg['raw']['wall_seconds']:.2f} s raw ssh -P{run['max_parallel']}",
                         f"{run['ratio']:.2f}x", "<= 1.3x",
                         verdict(run["ratio"] <= 1.3 and ok,
                                 f"by {run['ratio'] - 1.3:.2f}x" if ok else f"(states {run['states']})")))
            if run["ratio_to_sqlite"] is not None:
                rows.append(("  same vs SQLite storm", f"{run['salve_wall_seconds']:.2f} s",
                             f"{spg['sqlite_wall_seconds']:.2f} s SQLite", f"{run['ratio_to_sqlite']:.2f}x",
                             "(info)", "-"))
    header = ("metric", "value", "floor", "ratio", "target", "verdict")
    widths = [max(len(str(row[i])) for row in rows + [header]) for i in range(len(header))]
    print()
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
    print()
    print(f"{missed} target(s) missed; raw figures in target/bench/results.json")
    # Missing a performance target is a finding, not a failure of the run; losing an
    # acknowledged alert or a storm incident not ending `succeeded` is a failure.
    broken = []
    if "intake" in results and not results["intake"]["nothing_acked_lost"]:
        broken.append("intake: acknowledged alerts missing from the journal")
    if "storm" in results and results["storm"]["states"].get("succeeded", 0) != results["storm"]["alerts"]:
        broken.append(f"storm: not every incident succeeded: {results['storm']['states']}")
    if "storm" in results and results["storm"]["per_host_overlapping_runs"]:
        broken.append("storm: two remediations overlapped on one host")
    if "intake_pg" in results and not results["intake_pg"]["nothing_acked_lost"]:
        broken.append("intake_pg: acknowledged alerts missing from the PostgreSQL store")
    for replicas in (1, 3):
        run = results.get("storm_pg", {}).get(f"replicas_{replicas}")
        if run and run["states"].get("succeeded", 0) != run["alerts"]:
            broken.append(f"storm_pg ({replicas} replicas): not every incident succeeded: {run['states']}")
        if run and run["per_host_overlapping_runs"]:
            broken.append(f"storm_pg ({replicas} replicas): two remediations overlapped on one host")
    for problem in broken:
        print(f"FAILED: {problem}")
    return 1 if broken else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", required=True)
    parser.add_argument("--salve", required=True)
    parser.add_argument("--work", required=True, help="scratch dir on the journal's disk")
    parser.add_argument("--sockets", required=True, help="short dir for control sockets")
    parser.add_argument("--pid-file", required=True)
    parser.add_argument("--results", required=True)
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--postgres-url", help="admin URL of the private PostgreSQL cluster (needed by the _pg stages)")
    parser.add_argument("--postgres-dir", help="its directory (for the record: which disk)")
    parser.add_argument("--floor-n", type=int, default=100)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--wrk-connections", type=int, default=64)
    parser.add_argument("--wrk-duration", type=int, default=10)
    parser.add_argument("--latency-k", type=int, default=30)
    parser.add_argument("--storm-alerts", type=int, default=1000)
    parser.add_argument("--storm-hosts", type=int, default=100)
    parser.add_argument("--storm-deadline", type=int, default=300)
    parser.add_argument("--max-parallel", type=int, default=16)
    parser.add_argument("--sshds", type=int, default=4)
    args = parser.parse_args()
    stages = args.stages.split(",")
    unknown = [stage for stage in stages if stage not in STAGES]
    if unknown:
        parser.error(f"unknown stage(s) {', '.join(unknown)}; the stages are {', '.join(STAGES)}")
    if any(stage.endswith("_pg") for stage in stages) and not args.postgres_url:
        parser.error("the PostgreSQL stages (intake_pg, storm_pg) need --postgres-url "
                     "(scripts/bench starts a private cluster and passes it)")
    return Bench(args).run()


if __name__ == "__main__":
    sys.exit(main())
