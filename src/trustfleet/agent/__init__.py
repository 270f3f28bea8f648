"""The device agent: identity (EST enrollment) today; link, updater and attester later."""

__all__: list[str] = []
