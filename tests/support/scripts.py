"""A Python script run in a child of its own, for test set-up that needs a fresh process.

SoftHSM2 takes one configuration per process, so what signs with a home's tokens (issuing
identities, publishing releases) runs as a child: the script gets its arguments as one JSON
document in ``argv[1]``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

__all__ = ["run_script"]

SCRIPT_TIMEOUT_S = 120.0


def run_script(script: str, args: Mapping[str, Any], *, timeout_s: float = SCRIPT_TIMEOUT_S) -> str:
    """Run ``script`` with ``args``; its standard output.

    Raises:
        AssertionError: The child failed (the message ends with its standard error).
    """
    result = subprocess.run(
        [sys.executable, "-c", script, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout
