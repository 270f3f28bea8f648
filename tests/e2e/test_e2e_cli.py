"""The CLI flows end to end: init, provision, list, show, revoke, and how bad input fails."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from support.server import RunningServer, free_port, init_home, make_key, new_device_id, run_cli

pytestmark = pytest.mark.e2e


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_init_twice_refuses_with_a_hint(tmp_path: Path) -> None:
    home = tmp_path / "home"
    init_home(home, port=free_port())
    line = _one_error_line(run_cli("server", "init", "--home", home))
    assert "Hint" in line


def test_provision_list_show(server: RunningServer, tmp_path: Path) -> None:
    made = server.cli_json("factory", "provision", "--out", tmp_path / "devs", "--count", "3")
    ids = {d["device_id"] for d in made["devices"]}
    assert len(ids) == 3
    listed = server.cli_json("device", "list")["devices"]
    assert {d["id"]: d["state"] for d in listed if d["id"] in ids} == dict.fromkeys(
        ids, "manufactured"
    )
    shown = server.cli_json("device", "show", sorted(ids)[0])
    assert shown["state"] == "manufactured"


def _sign_csr_with(content: Callable[[Path], bytes]) -> Callable[[RunningServer, Path], list[str]]:
    def args(server: RunningServer, tmp: Path) -> list[str]:
        csr = tmp / "in.csr"
        csr.write_bytes(content(tmp))
        return ["factory", "sign-csr", "--home", str(server.home), "--csr", str(csr),
                "--out", str(tmp / "out.pem")]  # fmt: skip

    return args


def _bad_cn_csr(tmp: Path) -> bytes:
    key = make_key(tmp / "k.pem")
    return subprocess.run(
        ["openssl", "req", "-new", "-key", str(key), "-subj", "/CN=BAD_ID"],
        capture_output=True,
        check=True,
    ).stdout


BAD_INPUTS: dict[str, tuple[Callable[[RunningServer, Path], list[str]], str]] = {
    "missing-home": (lambda s, t: ["device", "list", "--home", str(t / "nohome")], "Hint"),
    "sign-csr-not-a-csr": (_sign_csr_with(lambda t: b"not a csr\n"), "CSR"),
    "sign-csr-bad-device-id": (_sign_csr_with(_bad_cn_csr), "device id"),
    "revoke-unknown-device": (
        lambda s, t: ["device", "revoke", "no-such-device", "--reason", "keyCompromise",
                      "--home", str(s.home)],
        "not found",
    ),
    "revoke-bad-reason": (
        lambda s, t: ["device", "revoke", "no-such-device", "--reason", "because",
                      "--home", str(s.home)],
        "keyCompromise",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_INPUTS.values()), ids=list(BAD_INPUTS))
def test_bad_input_fails_with_one_readable_line(
    server: RunningServer, tmp_path: Path, case: tuple[Callable[..., list[str]], str]
) -> None:
    make_args, expected = case
    line = _one_error_line(run_cli(*make_args(server, tmp_path)))
    assert expected in line


def test_provision_count_zero_is_refused(server: RunningServer, tmp_path: Path) -> None:
    # Rejected by the option parser (a usage box on stderr), before the service is reached.
    result = server.cli("factory", "provision", "--out", tmp_path / "d", "--count", "0")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "--count" in result.stderr
    assert not (tmp_path / "d").exists() or not any((tmp_path / "d").iterdir())


def test_world_readable_pin_file_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    init_home(home, port=free_port())
    pin = home / "secrets" / "tf-factory.pin"
    pin.chmod(0o644)
    result = run_cli(
        "factory", "provision", "--home", home, "--out", tmp_path / "d", "--count", "1"
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "chmod" in errors[0]


def test_no_pin_in_outputs_config_or_process_list(server: RunningServer, tmp_path: Path) -> None:
    pins = [p.read_text().strip() for p in (server.home / "secrets").glob("*.pin")]
    assert pins and all(len(p) >= 8 for p in pins)
    device_id = new_device_id("pin")
    outputs = [
        server.cli("factory", "provision", "--out", tmp_path / "d", "--count", "1", "--json"),
        server.cli("device", "list", "--json"),
        server.cli("device", "list"),
    ]
    shown = server.cli_json("device", "list")["devices"][0]["id"]
    outputs += [
        server.cli("device", "show", shown, "--json"),
        server.cli("device", "revoke", shown, "--reason", "superseded", "--json"),
        server.cli("device", "revoke", device_id, "--reason", "superseded"),
    ]
    texts = [o.stdout + o.stderr for o in outputs]
    texts.append((server.home / "trustfleet.toml").read_text())
    texts.append(server.log.read_text())
    pids = server.server_pids()
    assert pids
    for pid in pids:
        try:
            texts.append(Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"))
            texts.append(Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace"))
        except (FileNotFoundError, ProcessLookupError):
            continue
    device_pins = [p.read_text().strip() for p in (tmp_path / "d").glob("*/secrets/*pin")]
    for secret in pins + device_pins:
        assert not any(secret in text for text in texts)
