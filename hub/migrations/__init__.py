"""Alembic migrations for the hub's schema; ``hub.db.migrate`` upgrades a database to head.

New revision (developers): ``alembic -c hub/migrations/alembic.ini revision --autogenerate -m
"what changed"``, then tidy the file (plain ``sa.String``, explicit names).
"""
