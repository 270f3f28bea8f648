"""The server's use cases: each public module is one service the CLI and the server call.

What other packages use from the private modules is exported here.
"""

from trustfleet.services._attestation_policy import next_due

__all__ = ["next_due"]
