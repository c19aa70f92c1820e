"""Alembic environment for the watchkeeper store.

Normally run by `watchkeeper.store` (open_store), which passes an open connection in
`config.attributes["connection"]` and wraps the upgrade in its own transaction and lock. The
version table is `watchkeeper_alembic_version`, never Alembic's default, so the store can share a
database with Airflow's metadata (which has its own `alembic_version`).

Alembic's own CLI also works (for authoring a revision or inspecting history) with an ini file
whose `script_location` is this folder: it connects to `sqlalchemy.url`, or to the store's
configured URL (WATCHKEEPER_DB_URL / WATCHKEEPER_HOME) when that is unset.
"""

from __future__ import annotations

from alembic import context

DEFAULT_VERSION_TABLE = "watchkeeper_alembic_version"


def run_migrations(config) -> None:
    # The store's Table definitions, so `alembic revision --autogenerate` can draft the next
    # revision from a change to them.
    from watchkeeper.store import metadata, resolve_url

    version_table = config.attributes.get("version_table", DEFAULT_VERSION_TABLE)
    options = {"version_table": version_table, "target_metadata": metadata}
    connection = config.attributes.get("connection")
    if connection is None:
        # Alembic's own CLI: connect to sqlalchemy.url, or to the store's configured URL.
        from sqlalchemy import create_engine

        url = config.get_main_option("sqlalchemy.url") or resolve_url()
        with create_engine(url).connect() as conn:
            context.configure(connection=conn, **options)
            with context.begin_transaction():
                context.run_migrations()
            conn.commit()
        return
    context.configure(connection=connection, **options)
    # Inside the caller's transaction this is a no-op context; the caller commits.
    with context.begin_transaction():
        context.run_migrations()


# Airflow's plugin manager imports every .py file under plugins/ as a module. Outside an Alembic
# run `context.config` does not exist; do nothing then instead of crashing the scheduler.
_config = getattr(context, "config", None)
if _config is not None:
    run_migrations(_config)
