"""The device's updater (docs/ota.md, "Device side"): TUF-verified downloads into the A/B slots.

``tufclient`` (python-tuf's ngclient behind TrustFleet's errors and bounds), ``fetcher`` (mutual
TLS to the repository), ``engine`` (the update state machine) and ``worker`` (the engine on its
own thread inside the agent, reporting through the outbox).
"""
