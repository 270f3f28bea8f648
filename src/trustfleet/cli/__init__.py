"""Command-line entry points, one module per command group."""

__all__: list[str] = []
