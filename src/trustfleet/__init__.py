"""TrustFleet: identity, communication, update, integrity and monitoring for IoT fleets."""

__all__ = ["__version__"]

__version__ = "0.1.0"
