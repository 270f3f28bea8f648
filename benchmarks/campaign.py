"""Update campaign: a release rolled out in waves to N real agents (full-campaign time).

What runs (all on 127.0.0.1, in a temporary directory removed at the end):

1. ``trustfleet server init`` makes a home (``[broker] ingest_workers`` set by
   ``--ingest-workers``); ``trustfleet sim image`` + ``release build/publish`` publish 1.0.0.
2. The factory's batch path (``services.factory.provision_devices``) provisions N devices:
   one SoftHSM2 token and identity key per device (timed: ``token``), then the IDevIDs and
   slot a with 1.0.0 (``certify``). Telemetry and heartbeat intervals are made long so the
   agents mostly idle, and ``[ota] health_timeout_s`` is set (``--health-timeout-s``).
3. ``trustfleet server run`` (HTTPS EST + /tuf, Mosquitto, ingest workers, ``campaigns#0``).
4. N real agents, ``trustfleet-agent run --device DIR``, each in its own session, started so
   that at most ``--enroll-batch`` are enrolling at a time, until every device is enrolled
   and has been seen over MQTT.
5. 1.1.0 (a minor release: ``release publish`` computes the delta from 1.0.0), then
   ``trustfleet campaign create --waves 1,10,50,100% --max-failure-rate 5%``; the store is
   polled until the campaign is ``completed`` (or halted, or ``--timeout-s`` runs out).

Figures: total campaign time (created → completed, store clock), time per wave (first
notification → last finished device), devices updated by delta vs full image (the ``delta``
flag of their ``ota/status`` reports), bytes downloaded, failures, CPU (cores) and RSS of the
server's process tree (HTTPS workers, ingest, ticker, Mosquitto) and of the agents (largest
single agent incl. its boot child; all agents) during the campaign, sampled from /proc.

Usage::

    .venv/bin/python benchmarks/campaign.py [--devices 200] [--image-size 4MiB]
        [--waves 1,10,50,100%] [--max-failure-rate 5%] [--timeout-s 3600] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import _campaignkit as kit
import _procs as bench

from trustfleet.configfile.device import update_device_settings
from trustfleet.sim.process import ManagedProcess, free_port

VENV_BIN = Path(sys.executable).parent
TRUSTFLEET = VENV_BIN / "trustfleet"
AGENT = VENV_BIN / "trustfleet-agent"
MODEL = "sim-v1"
OLD, NEW = "1.0.0", "1.1.0"
_MAX_DEVICES = 2000
_AGENT_MIB = 60  # what one idle agent and its share of the rest may need (estimate)
_CMD_TIMEOUT_S = 600.0
_TERMINAL = ("completed", "halted", "aborted")
_FINISHED = ("committed", "up_to_date", "failed", "rolled_back", "refused", "timed_out")

Log = Callable[[str], None]


class Run:
    """Everything one run started, so that it can all be stopped."""

    def __init__(self, tmp: Path, args: argparse.Namespace, log: Log) -> None:
        self.tmp, self.args, self.log = tmp, args, log
        self.home = tmp / "home"
        self.devdir = tmp / "devices"
        self.api_port, self.mqtt_port = free_port(), free_port()
        self.server: ManagedProcess | None = None
        self.agents: dict[str, ManagedProcess] = {}
        self.rt: Any = None
        self.deadline: float = time.monotonic() + args.timeout_s

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def cli(self, *argv: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(TRUSTFLEET), *argv],
            capture_output=True,
            text=True,
            timeout=max(10.0, min(_CMD_TIMEOUT_S, self.left())),
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"trustfleet {' '.join(argv[:2])} failed: {proc.stderr[-2000:]}")
        return proc

    def close(self) -> None:
        roots = [p.pid for p in self.agents.values()]
        roots += [self.server.pid] if self.server is not None else []
        leaders = kit.session_leaders_below(roots)  # swtpm of each agent, Mosquitto
        killed = kit.stop_groups(self.agents.values(), timeout_s=30)
        if killed:
            self.log(f"{killed} agent(s) had to be killed")
        if self.server is not None:
            kit.stop_groups([self.server], timeout_s=30)
        for pid in leaders:  # the agents and the server normally stop these themselves
            kit.kill_group_of(pid)
        if self.rt is not None:
            self.rt.close()


# -- setup -----------------------------------------------------------------------------------


def make_home(run: Run) -> None:
    run.cli(
        "server",
        "init",
        "--home",
        str(run.home),
        "--api-port",
        str(run.api_port),
        "--mqtt-port",
        str(run.mqtt_port),
    )
    toml = run.home / "trustfleet.toml"
    text, n = re.subn(
        r"(?m)^ingest_workers = \d+",
        f"ingest_workers = {run.args.ingest_workers}",
        toml.read_text(),
    )
    if n != 1:
        raise RuntimeError("no [broker] ingest_workers in the rendered trustfleet.toml")
    toml.write_text(text)


def publish(run: Run, version: str) -> dict[str, float]:
    """``sim image`` + ``release build`` + ``release publish`` of one version (timed)."""
    image = run.tmp / f"image-{version}.bin"
    t0 = time.perf_counter()
    run.cli(
        "sim", "image", "--version", version, "--out", str(image), "--size", run.args.image_size
    )
    t1 = time.perf_counter()
    home = ("--home", str(run.home))
    run.cli(
        "release", "build", *home, "--version", version, "--image", str(image), "--model", MODEL
    )
    t2 = time.perf_counter()
    run.cli("release", "publish", *home, "--version", version, "--model", MODEL, "--json")
    t3 = time.perf_counter()
    image.unlink()
    return {
        "image_s": round(t1 - t0, 2),
        "build_s": round(t2 - t1, 2),
        "publish_s": round(t3 - t2, 2),
    }


def runtime(run: Run) -> Any:
    if run.rt is None:
        from trustfleet.services.runtime import Runtime
        from trustfleet.settings import load_server_settings

        run.rt = Runtime.open(load_server_settings(run.home))
    return run.rt


def provision(run: Run) -> tuple[list[str], dict[str, Any]]:
    """N devices through the factory's batch path; tokens timed apart from certification."""
    from trustfleet.services.factory import provision_devices

    marks: dict[str, list[float]] = {"key": [], "device": []}
    t0 = time.perf_counter()
    made = provision_devices(
        runtime(run),
        out_dir=run.devdir,
        count=run.args.devices,
        model=MODEL,
        now=datetime.now(UTC),
        on_progress=lambda what: marks[what].append(time.perf_counter()),
    )
    t1 = time.perf_counter()
    keys_end = marks["key"][-1] if marks["key"] else t0
    n = len(made)
    a = run.args
    idle = {"telemetry_interval_s": a.idle_s, "heartbeat_interval_s": a.idle_s}
    for d in made:  # idle agents: long intervals; a loaded machine needs patience
        update_device_settings(
            run.devdir / d.device_id,
            {
                "mqtt": {**idle, "connect_timeout_s": 30},
                "ota": {"health_timeout_s": a.health_timeout_s},
            },
        )
    tokens_s = keys_end - t0
    return [d.device_id for d in made], {
        "devices": n,
        "total_s": round(t1 - t0, 2),
        "tokens_s": round(tokens_s, 2),
        "token_ms_per_device": round(1000 * tokens_s / max(1, n), 1),
        "certify_s": round(t1 - keys_end, 2),  # IDevID, slot a, swtpm manufacture (EK, AK)
        "certify_ms_per_device": round(1000 * (t1 - keys_end) / max(1, n), 1),
    }


def start_server(run: Run) -> float:
    log = run.tmp / "server.log"
    t0 = time.perf_counter()
    run.server = bench.serve_home(
        run.home,
        ready=lambda: _server_ready(log),
        timeout_s=120,
        args=("--workers", str(run.args.workers)),
        log=log,
    )
    return round(time.perf_counter() - t0, 2)


def _server_ready(log: Path) -> bool:
    text = log.read_text(errors="replace")
    return "serving https://" in text and "not subscribed yet" not in text


def start_agents(run: Run, ids: list[str]) -> dict[str, Any]:
    """Start agents, at most ``--enroll-batch`` enrolling at a time, until all are online."""
    env = dict(os.environ)
    todo, online, restarts, reported = list(ids), set[str](), 0, 0
    low_memory = False
    t0 = time.perf_counter()
    limit = time.monotonic() + min(run.left(), run.args.enroll_timeout_s)
    while len(online) < len(ids) and time.monotonic() < limit:
        facts = kit.device_facts(runtime(run), set(ids))
        online = {d for d, (state, seen, _fw) in facts.items() if state == "enrolled" and seen}
        for device_id, proc in run.agents.items():
            if device_id not in online and not proc.running and restarts < len(ids):
                restarts += 1  # an agent that gave up (e.g. EST refused under load): again
                run.agents[device_id] = _agent(run, device_id, env)
        if todo and kit.mem_available_mib() < run.args.min_free_mib:
            run.log(
                f"  stopping at {len(run.agents)} agents: under {run.args.min_free_mib} MiB free"
            )
            low_memory = True
            break
        while todo and len(run.agents) - len(online & run.agents.keys()) < run.args.enroll_batch:
            device_id = todo.pop(0)
            run.agents[device_id] = _agent(run, device_id, env)
        if len(online) // 50 > reported:
            reported = len(online) // 50
            run.log(f"  {len(online)}/{len(ids)} agents online")
        time.sleep(0.5)
    seconds = time.perf_counter() - t0
    return {
        "online": len(online),
        "seconds": round(seconds, 2),
        "per_s": round(len(online) / seconds, 2) if seconds else None,
        "agent_restarts": restarts,
        "stopped_low_memory": low_memory,
    }


def _agent(run: Run, device_id: str, env: dict[str, str]) -> ManagedProcess:
    folder = run.devdir / device_id
    argv = [str(AGENT), "run", "--device", str(folder)]
    return ManagedProcess(argv, log=folder / "agent.log", env=env, name=device_id).start()


def delta_facts(run: Run) -> dict[str, Any]:
    with runtime(run).uow.begin(read_only=True) as tx:
        record = tx.releases.get(model=MODEL, version=NEW)
    manifest = json.loads(record.manifest)
    deltas = {d["from_version"]: d["length"] for d in manifest["deltas"]}
    return {"image_bytes": manifest["image"]["length"], "delta_bytes": deltas.get(OLD)}


# -- the campaign ------------------------------------------------------------------------------


def campaign(run: Run, ids: list[str]) -> dict[str, Any]:
    a = run.args
    device_timeout = max(60, int(min(a.timeout_s, run.left())))
    doc = json.loads(
        run.cli(
            "campaign",
            "create",
            "--home",
            str(run.home),
            "--release",
            NEW,
            "--model",
            MODEL,
            "--waves",
            a.waves,
            "--max-failure-rate",
            a.max_failure_rate,
            "--device-timeout",
            f"{device_timeout}s",
            "--json",
        ).stdout
    )
    cid = doc["id"]
    run.log(f"campaign {cid}: waves of {[w['size'] for w in doc['waves'][1:]]} devices")
    agent_pids = [p.pid for p in run.agents.values()]
    seen_delta: dict[str, bool] = {}
    wave_seen: dict[int, float] = {}
    with kit.Sampler({"server": [run.server.pid], "agents": agent_pids}) as sampler:
        t0 = time.monotonic()
        while True:
            record, rows = kit.campaign_rows(runtime(run), cid)
            for r in rows:
                if r.delta is not None:
                    seen_delta.setdefault(r.device_id, r.delta)
            wave_seen.setdefault(record.current_wave, round(time.monotonic() - t0, 2))
            if record.state in _TERMINAL or run.left() <= 0:
                break
            time.sleep(a.poll_s)
        resources = sampler.summary()
    exited = sum(1 for p in run.agents.values() if not p.running)
    return summarize(
        record,
        rows,
        seen_delta,
        wave_seen_s=wave_seen,
        resources=resources,
        agents_exited=exited,
    )


def summarize(
    record: Any, rows: list[Any], seen_delta: dict[str, bool], **extra: Any
) -> dict[str, Any]:
    states: dict[str, int] = {}
    for r in rows:
        states[r.state] = states.get(r.state, 0) + 1
    end = record.updated_at if record.state in _TERMINAL else datetime.now(UTC)
    waves = []
    for wave, pct in enumerate(record.waves, start=1):
        mine = [r for r in rows if r.wave == wave]
        sent = [r.notified_at for r in mine if r.notified_at is not None]
        done = [r.updated_at for r in mine if r.state in _FINISHED]
        first = min(sent) if sent else None
        last = max(done) if done and len(done) == len(mine) else None
        waves.append(
            {
                "wave": wave,
                "percent": pct,
                "devices": len(mine),
                "start_s": _since(record.created_at, first),
                "end_s": _since(record.created_at, last),
                "seconds": _since(first, last) if first and last else None,
                "committed": sum(r.state == "committed" for r in mine),
            }
        )
    committed = [r for r in rows if r.state == "committed"]
    by_delta = [seen_delta.get(r.device_id, r.delta) for r in committed]
    return {
        "id": record.id,
        "state": record.state,
        "reason": record.reason,
        "total_s": _since(record.created_at, end),
        "devices": len(rows),
        "states": states,
        "waves": waves,
        "committed_by_delta": sum(d is True for d in by_delta),
        "committed_by_full_image": sum(d is False for d in by_delta),
        "committed_unknown_path": sum(d is None for d in by_delta),
        "failures": [
            {"device": r.device_id, "state": r.state, "code": r.code, "reason": r.reason}
            for r in rows
            if r.state in ("failed", "rolled_back", "refused", "timed_out")
        ][:20],
        **extra,
    }


def _since(start: datetime | None, end: datetime | None) -> float | None:
    return None if start is None or end is None else round((end - start).total_seconds(), 2)


# -- the run -----------------------------------------------------------------------------------


def run_all(run: Run) -> dict[str, Any]:
    a, log = run.args, run.log
    doc: dict[str, Any] = {
        "benchmark": "campaign",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "params": bench.params(
            a,
            "devices",
            "image_size",
            "waves",
            "max_failure_rate",
            "workers",
            "ingest_workers",
            "enroll_batch",
            "health_timeout_s",
            "idle_s",
        ),
        "setup": {},
    }
    setup = doc["setup"]
    log(f"server home in {run.tmp} …")
    t0 = time.perf_counter()
    make_home(run)
    setup["home_s"] = round(time.perf_counter() - t0, 2)
    log(f"release {OLD} ({a.image_size}) …")
    setup["release_old"] = publish(run, OLD)
    log(f"provisioning {a.devices} devices (one SoftHSM2 token each) …")
    ids, setup["provision"] = provision(run)
    log(f"  {setup['provision']}")
    run.rt.close()  # the server is the store's writer from here on; reopened for reads
    run.rt = None
    log("server run …")
    setup["server_start_s"] = start_server(run)
    log(f"starting {len(ids)} agents (≤ {a.enroll_batch} enrolling at a time) …")
    doc["enroll"] = start_agents(run, ids)
    log(f"  {doc['enroll']}")
    if doc["enroll"]["online"] < len(ids):
        doc["error"] = f"only {doc['enroll']['online']} of {len(ids)} agents came online"
        return doc
    log(f"release {NEW} (delta from {OLD}) …")
    setup["release_new"] = publish(run, NEW)
    setup["release_new"].update(delta_facts(run))
    log("campaign …")
    doc["campaign"] = campaign(run, ids)
    facts = kit.device_facts(runtime(run), set(ids))
    c, rn = doc["campaign"], setup["release_new"]
    c["bytes_by_path"] = (
        c["committed_by_delta"] * (rn["delta_bytes"] or 0)
        + c["committed_by_full_image"] * rn["image_bytes"]
    )
    for f in c["failures"][:3]:  # what the device said, for the report
        f["agent_log_tail"] = kit.tail(run.devdir / f["device"] / "agent.log", 800)
    doc["campaign"]["firmware_versions"] = _count(fw for _s, _seen, fw in facts.values())
    return doc


def _count(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[str(v)] = out.get(str(v), 0) + 1
    return out


# -- output ------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = bench.cpu_model()
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "mem_available_mib_at_start": kit.mem_available_mib(),
        "python": platform.python_version(),
    }


def print_rich(doc: dict[str, Any]) -> None:
    p, m, s = doc["params"], doc["machine"], doc["setup"]
    console = bench.report_console(
        "Campaign benchmark",
        f"{p['devices']} agents, {p['image_size']} image, "
        f"waves {p['waves']}, max failure rate {p['max_failure_rate']}; {m['nproc']} cores, "
        f"{m['mem_gib']} GiB; {p['workers']} HTTPS worker(s), {p['ingest_workers']} ingest",
    )
    table = bench.figures_table(("phase", "figure", "value"), left=("phase", "figure"))
    pv = s.get("provision", {})
    if pv:
        table.add_row("provision", "total s", str(pv["total_s"]))
        table.add_row(
            "",
            "SoftHSM2 token + key s (ms/device)",
            f"{pv['tokens_s']} ({pv['token_ms_per_device']})",
        )
        table.add_row(
            "",
            "IDevID + slot a + swtpm (EK, AK) s (ms/device)",
            f"{pv['certify_s']} ({pv['certify_ms_per_device']})",
        )
    e = doc.get("enroll")
    if e:
        table.add_row(
            "enroll", "online / s / per s", f"{e['online']} / {e['seconds']} / {e['per_s']}"
        )
    rn = s.get("release_new")
    if rn:
        table.add_row("release 1.1.0", "publish s (deltas)", str(rn["publish_s"]))
        table.add_row("", "image / delta bytes", f"{rn['image_bytes']} / {rn['delta_bytes']}")
    c = doc.get("campaign")
    if c:
        _campaign_rows(table, c)
    console.print(table)
    for f in (c or {}).get("failures", []):
        console.print(f"[red]failure:[/] {f}", highlight=False)
    if doc.get("error"):
        console.print(f"[red]error:[/] {doc['error']}", highlight=False)


def _campaign_rows(table: Any, c: dict[str, Any]) -> None:
    table.add_row("campaign", "state", f"{c['state']} {c['reason'] or ''}".strip())
    table.add_row("", "total s (created → end)", str(c["total_s"]))
    for w in c["waves"]:
        table.add_row(
            "",
            f"wave {w['wave']} ({w['percent']:g}%, {w['devices']} devices) s",
            f"{bench.cell(w['seconds'], 'g')} (at {bench.cell(w['start_s'], 'g')} → "
            f"{bench.cell(w['end_s'], 'g')})",
        )
    table.add_row("", "states", ", ".join(f"{k}: {v}" for k, v in sorted(c["states"].items())))
    table.add_row(
        "",
        "committed by delta / full / ?",
        f"{c['committed_by_delta']} / {c['committed_by_full_image']} / "
        f"{c['committed_unknown_path']}",
    )
    table.add_row(
        "",
        "bytes downloaded (delta / image sizes x devices)",
        str(c.get("bytes_by_path")),
    )
    r = c["resources"]
    sv, ag = r["server"], r["agents"]
    table.add_row(
        "resources",
        "server CPU cores avg / peak",
        f"{sv['cpu_avg_cores']} / {sv['cpu_peak_cores']}",
    )
    table.add_row("", "server RSS peak MiB", str(sv["rss_peak_mib"]))
    table.add_row(
        "", "agents CPU cores avg / peak", f"{ag['cpu_avg_cores']} / {ag['cpu_peak_cores']}"
    )
    table.add_row("", "agents RSS MiB per agent at start", str(ag["rss_first_per_root_mib"]))
    table.add_row("", "one agent RSS peak MiB (+ boot child)", str(ag["rss_peak_one_mib"]))
    table.add_row("", "all agents RSS peak MiB", str(ag["rss_peak_mib"]))
    table.add_row(
        "", "machine busy avg / peak", f"{r['machine']['busy_avg']} / {r['machine']['busy_peak']}"
    )
    table.add_row("", "agents exited", str(c["agents_exited"]))


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = bench.benchmark_parser(__doc__, keep=True)
    ap.add_argument("--devices", type=int, default=200, help="agents (default 200)")
    ap.add_argument("--image-size", default="4MiB", help="sim image size (default 4MiB)")
    ap.add_argument("--waves", default="1,10,50,100%", help="campaign waves (1,10,50,100%%)")
    ap.add_argument("--max-failure-rate", default="5%", help="halt threshold (default 5%%)")
    ap.add_argument("--workers", type=int, default=2, help="HTTPS worker processes (2)")
    ap.add_argument("--ingest-workers", type=int, default=2, help="ingest workers (2)")
    ap.add_argument("--enroll-batch", type=int, default=10, help="agents enrolling at once (10)")
    ap.add_argument("--enroll-timeout-s", type=float, default=1800.0, help="bound (1800)")
    ap.add_argument(
        "--health-timeout-s",
        type=float,
        default=300.0,
        help="device [ota] health_timeout_s after the reboot (300)",
    )
    ap.add_argument(
        "--idle-s", type=int, default=3600, help="agents' telemetry and heartbeat interval s (3600)"
    )
    ap.add_argument("--poll-s", type=float, default=1.0, help="store poll interval (1)")
    ap.add_argument("--timeout-s", type=float, default=3600.0, help="whole-run bound (3600)")
    ap.add_argument("--force", action="store_true", help="skip the free-memory check")
    ap.add_argument(
        "--min-free-mib",
        type=int,
        default=2048,
        help="start no more agents below this MemAvailable (2048)",
    )
    args = ap.parse_args(argv)
    if not 1 <= args.devices <= _MAX_DEVICES:
        ap.error(f"--devices must be between 1 and {_MAX_DEVICES}")
    if not 1 <= args.workers <= 16 or not 1 <= args.ingest_workers <= 16:
        ap.error("--workers and --ingest-workers must be between 1 and 16")
    if not 1 <= args.enroll_batch <= 200 or not 0.1 <= args.poll_s <= 30:
        ap.error("--enroll-batch must be within 1..200 and --poll-s within 0.1..30")
    if not 60 <= args.timeout_s <= 6 * 3600 or not 10 <= args.enroll_timeout_s <= 6 * 3600:
        ap.error("--timeout-s must be within 60..21600 s, --enroll-timeout-s 10..21600 s")
    if not 1 <= args.health_timeout_s <= 600 or not 1 <= args.idle_s <= 86400:
        ap.error("--health-timeout-s must be within 1..600 s and --idle-s within 1..86400 s")
    need = args.devices * _AGENT_MIB + 1024
    if not args.force and kit.mem_available_mib() < need:
        ap.error(
            f"{args.devices} agents need about {need} MiB; only "
            f"{kit.mem_available_mib()} MiB are available (--force to try anyway)"
        )
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="tf-bench-campaign-"))
    log: Log = bench.progress(quiet=args.json)
    run = Run(tmp, args, log)
    doc: dict[str, Any] | None = None
    try:
        # Phases watch run.left(); the alarm is the backstop for a phase that hangs.
        with bench.interrupts_and_deadline(args.timeout_s + 120):
            doc = run_all(run)
    except KeyboardInterrupt:
        print("interrupted (Ctrl-C, SIGTERM or --timeout-s); cleaning up", file=sys.stderr)
        return 130
    finally:
        with bench.interrupts_and_deadline(180):
            run.close()
        bench.drop_workdir(tmp, keep=args.keep)
    bench.emit(doc, as_json=args.json, show=print_rich)
    c = doc.get("campaign") or {}
    ok = c.get("state") == "completed" and c.get("states", {}).get("committed") == args.devices
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
