"""Database faults for tests, made inside the real PostgreSQL: a trigger that fails chosen writes.

`connection_lost` raises SQLSTATE 08006 (connection_failure), which the driver reports exactly as
it reports a dropped or refused connection (OperationalError): the process under test sees its
database go away at that precise write, and come back when the fault is lifted. `bug` raises an
ordinary error (P0001), which no code treats as transient. `times` limits the fault to the first
N writes it matches (a sequence counts them, outside any transaction, so rollbacks do not undo
the count)."""
import uuid
from contextlib import contextmanager

from django.db import connections

CONNECTION_LOST = "08006"
BUG = "P0001"


@contextmanager
def failing_writes(database, table, *, when="TRUE", times=None, sqlstate=CONNECTION_LOST,
                   events="INSERT OR UPDATE"):
    name = f"test_fault_{uuid.uuid4().hex[:10]}"
    condition = f"nextval('{name}_seq') <= {int(times)}" if times is not None else "TRUE"
    with connections[database].cursor() as cursor:
        cursor.execute(f"CREATE SEQUENCE {name}_seq")
        cursor.execute(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF {condition} THEN RAISE EXCEPTION 'test fault on {table}' USING ERRCODE = '{sqlstate}'; END IF; "
            f"RETURN NEW; END $$"
        )
        cursor.execute(f"CREATE TRIGGER {name} BEFORE {events} ON {table} FOR EACH ROW WHEN ({when}) "
                       f"EXECUTE FUNCTION {name}()")
    try:
        yield name
    finally:
        lift(database, table, name)


def lift(database, table, name):
    with connections[database].cursor() as cursor:
        cursor.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        cursor.execute(f"DROP FUNCTION IF EXISTS {name}()")
        cursor.execute(f"DROP SEQUENCE IF EXISTS {name}_seq")
