"""SQLAlchemy 2 reflecting Eddy's streams and tables, its ORM reading a stream through a mapped
class, and pandas reading and appending through it, over
the driver named by the second argument (`psycopg2`, the default, or `psycopg` for psycopg 3,
which binds parameters on the server); run by tests/it/clients.rs with the server's port.
Asserts as it goes and prints `ok` at the end; a missing SQLAlchemy or driver is an error
(exit 1), never a skip.

"""

import decimal
import sys

import pandas
import psycopg2
from sqlalchemy import MetaData, Table, create_engine, inspect, select
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.types import BIGINT, INTEGER, NUMERIC, TIMESTAMP, VARCHAR

port = int(sys.argv[1])
raw = psycopg2.connect(host="127.0.0.1", port=port, user="eddy", dbname="eddy")
raw.autocommit = True
with raw.cursor() as cur:
    cur.execute(
        "CREATE STREAM clicks (user_id VARCHAR KEY, n INT, amount DECIMAL(10,2), at TIMESTAMP) "
        "WITH (partitions = 2, timestamp = 'at')"
    )
    cur.execute("CREATE TABLE users (id VARCHAR PRIMARY KEY, name VARCHAR)")
    cur.execute("INSERT INTO clicks VALUES ('alice', 1, 2.50, '2026-01-01 00:00:00')")
raw.close()

# The engine's first connect runs the dialect's probes (hstore's `pg_type` lookup, ...).
driver = sys.argv[2] if len(sys.argv) > 2 else "psycopg2"
engine = create_engine(f"postgresql+{driver}://eddy@127.0.0.1:{port}/eddy")
insp = inspect(engine)

assert insp.get_schema_names() == ["information_schema", "public"], insp.get_schema_names()
assert insp.get_table_names() == ["clicks", "users"], insp.get_table_names()
assert insp.get_view_names() == [], insp.get_view_names()
assert insp.has_table("clicks") and not insp.has_table("nope")

cols = insp.get_columns("clicks")
names = [c["name"] for c in cols]
assert names == ["user_id", "n", "amount", "at", "rowtime", "rowpartition", "rowoffset"], names
types = {c["name"]: c["type"] for c in cols}
assert isinstance(types["user_id"], VARCHAR), types
assert isinstance(types["n"], INTEGER), types
assert isinstance(types["amount"], NUMERIC) and types["amount"].precision == 10, types
assert types["amount"].scale == 2, types
assert isinstance(types["at"], TIMESTAMP), types
assert isinstance(types["rowoffset"], BIGINT), types
nullable = {c["name"]: c["nullable"] for c in cols}
assert nullable["n"] and not nullable["rowoffset"], nullable
comments = {c["name"]: c["comment"] for c in cols}
assert comments["user_id"].startswith("KEY"), comments
assert comments["rowpartition"] == "pseudo-column: the row's partition", comments

# A table's key is its primary key; a stream's KEY is no constraint (many rows per key) but
# an index.
pk = insp.get_pk_constraint("users")
assert pk["constrained_columns"] == ["id"] and pk["name"] == "users_pkey", pk
assert insp.get_pk_constraint("clicks")["constrained_columns"] == []
indexes = insp.get_indexes("clicks")
assert [(i["name"], i["column_names"], i["unique"]) for i in indexes] == [
    ("clicks_key", ["user_id"], False)
], indexes
assert insp.get_foreign_keys("users") == []
assert insp.get_table_comment("clicks")["text"] == "stream, 2 partitions, KEY user_id"

# Whole-table reflection, then a Core select through the reflected table.
meta = MetaData()
meta.reflect(engine)
assert sorted(meta.tables) == ["clicks", "users"], sorted(meta.tables)
assert [c.name for c in meta.tables["users"].primary_key] == ["id"]
clicks = Table("clicks", MetaData(), autoload_with=engine)
with engine.connect() as conn:
    rows = conn.execute(select(clicks.c.user_id, clicks.c.n, clicks.c.rowpartition)).all()
assert [(r[0], r[1]) for r in rows] == [("alice", 1)], rows

# The ORM reads a stream through a mapped class. A stream has no primary key; a row is named
# by its partition and offset, which the mapping says.
class Base(DeclarativeBase):
    pass


class Click(Base):
    __table__ = Table("clicks", Base.metadata, autoload_with=engine)
    __mapper_args__ = {
        "primary_key": [__table__.c.rowpartition, __table__.c.rowoffset],
    }


with Session(engine) as session:
    got = session.scalars(select(Click).where(Click.n >= 1).order_by(Click.n)).all()
    assert [(c.user_id, c.n, c.amount) for c in got] == [
        ("alice", 1, decimal.Decimal("2.50"))
    ], got
    assert session.get(Click, (got[0].rowpartition, got[0].rowoffset)).user_id == "alice"

# pandas reflects the table, then selects it.
frame = pandas.read_sql_table("clicks", engine)
assert list(frame.columns) == names, list(frame.columns)
assert frame["user_id"].tolist() == ["alice"] and frame["n"].tolist() == [1], frame
frame = pandas.read_sql("SELECT user_id, n FROM clicks", engine)
assert frame.to_dict("records") == [{"user_id": "alice", "n": 1}], frame

# pandas appends through SQLAlchemy: it reflects the table, then inserts the frame's rows with
# executemany inside one transaction.
more = pandas.DataFrame(
    {
        "user_id": ["bob", "carol"],
        "n": [2, 3],
        "amount": [decimal.Decimal("1.25"), decimal.Decimal("7.00")],
        "at": [pandas.Timestamp("2026-01-02 00:00:00"), pandas.Timestamp("2026-01-03 12:30:00")],
    }
)
# The count is the driver's executemany rowcount: psycopg 3 reports -1 for it.
written = more.to_sql("clicks", engine, if_exists="append", index=False)
assert written == (2 if driver == "psycopg2" else -1), written
frame = pandas.read_sql("SELECT user_id, n, amount FROM clicks ORDER BY n", engine)
assert frame["user_id"].tolist() == ["alice", "bob", "carol"], frame
assert frame["amount"].tolist() == [2.5, 1.25, 7.0], frame  # read_sql coerces to float

# Core insert through the reflected table, in a transaction.
with engine.begin() as conn:
    conn.execute(clicks.insert().values(user_id="dave", n=0, amount=decimal.Decimal("0.10")))
with engine.connect() as conn:
    got = conn.execute(select(clicks.c.amount).where(clicks.c.user_id == "dave")).scalar_one()
assert got == decimal.Decimal("0.10"), got

print("ok")
