"""Every column type Eddy has, written and read back by psycopg 3 (parameters and results in
text and in binary format, `%s` and `%b`) and by psycopg2 (client-side literals, text
results), checking each value, its Python type and the PostgreSQL type OID the server
announces; then the errors a declared type raises (VARCHAR(n) too long: 22001, bad JSON or
UUID: 22P02) through INSERT and COPY. Run by tests/it/clients.rs with the server's port;
prints every mismatch and exits 1, or prints `ok` last. A missing driver is an error (exit
1), never a skip.
"""

import datetime
import decimal
import sys
import uuid

import psycopg
import psycopg2
import psycopg2.extras
from psycopg.types.json import Json, Jsonb

port = int(sys.argv[1])
failures = []


def check(label, got, want):
    if got != want or type(got) is not type(want):
        failures.append(f"{label}: got {got!r} ({type(got).__name__}), want {want!r}")


UTC = datetime.timezone.utc
PLUS2 = datetime.timezone(datetime.timedelta(hours=2))

# name, SQL type, PostgreSQL type OID of results, value written, value read back.
COLUMNS = [
    ("b", "BOOLEAN", 16, True, True),
    ("si", "SMALLINT", 21, -32768, -32768),
    ("i", "INT", 23, 2147483647, 2147483647),
    ("bi", "BIGINT", 20, -9223372036854775807, -9223372036854775807),
    ("r", "REAL", 700, 1.5, 1.5),
    ("dp", "DOUBLE PRECISION", 701, 2.5e300, 2.5e300),
    ("n", "NUMERIC(12, 4)", 1700, decimal.Decimal("-12345678.1234"), decimal.Decimal("-12345678.1234")),
    # NUMERIC is DECIMAL(38, 10): 38 digits, more than rust_decimal's 28.
    (
        "big",
        "NUMERIC",
        1700,
        decimal.Decimal("1234567890123456789012345678.0123456789"),
        decimal.Decimal("1234567890123456789012345678.0123456789"),
    ),
    ("vc", "VARCHAR(10)", 1043, "héllo wörl", "héllo wörl"),
    ("c", "CHAR(4)", 1042, "ab", "ab  "),
    ("t", "TEXT", 25, 'tab\tquote" back\\slash', 'tab\tquote" back\\slash'),
    ("raw", "BYTEA", 17, b"\x00\xff\x10", b"\x00\xff\x10"),
    ("d", "DATE", 1082, datetime.date(2024, 2, 29), datetime.date(2024, 2, 29)),
    ("tm", "TIME", 1083, datetime.time(10, 11, 12, 345678), datetime.time(10, 11, 12, 345678)),
    (
        "ts",
        "TIMESTAMP",
        1114,
        datetime.datetime(2024, 3, 1, 12, 34, 56, 123456),
        datetime.datetime(2024, 3, 1, 12, 34, 56, 123456),
    ),
    # A tz-aware value is an instant: it comes back aware, the same instant (in UTC).
    (
        "tz",
        "TIMESTAMPTZ",
        1184,
        datetime.datetime(2024, 3, 1, 12, 0, 0, 654321, tzinfo=PLUS2),
        datetime.datetime(2024, 3, 1, 10, 0, 0, 654321, tzinfo=UTC),
    ),
    ("j", "JSON", 114, {"b": 1, "a": [1, 2.5, None]}, {"b": 1, "a": [1, 2.5, None]}),
    ("jb", "JSONB", 3802, {"k": "v", "n": None}, {"k": "v", "n": None}),
    (
        "u",
        "UUID",
        2950,
        uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
    ),
    ("tags", "ARRAY<VARCHAR>", 1009, ["a", "b c", None, 'q"uote', "{x}"], ["a", "b c", None, 'q"uote', "{x}"]),
    ("ints", "INT[]", 1007, [1, None, -3], [1, None, -3]),
    ("big_ints", "ARRAY<BIGINT>", 1016, [9000000000, 2], [9000000000, 2]),
    ("empty", "TEXT[]", 1009, [], []),
    ("m", "MAP<VARCHAR, INT>", 114, {"x": 1, "y": None}, {"x": 1, "y": None}),
    ("st", "STRUCT<a INT, b VARCHAR>", 114, {"a": 7, "b": "s"}, {"a": 7, "b": "s"}),
]
NAMES = [c[0] for c in COLUMNS]
DDL = ", ".join(f"{name} {sql}" for name, sql, *_ in COLUMNS)


def psycopg3_params():
    """The values as psycopg 3 adapts them (dicts are JSON only when wrapped)."""
    out = []
    for name, _, _, value, _ in COLUMNS:
        if name in ("j", "m", "st"):
            value = Json(value)
        elif name == "jb":
            value = Jsonb(value)
        out.append(value)
    return out


def read_back(label, cur, row):
    oids = [d.type_code for d in cur.description]
    for (name, _, oid, _, want), got, got_oid in zip(COLUMNS, row, oids):
        if name == "raw" and isinstance(got, memoryview):
            got = bytes(got)
        if name == "u" and isinstance(got, str):
            got = uuid.UUID(got)
        check(f"{label} {name}", got, want)
        check(f"{label} {name} oid", got_oid, oid)
    tz = row[NAMES.index("tz")]
    if tz is not None and tz.utcoffset() != datetime.timedelta(0):
        failures.append(f"{label} tz: not in UTC: {tz!r}")


# -- psycopg 3 ---------------------------------------------------------------------------
conn = psycopg.connect(
    host="127.0.0.1", port=port, user="eddy", dbname="eddy", autocommit=True, connect_timeout=10
)
conn.execute(f"CREATE STREAM every (id INT, {DDL})")
columns = ", ".join(["id"] + NAMES)
values = ", ".join(["%s"] * (len(NAMES) + 1))
binary_values = ", ".join(["%b"] * (len(NAMES) + 1))

with conn.cursor() as cur:
    # Text-format parameters.
    cur.execute(f"INSERT INTO every ({columns}) VALUES ({values})", [1] + psycopg3_params())
    # Binary-format parameters, `%b` placeholders.
    cur.execute(f"INSERT INTO every ({columns}) VALUES ({binary_values})", [2] + psycopg3_params())
    # Binary parameters and results, `binary=True`.
    cur.execute(f"INSERT INTO every ({columns}) VALUES ({values})", [3] + psycopg3_params(), binary=True)
    for id_ in (1, 2, 3):
        for binary in (False, True):
            cur.execute(f"SELECT {', '.join(NAMES)} FROM every WHERE id = %s", [id_], binary=binary)
            rows = cur.fetchall()
            check(f"psycopg rows of id {id_}", len(rows), 1)
            if rows:
                read_back(f"psycopg id {id_} {'binary' if binary else 'text'}", cur, rows[0])

    # A parameter compared with each column finds the row, in both formats.
    for binary in (False, True):
        for (name, *_), param in zip(COLUMNS, psycopg3_params()):
            if name in ("j", "jb", "m", "st", "tags", "ints", "big_ints", "empty", "raw", "r"):
                continue  # no equality (JSON, maps), or compared as a list/bytes elsewhere
            cur.execute(
                f"SELECT count(*) FROM every WHERE {name} = %s", [param], binary=binary
            )
            check(f"psycopg where {name} = param, binary={binary}", cur.fetchone()[0], 3)

    # A list passed as `%s::varchar` into an array column is the array, not one string.
    cur.execute("INSERT INTO every (id, tags) VALUES (%s, %s::varchar)", [4, ["x", "y z"]])
    cur.execute("SELECT tags FROM every WHERE id = 4")
    check("psycopg %s::varchar list", cur.fetchone()[0], ["x", "y z"])

    # Microseconds are kept through a comparison too.
    ts = datetime.datetime(2024, 3, 1, 12, 34, 56, 123456)
    cur.execute("SELECT count(*) FROM every WHERE ts = %s", [ts])
    check("psycopg microseconds compare", cur.fetchone()[0], 3)
    cur.execute("SELECT count(*) FROM every WHERE ts = %s", [ts.replace(microsecond=123000)])
    check("psycopg microseconds differ", cur.fetchone()[0], 0)

    # NULL of every type, both formats.
    nulls = ", ".join(["%s"] * len(NAMES))
    cur.execute(f"INSERT INTO every ({columns}) VALUES (5, {nulls})", [None] * len(NAMES))
    cur.execute(f"INSERT INTO every ({columns}) VALUES (6, {nulls})", [None] * len(NAMES), binary=True)
    for id_ in (5, 6):
        cur.execute(f"SELECT {', '.join(NAMES)} FROM every WHERE id = %s", [id_], binary=True)
        check(f"psycopg nulls of id {id_}", cur.fetchone(), tuple([None] * len(NAMES)))

# Errors a declared type raises, with nothing appended.
def expect_error(label, sqlstate, run):
    try:
        run()
    except psycopg.Error as e:
        check(f"{label} sqlstate ({e})", e.sqlstate, sqlstate)
    else:
        failures.append(f"{label}: no error")


def count():
    return conn.execute("SELECT count(*) FROM every").fetchone()[0]


before = count()
expect_error(
    "psycopg VARCHAR(10) too long",
    "22001",
    lambda: conn.execute("INSERT INTO every (id, vc) VALUES (%s, %s)", [7, "x" * 11]),
)
expect_error(
    "psycopg VARCHAR(10) too long, binary",
    "22001",
    lambda: conn.execute("INSERT INTO every (id, vc) VALUES (%s, %s)", [7, "y" * 11], binary=True),
)
expect_error(
    "psycopg CHAR(4) too long",
    "22001",
    lambda: conn.execute("INSERT INTO every (id, c) VALUES (%s, %s)", [7, "abcde"]),
)
expect_error(
    "psycopg bad JSON",
    "22P02",
    lambda: conn.execute("INSERT INTO every (id, j) VALUES (%s, %s)", [7, '{"a": ']),
)
expect_error(
    "psycopg bad JSONB, binary",
    "22P02",
    lambda: conn.execute("INSERT INTO every (id, jb) VALUES (%s, %s)", [7, "nope"], binary=True),
)
expect_error(
    "psycopg bad UUID",
    "22P02",
    lambda: conn.execute("INSERT INTO every (id, u) VALUES (%s, %s)", [7, "not-a-uuid"]),
)


def copy_rows(rows):
    with conn.cursor() as cur:
        with cur.copy("COPY every (id, vc, j) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


expect_error(
    "psycopg COPY VARCHAR(10) too long",
    "22001",
    lambda: copy_rows([(8, "fits", "{}"), (8, "does not fit", "{}")]),
)
expect_error(
    "psycopg COPY bad JSON", "22P02", lambda: copy_rows([(8, "fits", "{}"), (8, "fits", "[1,")])
)
check("psycopg nothing appended by the refused writes", count(), before)

# A table's pull queries read back the declared types too.
key = uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12")
conn.execute("CREATE TABLE prof (id UUID PRIMARY KEY, doc JSONB, nick VARCHAR(8), at TIMESTAMPTZ)")
at = datetime.datetime(2024, 3, 1, 23, 59, 59, 999999, tzinfo=PLUS2)
conn.execute("INSERT INTO prof VALUES (%s, %s, %s, %s)", [key, Jsonb({"v": [1]}), "ann", at], binary=True)
for binary in (False, True):
    with conn.cursor() as cur:
        cur.execute("SELECT id, doc, nick, at FROM prof WHERE id = %s", [key], binary=binary)
        check(f"psycopg pull binary={binary}", cur.fetchone(), (key, {"v": [1]}, "ann", at))
        check(
            f"psycopg pull oids binary={binary}",
            [d.type_code for d in cur.description],
            [2950, 3802, 1043, 1184],
        )
copy_rows([(9, "fits", '{"ok": true}')])
check("psycopg COPY of good rows", count(), before + 1)
conn.close()

# -- psycopg2 ----------------------------------------------------------------------------
psycopg2.extras.register_uuid()
raw = psycopg2.connect(host="127.0.0.1", port=port, user="eddy", dbname="eddy")
raw.autocommit = True


def psycopg2_params():
    out = []
    for name, _, _, value, _ in COLUMNS:
        if name in ("j", "jb", "m", "st"):
            value = psycopg2.extras.Json(value)
        out.append(value)
    return out


with raw.cursor() as cur:
    cur.execute(
        f"INSERT INTO every ({columns}) VALUES ({', '.join(['%s'] * (len(NAMES) + 1))})",
        [10] + psycopg2_params(),
    )
    cur.execute(f"SELECT {', '.join(NAMES)} FROM every WHERE id = 10")
    row = cur.fetchone()
    if row is None:
        failures.append("psycopg2: the row is not there")
    else:
        read_back("psycopg2", cur, row)
    # And psycopg2 reads what psycopg 3 wrote in binary.
    cur.execute(f"SELECT {', '.join(NAMES)} FROM every WHERE id = 3")
    read_back("psycopg2 reads psycopg's", cur, cur.fetchone())
    for label, sql, sqlstate in [
        ("psycopg2 VARCHAR(10) too long", "INSERT INTO every (id, vc) VALUES (11, %s)", "22001"),
        ("psycopg2 bad JSON", "INSERT INTO every (id, j) VALUES (11, %s)", "22P02"),
    ]:
        try:
            cur.execute(sql, ["z" * 11 if "VARCHAR" in label else "{oops"])
        except psycopg2.Error as e:
            check(f"{label} sqlstate ({e})", e.pgcode, sqlstate)
        else:
            failures.append(f"{label}: no error")
raw.close()

if failures:
    for f in failures:
        print("FAIL", f)
    sys.exit(1)
print("ok")
