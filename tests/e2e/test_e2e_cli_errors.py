"""Every command of the CLI with operators' mistakes: one error line with the right hint.

Issue 9 section 7. The table walks the whole ``trustfleet --help`` tree (a test fails when a
command has no case): bad ports, missing or wrong files, a file where a directory belongs and
the reverse, /proc paths, unknown ids. Each case runs the installed ``trustfleet`` as a
subprocess and asserts a non-zero exit, exactly one non-empty line on stderr (``error: …``
with the message and ``Hint: …``), no ``Traceback`` anywhere, and the words that make the
message and the hint right for that case. Interrupts (Ctrl-C) are at the end of the file.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer

from support.server import TRUSTFLEET, RunningServer, free_port, init_home, run_cli
from trustfleet import __version__
from trustfleet.cli._argv import walk_commands
from trustfleet.cli.main import app

pytestmark = pytest.mark.e2e

INTERRUPT_TIMEOUT_S = 120


@dataclass(frozen=True)
class Work:
    """A home (not served), one provisioned device and paths of every wrong kind."""

    root: Path
    home: Path
    device: Path
    corrupt_device: Path

    @property
    def afile(self) -> Path:
        return self.root / "afile"

    @property
    def adir(self) -> Path:
        return self.root / "adir"


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Work:
    root = tmp_path_factory.mktemp("cli-errors")
    (root / "afile").write_text("not a directory\n")
    (root / "adir").mkdir()
    (root / "bad.csr").write_text("not a csr\n")
    home = root / "home"
    init_home(home, port=free_port())
    made = run_cli("factory", "provision", "--home", home, "--out", root / "devs", "--json")
    assert made.returncode == 0, made.stderr
    device = Path(json.loads(made.stdout)["devices"][0]["directory"])
    corrupt = root / "corrupt" / device.name
    shutil.copytree(device, corrupt, symlinks=True)
    (corrupt / "idevid.pem").write_text("-----BEGIN CERTIFICATE-----\ngarbage\n")
    marked = root / "marked" / device.name  # a wipe marker, but the device is not decommissioned
    shutil.copytree(device, marked, symlinks=True)
    (marked / "decommissioned.json").write_text(
        json.dumps({"evidence": {"device_id": device.name}})
    )
    return Work(root=root, home=home, device=device, corrupt_device=corrupt)


# id: (command line with {home} {root} {afile} {adir} {device} {corrupt}, words of the message,
#      words of the hint)
CASES: dict[str, tuple[str, str, str]] = {
    # server
    "server-init-api-port-70000":
        ("server init --home {root}/n1 --api-port 70000", "--api-port", "--help"),
    "server-init-api-port-0": ("server init --home {root}/n2 --api-port 0", "--api-port", "--help"),
    "server-init-api-port-minus-1":
        ("server init --home {root}/n3 --api-port -1", "--api-port", "--help"),
    "server-init-mqtt-port-70000":
        ("server init --home {root}/n4 --mqtt-port 70000", "--mqtt-port", "--help"),
    "server-init-home-is-a-file": ("server init --home {afile}", "not a folder", "new folder"),
    "server-init-home-in-proc":
        ("server init --home /proc/nope", "/proc/nope", "folder you may create"),
    "server-init-home-exists": ("server init --home {home}", "exists", "new directory"),
    "server-run-api-port-70000":
        ("server run --home {home} --api-port 70000", "--api-port", "--help"),
    "server-run-home-is-a-file":
        ("server run --home {afile}", "is a file, not a directory", "not a file"),
    "server-run-no-home": ("server run --home {adir}", "no server home", "server init"),
    "server-rotate-tls-no-home":
        ("server rotate-tls --home {adir}", "no server home", "server init"),
    # ca rollover (docs/lifecycle.md)
    "ca-rollover-start-no-home":
        ("ca rollover start --home {adir} --kind device", "no server home", "server init"),
    "ca-rollover-activate-unknown":
        ("ca rollover activate device-9 --home {home}", "no CA named 'device-9'", "ca status"),
    "ca-rollover-retire-active":
        ("ca rollover retire device --home {home}", "is active", "activate its successor"),
    "server-backup-no-key":
        ("server backup --home {home} --out {root}/b.tfbackup", "exactly one of", "encrypted"),
    "server-backup-out-is-a-folder":
        ("server backup --home {home} --out {adir} --passphrase-file {afile}", "is a link or a "
         "folder", "new file name"),
    "server-restore-not-a-backup":
        ("server restore {afile} --home {root}/r1 --passphrase-file {afile}",
         "not a TrustFleet backup", "not a TrustFleet backup"),
    "server-restore-into-a-home": ("server restore {afile} --home {home} --passphrase-file {afile}",
                                   "not empty", "new folder"),
    "server-restore-store-url-not-postgres":
        ("server restore {afile} --home {root}/r2 --passphrase-file {afile} --store-url "
         "sqlite:///x.sqlite3", "must name a PostgreSQL database", "empty database"),
    "server-check-home-is-a-file":
        ("server check --home {afile}", "is a file, not a directory", "not a file"),
    # factory
    "factory-provision-out-is-a-file":
        ("factory provision --home {home} --out {afile}", "not a folder", "folder for the device"),
    "factory-provision-out-in-proc":
        ("factory provision --home {home} --out /proc/nope", "cannot be created",
         "folder for the device"),
    "factory-provision-count-0":
        ("factory provision --home {home} --out {adir} --count 0", "--count", "--count 10"),
    "factory-provision-no-target":
        ("factory provision --home {home}", "either --out", "--reprovision"),
    "factory-provision-reprovision-not-wiped":
        ("factory provision --home {home} --reprovision {device}", "no decommissioned.json",
         "wiped itself"),
    "factory-provision-reprovision-not-decommissioned":
        ("factory provision --home {home} --reprovision {root}/marked/{device_id}",
         "not decommissioned", "decommission it first"),
    "factory-sign-csr-missing-csr":
        ("factory sign-csr --home {home} --csr {root}/none.csr --out {root}/o.pem",
         "none.csr", "--csr"),
    "factory-sign-csr-csr-is-a-dir":
        ("factory sign-csr --home {home} --csr {adir} --out {root}/o.pem", "directory", "--csr"),
    "factory-sign-csr-not-a-csr":
        ("factory sign-csr --home {home} --csr {root}/bad.csr --out {root}/o2.pem",
         "CSR", "openssl req"),
    "factory-sign-csr-out-exists":
        ("factory sign-csr --home {home} --csr {root}/bad.csr --out {afile}",
         "exists", "another --out"),
    "factory-sign-csr-out-in-proc":
        ("factory sign-csr --home {home} --csr {root}/bad.csr --out /proc/nope/o.pem", "/proc/nope",
         "another --out"),
    # device
    "device-list-limit-0": ("device list --home {home} --limit 0", "--limit", "--help"),
    "device-revoke-bad-reason":
        ("device revoke dev-nosuchdevice --reason because --home {home}",
         "because", "keyCompromise"),
    "device-command-unknown-name":
        ("device command dev-nosuchdevice reboot --home {home}", "reboot", "one of: ping, report"),
    "device-command-bad-wait":
        ("device command dev-nosuchdevice ping --wait forever --home {home}", "forever", "10s"),
    "device-commands-limit-0": ("device commands dev-nosuchdevice --limit 0 --home {home}",
                                "--limit", "--help"),
    "device-rekey-no-target": ("device rekey --home {home}", "exactly one", "--model"),
    "device-rekey-two-targets":
        ("device reenroll dev-nosuchdevice --all --home {home}", "exactly one", "--all"),
    "device-rekey-bad-timeout":
        ("device rekey --all --wait --timeout -1 --home {home}", "--timeout", "--timeout 600"),
    # agent
    "agent-enroll-corrupt-idevid":
        ("agent enroll --device {corrupt}", "idevid.pem is not a PEM certificate",
         "provision the device again"),
    "agent-enroll-device-is-a-file": ("agent enroll --device {afile}", "is a file", "not a file"),
    "agent-run-no-device": ("agent run --device /proc/nope", "no device", "factory provision"),
    "agent-run-corrupt-idevid":
        ("agent run --device {corrupt} --once", "idevid.pem is not a PEM certificate",
         "provision the device again"),
    "agent-update-device-is-a-file": ("agent update --device {afile}", "is a file", "not a file"),
    "agent-update-bad-version":
        ("agent update --device {device} --version latest", "latest", "MAJOR.MINOR.PATCH"),
    # ota
    "ota-init-exists": ("ota init --home {home}", "exists already", "ota status"),
    "ota-rotate-root-home-in-proc":
        ("ota rotate-root --home /proc/nope", "no server home", "server init"),
    "ota-rotate-online-no-home":
        ("ota rotate-online --home {adir}", "no server home", "server init"),
    # Regression (issue 14): with every PIN online, rotate-root moved the TUF root unattended.
    "ota-rotate-root-no-terminal-no-pin-files":
        ("ota rotate-root --home {home}", "no terminal", "--pin-file"),
    "ota-rotate-online-bad-pin-file": ("ota rotate-online --home {home} --pin-file x", "TOKEN=PATH",
                                       "--pin-file"),
    # ca
    "ca-status-no-home": ("ca status --home {adir}", "no server home", "server init"),
    "ca-crl-root-no-offline-folder":
        ("ca crl-root --home {home} --offline {adir}", "no offline folder", "--offline"),
    "ca-crl-root-no-terminal": ("ca crl-root --home {home}", "no terminal", "--pin-file"),
    # release
    "release-build-missing-image":
        ("release build --home {home} --version 1.0.0 --image {root}/none.bin", "none.bin", "path"),
    "release-build-image-is-a-dir":
        ("release build --home {home} --version 1.0.0 --image {adir}", "not a regular file",
         "image file"),
    "release-build-bad-version":
        ("release build --home {home} --version v1 --image {afile}", "v1", "MAJOR.MINOR.PATCH"),
    "release-publish-not-built":
        ("release publish --home {home} --version 7.7.7", "not built", "release build"),
    "release-show-unknown":
        ("release show --home {home} --version 7.7.7", "no published release", "release list"),
    "release-build-real-image-without-sbom":
        ("release build --home {home} --version 8.8.8 --image {afile}", "must be supplied",
         "--sbom FILE"),
    "release-verify-no-repository":
        ("release verify --version 1.0.0", "give either --home", "--repo DIR with --root FILE"),
    # campaign
    "campaign-create-unpublished-release":
        ("campaign create --home {home} --release 7.7.7 --waves 100 --max-failure-rate 5%",
         "no published release 7.7.7", "release publish"),
    "campaign-create-bad-waves":
        ("campaign create --home {home} --release 1.0.0 --waves 50,20 --max-failure-rate 5%",
         "waves", "ending at 100"),
    "campaign-create-bad-rate":
        ("campaign create --home {home} --release 1.0.0 --waves 100 --max-failure-rate lots",
         "lots", "5%"),
    # attest
    "attest-run-not-enrolled":
        ("attest run {device_id} --home {home}", "manufactured", "start its agent"),
    "attest-run-wait-negative":
        ("attest run {device_id} --home {home} --wait -1", "--wait", "--help"),
    # sim
    "sim-image-out-is-a-dir":
        ("sim image --version 1.0.0 --size 1MiB --out {adir}", "directory", "writable"),
    "sim-image-out-in-proc":
        ("sim image --version 1.0.0 --size 1MiB --out /proc/nope/x.bin", "/proc/nope", "writable"),
    "sim-image-bad-size":
        ("sim image --version 1.0.0 --size lots --out {root}/x.bin", "lots", "MiB"),
    "sim-fleet-unknown-scenario":
        ("sim fleet --scenario no-such-scenario", "no-such-scenario", "built-in"),
    "sim-fleet-missing-file":
        ("sim fleet --scenario {root}/none.toml", "no scenario file", "--scenario"),
    # demo
    "demo-workdir-is-a-file": ("demo --workdir {afile}", "is a file", "empty or new directory"),
    "demo-workdir-not-empty": ("demo --workdir {root}", "not empty", "empty or new"),
    "demo-too-few-devices": ("demo --devices 2", "--devices", "--help"),
    # audit
    "audit-log-bad-since":
        ("audit log --home {home} --since yesterday", "not an ISO 8601 time", "2026-12-01"),
    "audit-checkpoint-none-yet":
        ("audit checkpoint --home {home}", "no checkpoint yet", "audit checkpoint --now"),
    "audit-prove-none-yet": ("audit prove 99999 --home {home}", "no checkpoint yet", "--now"),
    "audit-verify-no-key": ("audit verify --tiles {adir}", "no log key", "audit key"),
    "audit-verify-key-not-a-key":
        ("audit verify --home {adir}", "neither a verifier key nor", "a vkey looks like"),
    "audit-verify-nothing":
        ("audit verify --key {home}/public/audit-log.vkey", "nothing to verify", "--tiles"),
    # witness
    "witness-init-bad-log":
        ("witness init --home {root}/w1 --name w.example/w1 --log nonsense",
         "name+keyid+key", "verifier key"),
    "witness-init-bad-name":
        ("witness init --home {root}/w2 --name a+b --log x", "'name'", "witness init --help"),
    "witness-init-home-exists":
        ("witness init --home {home} --name w.example/w1 --log x", "not empty", "new directory"),
    "witness-init-home-is-a-file":
        ("witness init --home {afile} --name w.example/w1 --log x", "not a folder", "new folder"),
    "witness-serve-no-home": ("witness serve --home {adir}", "no witness home", "witness init"),
    "witness-serve-port-70000":
        ("witness serve --home {adir} --port 70000", "--port", "--help"),
    "witness-status-no-home": ("witness status --home {adir}", "no witness home", "witness init"),
    "witness-alerts-home-is-a-file":
        ("witness alerts --home {afile}", "is a file", "not a file"),
    # user, token
    "user-add-bad-login":
        ("user add Bad! --role auditor --home {home}", "is not a login", "lower case"),
    "user-add-bad-role":
        ("user add carl --role root --home {home}", "not an operator role", "roles:"),
    "user-add-password-file-is-a-dir":
        ("user add carl --role auditor --password-file {adir} --home {home}", "cannot read",
         "check the path"),
    "user-set-role-token-only":
        ("user set-role admin metrics --home {home}", "not an operator role", "roles:"),
    "token-revoke-unknown":
        ("token revoke 0123456789ab --home {home}", "not found", "token list"),
    "token-create-bad-ttl":
        ("token create --owner admin --name n --role admin --ttl forever --home {home}",
         "not a lifetime", "30d"),
    # monitor
    "monitor-evaluate-missing-file":
        ("monitor evaluate --scenario {root}/none.toml", "no scenario file", "--scenario"),
    "monitor-evaluate-not-toml":
        ("monitor evaluate --scenario {afile}", "not valid TOML", "Scenarios and evaluation"),
    "monitor-evaluate-scenario-is-a-dir":
        ("monitor evaluate --scenario {adir}", "not a regular file", "--scenario"),
    "monitor-evaluate-unknown-name":
        ("monitor evaluate --scenario nosuch", "nosuch", "all-attacks"),
    "monitor-evaluate-devices-0":
        ("monitor evaluate --scenario normal --devices 0", "--devices", "--help"),
    "monitor-scenarios-bad-json":
        ("monitor scenarios --json=maybe", "neither true nor false", "--json=false"),
    "monitor-rules-check-missing-file":
        ("monitor rules check {root}/none.toml", "no rules file", "FILE"),
    "monitor-rules-check-not-toml":
        ("monitor rules check {afile}", "not valid TOML", "rules file"),
    # alerts
    "alerts-list-bad-state":
        ("alerts list --state gone --home {home}", "'gone' is not one of", "open"),
    "alerts-list-bad-severity":
        ("alerts list --severity huge --home {home}", "'huge' is not one of", "critical"),
    "alerts-show-not-a-number":
        ("alerts show abc --home {home}", "valid integer", "alerts show --help"),
    "alerts-suppress-bad-for":
        ("alerts suppress 1 --for forever --home {home}", "forever", "2h"),
    # the root, and options every command shares
    "json-with-a-bad-value":
        ("device list --home {home} --json=maybe", "neither true nor false", "--json=false"),
    "unknown-command": ("devices list", "devices", "--help"),
}  # fmt: skip


def _same_mistake(
    commands: tuple[str, ...], *, mistake: str, wrong: str, message: str, hint: str
) -> dict[str, tuple[str, str, str]]:
    """One mistake on many commands: ``{command} {wrong}``, with the same message and hint."""
    return {
        f"{'-'.join(command.split()[:2])}-{mistake}": (f"{command} {wrong}", message, hint)
        for command in commands
    }


CASES |= _same_mistake(
    ("device list", "device reopen dev-nosuchdevice", "ota status", "ota refresh-timestamp",
     "release list", "campaign list", "attest list", "factory provision --out {adir}",
     "audit publish", "audit key", "user list", "token list"),
    mistake="home-is-a-file", wrong="--home {afile}", message="is a file", hint="not a file",
)  # fmt: skip
CASES |= _same_mistake(
    tuple(f"campaign {verb} cmp-nope" for verb in ("status", "pause", "resume", "retry", "abort")),
    mistake="unknown-id",
    wrong="--home {home}",
    message="not found",
    hint="campaign list",
)
CASES |= _same_mistake(
    ("device show dev-nosuchdevice", "device revoke dev-nosuchdevice --reason keyCompromise",
     "device reopen dev-nosuchdevice", "device rekey dev-nosuchdevice",
     "attest status dev-nosuchdevice", "attest run dev-nosuchdevice",
     "attest quarantine dev-nosuchdevice --reason x", "attest lift dev-nosuchdevice",
     "attest release dev-nosuchdevice"),
    mistake="unknown-id", wrong="--home {home}", message="not found", hint="device list",
)  # fmt: skip
CASES |= _same_mistake(
    tuple(f"alerts {verb} 999999" for verb in ("show", "ack", "resolve")),
    mistake="unknown-id", wrong="--home {home}", message="not found", hint="alerts list",
)  # fmt: skip
CASES |= _same_mistake(
    tuple(f"alerts {verb} 999999" for verb in ("approve", "reject")),
    mistake="unknown-id", wrong="--home {home}", message="not found", hint="alerts show",
)  # fmt: skip
CASES |= _same_mistake(
    ("user disable nobody", "user enable nobody", "user reset-mfa nobody",
     "user set-role nobody auditor", "token create --owner nobody --name n --role auditor",
     "token list --owner nobody"),
    mistake="unknown-login", wrong="--home {home}", message="not found", hint="user list",
)  # fmt: skip


def _argv(line: str, w: Work) -> list[str]:
    paths = {
        "home": w.home, "root": w.root, "afile": w.afile, "adir": w.adir, "device": w.device,
        "corrupt": w.corrupt_device, "device_id": w.device.name,
    }  # fmt: skip
    return [word.format(**paths) for word in line.split()]


def _leaf_commands() -> set[str]:
    root = typer.main.get_command(app)
    return {
        " ".join(path)
        for path, command in walk_commands(root)
        if path and not hasattr(command, "commands")
    }


CASES |= {
    "device-decommission-unknown-id": (
        "device decommission dev-nosuchdevice --yes --home {home}", "not found", "device list"),
    "device-decommission-offline-unknown-id": (
        "device decommission dev-nosuchdevice --offline --yes --home {home}", "not found",
        "device list"),
    "device-decommissions-bad-state": (
        "device decommissions --state gone --home {home}", "unknown decommission state",
        "one of: pending, verified, unverified"),
}  # fmt: skip


def _command_of(case_id: str) -> str:
    words = [w for w in CASES[case_id][0].split() if not w.startswith("-")][:3]
    leaves = _leaf_commands()
    return next((" ".join(words[:n]) for n in (3, 2) if " ".join(words[:n]) in leaves), words[0])


def test_every_command_has_bad_input_cases() -> None:
    covered = {_command_of(case_id) for case_id in CASES}
    missing = _leaf_commands() - covered
    assert not missing, f"commands without a bad-input case: {sorted(missing)}"


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one ``error: … Hint: …`` line of a failed command (asserts there is nothing else)."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


@pytest.mark.parametrize("case_id", list(CASES), ids=list(CASES))
def test_bad_input_is_one_line_with_the_right_hint(work: Work, case_id: str) -> None:
    command, want_message, want_hint = CASES[case_id]
    line = one_error_line(run_cli(*_argv(command, work)))
    message, _, hint = line.partition(" Hint: ")
    assert hint, f"no hint in: {line}"
    assert want_message in message, line
    assert want_hint in hint, line


OK_SPELLINGS = {
    "json-true": ["--json", "true"],
    "json-equals-true": ["--json=true"],
    "json-yes": ["--json", "yes"],
    "json-false": ["--json", "false"],
    "json-equals-0": ["--json=0"],
}


@pytest.mark.parametrize("flag", list(OK_SPELLINGS.values()), ids=list(OK_SPELLINGS))
def test_json_takes_true_or_false(work: Work, flag: list[str]) -> None:
    result = run_cli("release", "list", "--home", work.home, *flag)
    assert result.returncode == 0, result.stderr
    wants_json = flag[-1].rpartition("=")[2] in {"true", "yes"}
    assert result.stdout.lstrip().startswith("{") == wants_json, result.stdout


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"trustfleet {__version__}"


RST_MARKUP = ("``", ":func:", ":class:", ":mod:", ":meth:", ":data:", ":attr:")


# Every command's --help, rendered by the CLI's own app in one fresh interpreter (one process
# for the ~100 pages instead of one each: the same text, a 20th of the time).
_HELP_PAGES = r"""
import contextlib, io, json, sys, typer
from trustfleet.cli._argv import walk_commands
from trustfleet.cli.main import app, main

pages = []
for path, _command in walk_commands(typer.main.get_command(app)):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*path, "--help"])  # the console script's own entry: tidied help texts
    pages.append({"path": list(path), "exit": code, "text": out.getvalue()})
json.dump(pages, sys.__stdout__)
"""


def test_help_has_no_rst_markup() -> None:
    done = subprocess.run(
        [str(TRUSTFLEET.parent / "python"), "-c", _HELP_PAGES],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "COLUMNS": "100"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    pages = json.loads(done.stdout)
    walked = [list(path) for path, _ in walk_commands(typer.main.get_command(app))]
    assert [p["path"] for p in pages] == walked
    assert len(walked) > 50  # every command group and command
    for page in pages:
        assert page["exit"] == 0, page
        assert "Usage:" in page["text"], page
        for markup in RST_MARKUP:
            assert markup not in page["text"], (page["path"], markup)


# -- interrupts (Ctrl-C is SIGINT to the foreground process group) ----------------------------


@dataclass
class Started:
    process: subprocess.Popen[str]

    def interrupt(self) -> tuple[int, str, str]:
        os.killpg(self.process.pid, signal.SIGINT)
        out, err = self.process.communicate(timeout=INTERRUPT_TIMEOUT_S)
        return self.process.returncode, out, err


def _as_from_a_terminal() -> None:
    """Ctrl-C as a shell would deliver it: a worker that ran other tests (a browser, a server
    in-process) may have left SIGINT ignored or blocked, which a child would inherit."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


@pytest.fixture
def start() -> Iterator[Callable[..., Started]]:
    started: list[subprocess.Popen[str]] = []

    def launch(*args: str | os.PathLike[str]) -> Started:
        process = subprocess.Popen(
            [str(TRUSTFLEET), *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            preexec_fn=_as_from_a_terminal,  # noqa: PLW1509 - only resets signals, no locks
        )
        started.append(process)
        return Started(process)

    yield launch
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=INTERRUPT_TIMEOUT_S)


def _wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _interrupted_line(code: int, out: str, err: str) -> str:
    assert code == 130, err
    assert "Traceback" not in out + err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "interrupted (Ctrl-C)" in lines[0]
    return lines[0]


def test_ctrl_c_stops_agent_run_saying_what_it_did(
    server: RunningServer, tmp_path: Path, start: Callable[..., Started]
) -> None:
    made = server.cli_json("factory", "provision", "--out", tmp_path / "d", "--count", "1")
    device = Path(made["devices"][0]["directory"])
    agent = start("agent", "run", "--device", device)
    _wait_for((device / "ldevid.pem").exists, "the agent to enroll")
    line = _interrupted_line(*agent.interrupt())
    assert "stopped cleanly" in line
    assert "message(s) published" in line


def test_ctrl_c_stops_factory_provision_saying_how_many_were_made(
    server: RunningServer, tmp_path: Path, start: Callable[..., Started]
) -> None:
    out = tmp_path / "many"
    provision = start("factory", "provision", "--home", server.home, "--out", out, "--count", "500")
    _wait_for(lambda: out.is_dir() and any(out.iterdir()), "the first device folder")
    line = _interrupted_line(*provision.interrupt())
    assert "of 500 device(s) were provisioned and registered" in line
    made = int(line.split("interrupted (Ctrl-C): ")[1].split(" of ")[0])
    folders = [p for p in out.iterdir() if (p / "idevid.pem").exists()]
    assert len(folders) == made  # what the line says is what is on disk


def test_ctrl_c_stops_the_demo_and_cleans_up(tmp_path: Path, start: Callable[..., Started]) -> None:
    workdir = tmp_path / "demo"
    demo = start("demo", "--workdir", workdir, "--devices", "4")
    _wait_for((workdir / "server" / "trustfleet.toml").exists, "the demo's home")
    line = _interrupted_line(*demo.interrupt())
    assert "demo stopped during stage" in line
    assert "service, witness and agents were stopped" in line


def test_ctrl_c_stops_server_init_and_removes_the_partial_home(
    tmp_path: Path, start: Callable[..., Started]
) -> None:
    home = tmp_path / "home"
    init = start("server", "init", "--home", home, "--api-port", str(free_port()))
    _wait_for(home.exists, "the home to be started")
    code, out, err = init.interrupt()
    if code == 0:
        pytest.skip("server init finished before Ctrl-C reached it")  # a fast machine
    line = _interrupted_line(code, out, err)
    assert "partly made home" in line
    assert not home.exists() or not any(home.iterdir())
