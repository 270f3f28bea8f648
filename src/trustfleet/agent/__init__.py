"""The device agent: identity (EST enrollment) and the MQTT link; updater and attester later.

Entry point: :func:`trustfleet.agent.runner.run_agent` (``trustfleet agent run``).
"""

__all__: list[str] = []
