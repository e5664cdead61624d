"""Transactions as psycopg 3, psycopg2 and SQLAlchemy 2 (over both) use them; run by
tests/it/clients.rs with the server's port. Asserts as it goes, prints `ok` at the end.

What is checked: writes in a block are invisible to others until COMMIT, then all there (across
streams); ROLLBACK, a failed block and a disconnect keep none of them; savepoints undo only
what came after them (psycopg's nested `transaction()`, SQLAlchemy's `begin_nested()`); the
status each client sees (idle / in transaction / in error) after every step; DDL in a block,
writes in a READ ONLY block and unknown savepoints fail with PostgreSQL's SQLSTATEs.
"""

import sys

import psycopg
import psycopg2
from psycopg import errors
from psycopg.pq import TransactionStatus as TS
from sqlalchemy import create_engine, text

port = int(sys.argv[1])
dsn = f"host=127.0.0.1 port={port} user=eddy dbname=eddy"

admin = psycopg.connect(dsn, autocommit=True)
admin.execute("CREATE STREAM orders (id BIGINT KEY, item VARCHAR) WITH (partitions = 3)")
admin.execute("CREATE STREAM audit (id BIGINT, note VARCHAR)")
admin.execute("CREATE TABLE stock (item VARCHAR PRIMARY KEY, n BIGINT)")


def count(stream):
    return admin.execute(f"SELECT count(*) FROM {stream}").fetchone()[0]


# psycopg 3, the default (non-autocommit) connection: BEGIN is implicit.
conn = psycopg.connect(dsn)
assert conn.info.transaction_status == TS.IDLE
conn.execute("INSERT INTO orders VALUES (1, 'apple'), (2, 'pear'), (3, 'fig')")
assert conn.info.transaction_status == TS.INTRANS, conn.info.transaction_status
conn.execute("INSERT INTO audit VALUES (%s, %s)", (1, "three orders"))
with conn.cursor() as cur:
    with cur.copy("COPY orders FROM STDIN") as copy:
        for k in range(100, 110):
            copy.write_row((k, f"item-{k}"))
conn.execute("INSERT INTO stock VALUES ('apple', 5)")
assert (count("orders"), count("audit"), count("stock")) == (0, 0, 0), "nothing before COMMIT"
conn.commit()
assert conn.info.transaction_status == TS.IDLE
assert (count("orders"), count("audit")) == (13, 1), (count("orders"), count("audit"))
assert admin.execute("SELECT n FROM stock WHERE item = 'apple'").fetchone() == (5,)

# ROLLBACK keeps nothing, across streams and COPY.
conn.execute("INSERT INTO orders VALUES (4, 'plum')")
conn.execute("INSERT INTO audit VALUES (2, 'plum')")
conn.rollback()
assert (count("orders"), count("audit")) == (13, 1)

# An error fails the block: the next statement is refused (25P02) until ROLLBACK.
conn.execute("INSERT INTO orders VALUES (5, 'kiwi')")
try:
    conn.execute("SELECT 1 / 0")
    raise AssertionError("division by zero succeeded")
except errors.DivisionByZero:
    pass
assert conn.info.transaction_status == TS.INERROR, conn.info.transaction_status
try:
    conn.execute("SELECT 1")
    raise AssertionError("a statement ran in a failed block")
except errors.InFailedSqlTransaction:
    pass
conn.rollback()
assert conn.info.transaction_status == TS.IDLE
assert count("orders") == 13, "the failed block kept nothing"

# Nested transaction(): SAVEPOINT "_pg3_n"; an exception inside rolls back to it only.
with conn.transaction():
    conn.execute("INSERT INTO orders VALUES (6, 'lime')")
    try:
        with conn.transaction():
            conn.execute("INSERT INTO orders VALUES (7, 'date')")
            conn.execute("INSERT INTO orders VALUES ('not a number', 'x')")
    except errors.InvalidTextRepresentation:
        pass
    assert conn.info.transaction_status == TS.INTRANS, conn.info.transaction_status
    with conn.transaction():
        conn.execute("INSERT INTO audit VALUES (3, 'lime kept')")
    conn.execute("INSERT INTO orders VALUES (8, 'yuzu')")
assert conn.info.transaction_status == TS.IDLE
ids = [r[0] for r in admin.execute("SELECT id FROM orders WHERE id BETWEEN 4 AND 9 ORDER BY id")]
assert ids == [6, 8], ids
assert count("audit") == 2

# SQL savepoints by hand, and SET undone by ROLLBACK TO.
conn.autocommit = True
conn.execute("BEGIN")
conn.execute("SET application_name = 'before'")
conn.execute("SAVEPOINT a")
conn.execute("INSERT INTO orders VALUES (9, 'x')")
conn.execute("SET application_name = 'after'")
conn.execute("ROLLBACK TO SAVEPOINT a")
assert conn.execute("SHOW application_name").fetchone() == ("before",)
conn.execute("SAVEPOINT a")  # the same name twice: the latest wins
conn.execute("INSERT INTO orders VALUES (10, 'y')")
conn.execute("RELEASE a")
conn.execute("ROLLBACK TO a")  # the earlier `a` is still there
for bad, error in [
    ("RELEASE nowhere", errors.InvalidSavepointSpecification),
    ("CREATE STREAM inside (v INT)", errors.ActiveSqlTransaction),
    ("BEGIN ISOLATION LEVEL SERIALIZABLE", errors.FeatureNotSupported),
]:
    try:
        conn.execute(bad)
        raise AssertionError(f"{bad} succeeded")
    except error:
        pass
    assert conn.info.transaction_status == TS.INERROR
    conn.execute("ROLLBACK TO a")
    assert conn.info.transaction_status == TS.INTRANS
conn.execute("COMMIT")
assert conn.execute("SHOW application_name").fetchone() == ("before",)
assert admin.execute("SELECT count(*) FROM orders WHERE id IN (9, 10)").fetchone() == (0,)
try:
    conn.execute("SAVEPOINT outside")
    raise AssertionError("SAVEPOINT outside a block succeeded")
except errors.NoActiveSqlTransaction:
    pass
conn.execute("BEGIN READ ONLY")
try:
    conn.execute("INSERT INTO audit VALUES (9, 'read only')")
    raise AssertionError("a write in a READ ONLY block succeeded")
except errors.ReadOnlySqlTransaction:
    pass
conn.execute("ROLLBACK")

# A disconnect in the middle of a block keeps nothing.
gone = psycopg.connect(dsn)
gone.execute("INSERT INTO orders VALUES (11, 'lost')")
gone.close()
assert admin.execute("SELECT count(*) FROM orders WHERE id = 11").fetchone() == (0,)
conn.close()

# psycopg2's default mode: BEGIN before the first statement, commit() / rollback().
pg2 = psycopg2.connect(host="127.0.0.1", port=port, user="eddy", dbname="eddy")
cur = pg2.cursor()
cur.execute("INSERT INTO audit VALUES (%s, %s)", (20, "psycopg2"))
assert pg2.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_INTRANS
pg2.rollback()
cur.execute("INSERT INTO audit VALUES (%s, %s)", (21, "psycopg2"))
pg2.commit()
cur.execute("SELECT id FROM audit WHERE id >= 20")
assert cur.fetchall() == [(21,)]
pg2.commit()
pg2.close()

# SQLAlchemy 2 over psycopg 3 and over psycopg2: begin(), begin_nested(), rollback().
for url in [
    f"postgresql+psycopg://eddy@127.0.0.1:{port}/eddy",
    f"postgresql+psycopg2://eddy@127.0.0.1:{port}/eddy",
]:
    engine = create_engine(url)
    first = 1000 if "psycopg2" not in url else 2000
    with engine.begin() as c:
        c.execute(text("INSERT INTO audit VALUES (:id, :note)"), {"id": first, "note": "kept"})
        nested = c.begin_nested()
        c.execute(text("INSERT INTO audit VALUES (:id, :note)"), {"id": first + 1, "note": "undone"})
        nested.rollback()
        with c.begin_nested():
            c.execute(text("INSERT INTO audit VALUES (:id, :note)"), {"id": first + 2, "note": "kept"})
    with engine.connect() as c:
        c.execute(text("INSERT INTO audit VALUES (:id, :note)"), {"id": first + 3, "note": "rolled back"})
        c.rollback()
        got = c.execute(
            text("SELECT id FROM audit WHERE id BETWEEN :a AND :b ORDER BY id"),
            {"a": first, "b": first + 9},
        ).all()
        assert [r[0] for r in got] == [first, first + 2], (url, got)
    engine.dispose()

print("ok")
