#!/usr/bin/env python
"""A headless load test: the portal under gunicorn, driven by locust (tools/load/locustfile.py).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/prm_bench \
        .venv/bin/python tools/load_test.py --users 50 --duration 60

Needs the `bench` extra (pip install -e ".[bench]") and a Redis at 127.0.0.1:6379. Steps:

1. collects the static files when var/staticfiles is missing or older than the sources;
2. picks the accounts from the database (tools/load/accounts.py; read only): ~70 % dealer users,
   one per dealer, and ~30 % partner managers with a TOTP authenticator, all with --password, and
   what each has already used of the hourly limits in the current hour;
3. starts gunicorn (gthread) on a free port of 127.0.0.1 with production settings except what plain
   HTTP on the loopback needs (see GUNICORN_ENV below; printed at the start) and waits for /healthz;
4. runs locust headless for --duration seconds with --users users, started --spawn-rate a second
   (default 2: each log-in costs a password hash of ~0.6 s CPU), who log in once each and then work
   through their mix of pages and forms (the duration includes the ramp-up and the log-ins);
5. prints the requests, requests per second, p50/p95/max per request name, in all and without the
   log-ins, the failures by cause, the tasks skipped to stay within the portal's limits, the CPU the
   server and locust used, and the tracebacks in the server's log; exits 1 when anything failed
   (a failed request, an exception in the locustfile, a person not logged in, a traceback, a 500
   or a worker timeout in the server's log), 2 when the test could not run;
6. stops gunicorn and removes its temporary files, whatever happened (the logs are kept under
   --keep-logs, or under var/load/ when something failed).

From Python: `run(users=50, duration=60)` returns the same figures as a dict (and a Markdown table
under "markdown"); it raises LoadTestError when the test could not run at all.

Settings: the portal's limits are not changed (the limits in effect are checked against the portal's
defaults, and any difference is printed as a note). The Celery broker is Redis (CELERY_BROKER_URL, a
database of its own unless the caller's environment names a Redis broker): the portal's `.delay()`
calls (the outbox e-mails after commit) publish there as in production; no worker runs, and the
tasks queued by the run are removed from that database afterwards. The cache (the rate-limit
counters, allauth's limits, used TOTP codes) is Redis too, shared by all workers as in production.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOAD_DIR = ROOT / "tools" / "load"
DEFAULT_PASSWORD = "scale-bench-2026"  # the scale data generator's password for every account
DEFAULT_SPAWN_RATE = 2
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/14"
DEFAULT_CACHE_URL = "redis://127.0.0.1:6379/15"
PORTAL_DEFAULT_LIMITS = {"submits_per_hour": 30, "lookups_per_hour": 120, "login_failure_limit": 5}

# The settings gunicorn runs with, and why (printed at the start of every run).
GUNICORN_ENV = {
    "DJANGO_SETTINGS_MODULE": ("prm.settings", "the portal's settings"),
    "DJANGO_DEBUG": ("0", "production: no debug pages, manifest static files served by whitenoise"),
    "PRM_REQUIRE_STAFF_MFA": ("1", "production: vendor staff log in with TOTP"),
    "DJANGO_ALLOWED_HOSTS": ("127.0.0.1,localhost", "the portal is reached on the loopback"),
    "DJANGO_CSRF_TRUSTED_ORIGINS": ("http://127.0.0.1:{port}", "the origin locust posts from"),
    "DJANGO_SECURE_SSL_REDIRECT": ("0", "plain HTTP on the loopback (production: the TLS proxy redirects)"),
    "DJANGO_SECURE_COOKIES": ("0", "cookies must travel over that plain HTTP"),
    "PRM_TRUSTED_PROXY_COUNT": (
        "1",
        "as behind production's reverse proxy: each simulated person sends its own X-Forwarded-For address, "
        "so allauth's log-ins per address per minute (30) see one person per address instead of 50 on 127.0.0.1",
    ),
    "CELERY_BROKER_URL": ("{broker_url}", "the portal's .delay() calls publish to Redis, as in production"),
    "CELERY_TASK_ALWAYS_EAGER": ("0", "tasks are queued, not run inside the request"),
    "CACHE_URL": ("{cache_url}", "rate limits and log-in limits counted in Redis, shared by all workers"),
    "DJANGO_LOG_LEVEL": ("INFO", "errors and warnings (4xx/5xx) with their tracebacks in the server log"),
}


class LoadTestError(RuntimeError):
    """The load test could not run (no accounts, the server did not start, locust missing...)."""


# --- helpers ----------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _redis_ok(url: str) -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2).ping())
    except Exception:
        return False


def _var_dir(env: dict) -> Path:
    return Path(env.get("PRM_VAR_DIR") or ROOT / "var")


def _static_stale(env: dict) -> bool:
    """True when collectstatic must run: no manifest yet, or a source file newer than it."""
    manifest = _var_dir(env) / "staticfiles" / "staticfiles.json"
    if not manifest.exists():
        return True
    built = manifest.stat().st_mtime
    sources = [ROOT / "static"] + [ROOT / app / "static" for app in ("prm", "dealers", "deals", "tiers")]
    for folder in sources:
        if folder.is_dir():
            for path in folder.rglob("*"):
                if path.is_file() and path.stat().st_mtime > built:
                    return True
    return False


def _stop(proc: subprocess.Popen | None, grace: float = 20) -> None:
    """Stop a process group this script started (its leader's id is proc.pid)."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _no_control_socket() -> list[str]:
    """Newer gunicorns open a control socket at one path per user (~/.gunicorn): another gunicorn on
    the machine would share it. Not needed here."""
    try:
        from gunicorn.config import ControlSocketDisable  # noqa: F401
    except ImportError:
        return []
    return ["--no-control-socket"]


def _children_cpu() -> float:
    """CPU seconds (user + system) of this process's children that have ended and been waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _number(value: str) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _read_csv(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _entry(row: dict) -> dict:
    return {
        "requests": int(row["Request Count"]),
        "failures": int(row["Failure Count"]),
        "rps": round(_number(row["Requests/s"]) or 0.0, 2),
        "avg_ms": round(_number(row["Average Response Time"]) or 0.0, 1),
        "p50_ms": _number(row["50%"]),
        "p95_ms": _number(row["95%"]),
        "max_ms": round(_number(row["Max Response Time"]) or 0.0, 1),
    }


def _rounded(entry: dict) -> dict:
    def ms(value):
        return None if value is None else round(value, 1)

    return {
        "requests": entry["requests"],
        "failures": entry["failures"],
        "rps": round(entry["rps"], 2),
        "avg_ms": ms(entry["avg_ms"]),
        "p50_ms": ms(entry["p50_ms"]),
        "p95_ms": ms(entry["p95_ms"]),
        "max_ms": ms(entry["max_ms"]),
    }


# Where the next record of gunicorn's log begins: gunicorn's own lines, access lines, Django's request
# log ("Internal Server Error: /path"), django-axes.
NEW_RECORD = re.compile(r"^(\[|\d{1,3}(\.\d{1,3}){3} |[A-Z][A-Za-z ]+: /|AXES: )")


def _tracebacks(text: str) -> list[str]:
    """Each error with its traceback(s) in a log (a chained exception is one), with the line before it
    (which request)."""
    lines = text.splitlines()
    found, i = [], 0
    while i < len(lines):
        if not lines[i].startswith("Traceback (most recent call last):"):
            i += 1
            continue
        start, i = max(i - 1, 0), i + 1
        while i < len(lines) and i - start < 400 and not NEW_RECORD.match(lines[i]):
            i += 1
        found.append("\n".join(lines[start:i]).rstrip())
    return found


def _server_errors(log: Path) -> dict:
    """Tracebacks, 500s and worker timeouts in gunicorn's log (Django logs there too)."""
    text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
    excerpts = _tracebacks(text)
    return {
        "tracebacks": len(excerpts),
        "internal_server_errors": text.count("Internal Server Error:"),
        "worker_timeouts": text.count("WORKER TIMEOUT"),
        "excerpts": excerpts[:5],
    }


def _markdown(result: dict) -> str:
    def ms(value):
        return "–" if value is None else f"{value:,.0f}"

    lines = [
        f"{result['users']['total']} simulated people ({result['users']['dealers']} dealer users, "
        f"{result['users']['partner_managers']} partner managers) for {result['duration_s']} s against gunicorn "
        f"({result['gunicorn']['workers']} workers × {result['gunicorn']['threads']} threads): "
        f"**{result['requests']:,} requests, {result['rps']:.1f} requests/s, {result['failures']} failures**.",
        "",
        "| request | n | fail | p50 ms | p95 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, e in result["by_name"].items():
        lines.append(
            f"| {name} | {e['requests']} | {e['failures']} | "
            f"{ms(e['p50_ms'])} | {ms(e['p95_ms'])} | {ms(e['max_ms'])} |"
        )
    work = result.get("without_login")
    if work:
        lines.append(
            f"| all except log-in | {work['requests']} | {work['failures']} | {ms(work['p50_ms'])} | "
            f"{ms(work['p95_ms'])} | {ms(work['max_ms'])} |"
        )
    lines.append(
        f"| **all** | {result['requests']} | {result['failures']} | {ms(result['p50_ms'])} | "
        f"{ms(result['p95_ms'])} | {ms(result['max_ms'])} |"
    )
    return "\n".join(lines)


# --- the run --------------------------------------------------------------------------------------------


def run(
    *,
    users: int = 50,
    duration: int = 60,
    spawn_rate: float | None = None,
    database_url: str | None = None,
    password: str = DEFAULT_PASSWORD,
    dealer_share: float = 0.7,
    workers: int = 3,
    threads: int = 4,
    seed: int = 1,
    broker_url: str | None = None,
    cache_url: str | None = None,
    keep_logs: str | Path | None = None,
    echo: bool = True,
) -> dict:
    """Run the load test; the figures as a dict (see the module's docstring)."""

    def say(text: str) -> None:
        if echo:
            print(text, flush=True)

    if users < 1 or duration < 1:
        raise LoadTestError("--users and --duration must be at least 1")
    database_url = database_url or os.environ.get("DATABASE_URL", "")
    if not database_url:
        raise LoadTestError("no database: set DATABASE_URL (or pass database_url)")
    if importlib.util.find_spec("locust") is None:  # not imported here: it monkey-patches with gevent
        raise LoadTestError('locust is not installed: .venv/bin/pip install -e ".[bench]"')

    notes: list[str] = []
    own_broker = False
    if broker_url is None:
        inherited = os.environ.get("CELERY_BROKER_URL", "")
        broker_url = inherited if inherited.startswith(("redis://", "rediss://")) else DEFAULT_BROKER_URL
        own_broker = broker_url == DEFAULT_BROKER_URL
    if cache_url is None:
        inherited = os.environ.get("CACHE_URL", "")
        cache_url = inherited if inherited.startswith(("redis://", "rediss://")) else DEFAULT_CACHE_URL
    for what, url in (("broker", broker_url), ("cache", cache_url)):
        if not _redis_ok(url):
            raise LoadTestError(f"the Redis for the {what} does not answer at {url}")

    n_pms = max(1, round(users * (1 - dealer_share))) if users > 1 else 0
    n_dealers = users - n_pms
    # Each log-in checks a password (PBKDF2, about 0.6 s of CPU on the 2-core development machine):
    # starting people faster than the server can log them in only measures a queue of log-ins.
    spawn_rate = spawn_rate or float(min(users, DEFAULT_SPAWN_RATE))

    port = _free_port()
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": database_url,
            "DJANGO_SECRET_KEY": env.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(50),
            "PYTHONUNBUFFERED": "1",
        }
    )
    shown = {}
    say("settings of the portal under test:")
    for name, (value, why) in GUNICORN_ENV.items():
        env[name] = value.format(port=port, broker_url=broker_url, cache_url=cache_url)
        shown[name] = env[name]
        say(f"  {name}={env[name]}  ({why})")
    say(f"  gunicorn: {workers} workers × {threads} threads (gthread) on 127.0.0.1:{port}")

    tmp = Path(tempfile.mkdtemp(prefix="prm-load-"))
    server_log, locust_log = tmp / "gunicorn.log", tmp / "locust.log"
    server = None
    result: dict = {}
    keep = False
    try:
        # 1. static files
        if _static_stale(env):
            say("collecting static files…")
            done = subprocess.run(
                [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
            )
            if done.returncode:
                raise LoadTestError(f"collectstatic failed:\n{done.stderr[-3000:]}")

        # 2. the accounts
        accounts_file = tmp / "accounts.json"
        done = subprocess.run(
            [
                sys.executable,
                str(LOAD_DIR / "accounts.py"),
                f"--dealers={n_dealers}",
                f"--partner-managers={n_pms}",
                f"--password={password}",
                f"--seed={seed}",
                f"--out={accounts_file}",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        say(done.stdout.rstrip())
        if done.returncode == 3:
            raise LoadTestError(
                f"not enough accounts for {n_dealers} dealer users (one per dealer) and {n_pms} partner managers "
                f"with TOTP: {done.stdout.strip()}"
            )
        if done.returncode:
            raise LoadTestError(f"picking the accounts failed:\n{(done.stderr or done.stdout)[-3000:]}")
        accounts = json.loads(accounts_file.read_text(encoding="utf-8"))
        notes += accounts["notes"]
        limits = accounts["limits"]
        for key, default in PORTAL_DEFAULT_LIMITS.items():
            if limits.get(key) != default:
                notes.append(f"limit {key} is {limits.get(key)} in this environment (portal default {default})")

        # 3. gunicorn
        say(f"starting gunicorn on 127.0.0.1:{port}…")
        with server_log.open("w") as log:
            server = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "prm.wsgi:application",
                    f"--bind=127.0.0.1:{port}",
                    f"--workers={workers}",
                    f"--threads={threads}",
                    "--worker-class=gthread",
                    "--timeout=60",
                    # Longer than any pause of a simulated person (1-3 s between tasks, up to 12 s for a
                    # fresh TOTP code): gthread's default of 2 s closes idle connections just as the
                    # next request may be sent on them, which a browser retries and locust reports.
                    "--keep-alive=75",
                    "--graceful-timeout=15",
                    "--error-logfile=-",
                    "--access-logfile=-",  # as in production (Dockerfile), with the time taken in seconds
                    '--access-logformat=%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(L)s',
                    "--log-level=info",
                    *_no_control_socket(),
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 90
        while True:
            if server.poll() is not None:
                raise LoadTestError(f"gunicorn exited ({server.returncode}):\n{server_log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise LoadTestError(f"/healthz did not answer 200 within 90 s:\n{server_log.read_text()[-3000:]}")
            time.sleep(0.5)

        # 4. locust
        total = len(accounts["dealers"]) + len(accounts["partner_managers"])
        say(
            f"locust: {total} users ({len(accounts['dealers'])} dealer users, "
            f"{len(accounts['partner_managers'])} partner managers), {spawn_rate:g}/s, {duration} s…"
        )
        extra_file = tmp / "extra.json"
        locust_env = dict(os.environ, PRM_LOAD_ACCOUNTS=str(accounts_file), PRM_LOAD_EXTRA=str(extra_file))
        load_before = os.getloadavg()[0]
        cpu_before = _children_cpu()
        with locust_log.open("w") as log:
            swarm = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "locust",
                    "-f",
                    str(LOAD_DIR / "locustfile.py"),
                    "--headless",
                    f"--users={total}",
                    f"--spawn-rate={spawn_rate:g}",
                    f"--run-time={duration}s",
                    "--stop-timeout=15",
                    f"--host=http://127.0.0.1:{port}",
                    f"--csv={tmp / 'locust'}",
                    "--only-summary",
                    "--loglevel=WARNING",
                ],
                cwd=ROOT,
                env=locust_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                swarm.wait(timeout=duration + 120)
            except subprocess.TimeoutExpired:
                _stop(swarm, grace=10)
                raise LoadTestError(f"locust did not stop in time:\n{locust_log.read_text()[-3000:]}") from None

        # 5. the figures: locust's own at its end (tools/load/locustfile.py), else its CSV files
        extra = json.loads(extra_file.read_text(encoding="utf-8")) if extra_file.exists() else {}
        if "stats" in extra:
            by_name = {e["name"]: _rounded(e) for e in extra["stats"]}
            aggregated = _rounded(extra["total"])
            work = _rounded(extra["work"])
            failures, exceptions = extra["errors"], extra["exceptions"]
        else:
            stats = _read_csv(tmp / "locust_stats.csv")
            if not stats:
                raise LoadTestError(
                    f"locust wrote no statistics (exit {swarm.returncode}):\n{locust_log.read_text()[-3000:]}"
                )
            notes.append("figures from locust's CSV files (the requests of its last second may be missing)")
            by_name = {row["Name"]: _entry(row) for row in stats if row["Name"] != "Aggregated"}
            aggregated = _entry(next(row for row in stats if row["Name"] == "Aggregated"))
            work = None
            failures = [
                {"method": r["Method"], "name": r["Name"], "error": r["Error"], "count": int(r["Occurrences"])}
                for r in _read_csv(tmp / "locust_failures.csv")
            ]
            exceptions = [
                {"count": int(r["Count"]), "message": r["Message"], "traceback": r["Traceback"]}
                for r in _read_csv(tmp / "locust_exceptions.csv")
            ]
        by_name = dict(sorted(by_name.items()))
        counters = dict(extra.get("counters", {}))
        logged_in = {
            "dealers": counters.pop("dealer: logged in", 0),
            "partner_managers": counters.pop("pm: logged in", 0),
        }
        cpu_locust = _children_cpu()
        load_after = os.getloadavg()[0]
        _stop(server)
        cpu_server = _children_cpu()  # its workers included: gunicorn waited for them
        server_errors = _server_errors(server_log)
        result = {
            "users": {
                "total": total,
                "dealers": len(accounts["dealers"]),
                "partner_managers": len(accounts["partner_managers"]),
                "logged_in": logged_in,
            },
            "duration_s": duration,
            "spawn_rate": spawn_rate,
            **{k: aggregated[k] for k in ("requests", "failures", "rps", "avg_ms", "p50_ms", "p95_ms", "max_ms")},
            "failure_ratio": round(aggregated["failures"] / aggregated["requests"], 4) if aggregated["requests"] else 0,
            "without_login": work,
            "by_name": by_name,
            "failures_by_cause": sorted(failures, key=lambda f: -f["count"]),
            "exceptions": exceptions,
            "skipped": counters,
            "server_errors": server_errors,
            "locust_exit_code": swarm.returncode,
            # CPU seconds used during the run (gunicorn: from its start, with its workers) and the
            # machine's 1-minute load average before and after: on a shared machine, how much of
            # the two cores the portal had
            "cpu_s": {
                "gunicorn": round(cpu_server - cpu_locust, 1),
                "locust": round(cpu_locust - cpu_before, 1),
                "cores": os.cpu_count(),
                "load_average_before": round(load_before, 2),
                "load_average_after": round(load_after, 2),
            },
            "gunicorn": {"workers": workers, "threads": threads, "worker_class": "gthread", "port": port},
            "settings": shown,
            "limits": limits,
            "notes": notes,
        }
        not_logged_in = total - logged_in["dealers"] - logged_in["partner_managers"]
        unfinished = not_logged_in - counters.get("dealer: log-in failed", 0) - counters.get("pm: log-in failed", 0)
        if unfinished > 0:
            notes.append(
                f"{unfinished} simulated people had not finished logging in when the run ended (too short a run, "
                "or a log-in waiting for a fresh TOTP code because the current one was used just before)"
            )
        result["ok"] = not (
            result["failures"]
            or exceptions
            or server_errors["tracebacks"]
            or server_errors["internal_server_errors"]
            or server_errors["worker_timeouts"]
            or not_logged_in
        )
        result["markdown"] = _markdown(result)
        keep = not result["ok"]
        return result
    except BaseException:
        keep = server is not None  # the server's log, once there is one
        raise
    finally:
        _stop(server)
        if own_broker:
            try:
                import redis

                broker = redis.Redis.from_url(broker_url, socket_timeout=5)
                queued = broker.llen("celery")
                broker.delete("celery")
                if result:
                    result["notes"].append(
                        f"{queued} Celery task(s) queued by the run (no worker) removed from {broker_url}"
                    )
            except Exception as exc:  # cleaning up must not hide the outcome
                say(f"could not empty the broker queue at {broker_url}: {exc}")
        if keep_logs or keep:
            target = Path(keep_logs) if keep_logs else ROOT / "var" / "load" / datetime.now().strftime("%Y%m%d-%H%M%S")
            target.mkdir(parents=True, exist_ok=True)
            for path in tmp.glob("*"):
                if path.name != "accounts.json":  # passwords and TOTP secrets stay out of kept logs
                    shutil.copy2(path, target / path.name)
            if result:
                result["logs"] = str(target)
            say(f"logs kept in {target}")
        shutil.rmtree(tmp, ignore_errors=True)


# --- the report -------------------------------------------------------------------------------------------


def summary(result: dict) -> str:
    def ms(value):
        return "-" if value is None else f"{value:.0f}"

    width = max([len(n) for n in result["by_name"]] + [10])
    lines = [
        "",
        f"{'request':<{width}}  {'n':>6} {'fail':>5} {'req/s':>6} {'p50':>6} {'p95':>6} {'max':>7}  (ms)",
    ]
    for name, e in result["by_name"].items():
        lines.append(
            f"{name:<{width}}  {e['requests']:>6} {e['failures']:>5} {e['rps']:>6.2f} "
            f"{ms(e['p50_ms']):>6} {ms(e['p95_ms']):>6} {ms(e['max_ms']):>7}"
        )
    lines.append(
        f"{'all':<{width}}  {result['requests']:>6} {result['failures']:>5} {result['rps']:>6.2f} "
        f"{ms(result['p50_ms']):>6} {ms(result['p95_ms']):>6} {ms(result['max_ms']):>7}"
    )
    users = result["users"]
    lines += [
        "",
        f"users: {users['total']} ({users['dealers']} dealer users, {users['partner_managers']} partner managers); "
        f"logged in: {users['logged_in']['dealers']} dealers, "
        f"{users['logged_in']['partner_managers']} partner managers",
        f"total: {result['requests']} requests in {result['duration_s']} s, {result['rps']:.2f} requests/s; "
        f"p50 {ms(result['p50_ms'])} ms, p95 {ms(result['p95_ms'])} ms, max {ms(result['max_ms'])} ms",
    ]
    work = result.get("without_login")
    if work:
        lines.append(
            f"without the log-ins (auth: …): {work['requests']} requests, {work['rps']:.2f} requests/s; "
            f"p50 {ms(work['p50_ms'])} ms, p95 {ms(work['p95_ms'])} ms, max {ms(work['max_ms'])} ms"
        )
    lines += [
        f"failures: {result['failures']} ({100 * result['failure_ratio']:.2f} %)",
    ]
    for f in result["failures_by_cause"]:
        lines.append(f"  {f['count']:>5} × {f['method']} {f['name']}: {f['error']}")
    for e in result["exceptions"]:
        lines.append(f"  {e['count']:>5} × exception in the locustfile: {e['message']}")
    if result["skipped"]:
        lines.append("not sent, to stay within the portal's limits or for want of work:")
        for name, count in sorted(result["skipped"].items()):
            lines.append(f"  {count:>5} × {name}")
    cpu = result["cpu_s"]
    lines.append(
        f"CPU: gunicorn {cpu['gunicorn']} s, locust {cpu['locust']} s, of {cpu['cores']} cores × "
        f"{result['duration_s']} s; machine load average {cpu['load_average_before']} before, "
        f"{cpu['load_average_after']} after"
    )
    errors = result["server_errors"]
    lines.append(
        f"server log: {errors['tracebacks']} traceback(s), {errors['internal_server_errors']} internal server "
        f"error(s), {errors['worker_timeouts']} worker timeout(s)"
    )
    for excerpt in errors["excerpts"][:2]:
        lines += ["  " + line for line in excerpt.splitlines()[-25:]]
    for note in result["notes"]:
        lines.append(f"note: {note}")
    lines.append("result: " + ("OK" if result["ok"] else "ERRORS"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--duration", type=int, default=60, help="seconds")
    parser.add_argument(
        "--spawn-rate", type=float, default=None, help=f"users started per second (default {DEFAULT_SPAWN_RATE})"
    )
    parser.add_argument("--password", default=DEFAULT_PASSWORD, help="every simulated account's password")
    parser.add_argument("--dealer-share", type=float, default=0.7)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--broker-url", default=None, help=f"default {DEFAULT_BROKER_URL}")
    parser.add_argument("--cache-url", default=None, help=f"default CACHE_URL if Redis, else {DEFAULT_CACHE_URL}")
    parser.add_argument("--keep-logs", default=None, help="a folder for the server's and locust's logs")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)
    try:
        result = run(
            users=args.users,
            duration=args.duration,
            spawn_rate=args.spawn_rate,
            password=args.password,
            dealer_share=args.dealer_share,
            workers=args.workers,
            threads=args.threads,
            seed=args.seed,
            broker_url=args.broker_url,
            cache_url=args.cache_url,
            keep_logs=args.keep_logs,
        )
    except LoadTestError as exc:
        print(f"load test not run: {exc}", file=sys.stderr)
        return 2
    print(summary(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
