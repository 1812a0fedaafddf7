"""Alembic environment: runs on the connection smsrelay hands over (see migrate.py)."""

from __future__ import annotations

from alembic import context

from smsrelay.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `smsrelay migrate`, which supplies the connection")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
