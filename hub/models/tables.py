"""Core access to the models' tables: ``table(Model)``, the one way the hub reaches a table.

SQLModel sets ``Model.__table__`` only when the class is built, so type checkers do not see it;
``table`` returns it typed as a SQLAlchemy ``Table`` for Core statements
(``select(t.c.id).where(...)``, ``insert(t)``).
"""

from __future__ import annotations

from sqlalchemy import Table, inspect
from sqlmodel import SQLModel


def table(model: type[SQLModel]) -> Table:
    """The Core ``Table`` of the table model ``model``."""
    found = inspect(model).local_table
    if not isinstance(found, Table):
        raise TypeError(f"{model.__name__} is not a table model")
    return found
