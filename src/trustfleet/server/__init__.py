"""The server process: HTTPS workers, the broker side, attestation and their supervision.

What other packages use from the private modules is exported here.
"""

from trustfleet.server._attest_side import publish_challenge

__all__ = ["publish_challenge"]
