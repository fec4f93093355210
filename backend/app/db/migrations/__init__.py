"""Alembic environment and revisions of the service database (run with ``pmtl db upgrade``)."""
