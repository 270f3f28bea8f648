"""Isolation with the agent's own connection: a device whose key is in its token (awscrt,
PKCS#11, TLS 1.3 — exactly as the agent connects) cannot read or write another device's
topics, nor `#`, nor `$SYS`; its own namespace works. The mosquitto-client version of this
table is tests/integration/broker/test_broker_access.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from agentfleet import Fleet
from agentkit import Observer, publish

from support.server import run_cli

HERE = Path(__file__).resolve().parent


def test_device_with_token_key_is_confined_to_its_namespace(fleet: Fleet) -> None:
    a, b = fleet.device(), fleet.device()
    for device in (a, b):  # enroll both (and publish once)
        result = run_cli("agent", "run", "--device", device, "--once")
        assert result.returncode == 0, result.stderr
    observer = Observer(
        port=fleet.broker_port, ca=fleet.ca_bundle, cert=fleet.service.cert,
        key=fleet.service.key, topics=[f"tf/v1/d/{a.name}/#", f"tf/v1/d/{b.name}/#"],
    )  # fmt: skip
    rogue = subprocess.Popen(
        [sys.executable, str(HERE / "rogue_device.py"), str(a), b.name],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert rogue.stdout is not None and rogue.stdin is not None
        ready = json.loads(rogue.stdout.readline() or "{}")
        assert ready.get("ready"), rogue.stderr.read() if rogue.stderr else ready
        # B talks, and the service sends A a command: A may see only the latter.
        result = run_cli("agent", "run", "--device", b, "--once")
        assert result.returncode == 0, result.stderr
        cmd = json.dumps({"id": "c1", "name": "ping", "args": {}})
        publish(
            port=fleet.broker_port, ca=fleet.ca_bundle, cert=fleet.service.cert,
            key=fleet.service.key, topic=f"tf/v1/d/{a.name}/cmd", payload=cmd,
        )  # fmt: skip
        # The service saw A's own telemetry and B's (positive controls) before we stop.
        assert observer.wait_for(
            lambda m: any(t == f"tf/v1/d/{a.name}/telemetry" and p.get("marker") == "own"
                          for t, p in m)
            and any(t == f"tf/v1/d/{b.name}/telemetry" for t, p in m)
        ), "".join(observer.raw)  # fmt: skip
        out, err = rogue.communicate("stop\n", timeout=60)
    finally:
        if rogue.poll() is None:
            rogue.kill()
        observer.close()
    received = json.loads(out.strip().splitlines()[-1])["received"]
    assert f"tf/v1/d/{a.name}/cmd" in received, (received, err)  # its own namespace works
    assert not [t for t in received if not t.startswith(f"tf/v1/d/{a.name}/")], received
    forged = [
        t for t, p in observer.messages if t == f"tf/v1/d/{b.name}/cmd" and p.get("name") == "ping"
    ]
    assert forged == [], "A's publish to B's cmd topic must not reach anyone"
