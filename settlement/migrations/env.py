"""Alembic environment: runs on the connection handed over by ``settlement.db.upgrade``.

Used from the `alembic` command line too (``alembic -c settlement/alembic.ini``),
with the URL from ``REFERRAL_DB_URL`` or ``sqlalchemy.url``.
"""

from __future__ import annotations

import os

from alembic import context

from settlement.tables import metadata

config = context.config


def run_migrations() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=metadata)
        with context.begin_transaction():
            context.run_migrations()
        return
    from settlement.db import open_engine

    url = os.environ.get("REFERRAL_DB_URL") or config.get_main_option("sqlalchemy.url")
    engine = open_engine(url or "sqlite:///referral.db")
    try:
        with engine.begin() as conn:
            context.configure(connection=conn, target_metadata=metadata)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run `referral db upgrade`")
run_migrations()
