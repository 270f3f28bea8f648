"""keystore package."""
