"""Alembic environment: migrations run on the connection (and transaction) cxr.worklist.migrate
hands over in config.attributes["connection"]; there is no alembic.ini and no offline mode."""
from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
