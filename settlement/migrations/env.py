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


def run_migrations_offline() -> None:
    """``referral db upgrade --sql``: the SQL for a DBA to review, no connection made.

    The dialect comes from the URL (``settlement.db.offline_sql`` sets it); the
    migrations that ask ``op.get_bind()`` for its dialect get alembic's mock one.
    """
    url = config.get_main_option("sqlalchemy.url") or "sqlite:///referral.db"
    context.configure(url=url, target_metadata=metadata, literal_binds=True,
                      dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations()
