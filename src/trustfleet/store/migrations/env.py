"""Alembic environment of TrustFleet's store.

Run only through :func:`trustfleet.store.migrate` (or with a connection placed in
``config.attributes["connection"]``): there is no ini file and no offline mode.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from trustfleet.errors import Config
from trustfleet.store._models import Base


def _run() -> None:
    if context.is_offline_mode():
        raise Config("offline migrations are not supported", hint="use trustfleet.store.migrate")
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise Config(
            "no database connection given to the migration environment",
            hint="use trustfleet.store.migrate(engine)",
        )
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


_run()
