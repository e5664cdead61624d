"""psycopg 3's binary COPY against Eddy, both ways; run by tests/it/copy_binary.rs with the
server's port. `write_row` with `set_types` sends every column type Eddy has in PostgreSQL's
binary encodings; `rows()` reads them back from `COPY (SELECT ...) TO STDOUT (FORMAT BINARY)`,
`COPY s TO STDOUT (FORMAT BINARY)` and a push query's COPY. Bad data must fail the whole COPY
with 22P03 or 22P04, naming the row (and column). Asserts as it goes, prints `ok` at the end.
"""

import datetime
import sys
from decimal import Decimal

import psycopg
from psycopg import errors

port = int(sys.argv[1])
conn = psycopg.connect(
    host="127.0.0.1", port=port, user="eddy", dbname="eddy", autocommit=True, connect_timeout=10
)

COLUMNS = "i, n, d, ok, s, raw, day, ts, amount, tags, nums, t, flags"
TYPES = [
    "int4", "int8", "float8", "bool", "text", "bytea", "date", "timestamp", "numeric",
    "text[]", "int8[]", "time", "bool[]",
]
conn.execute(
    "CREATE STREAM kinds (i INT, n BIGINT, d DOUBLE, ok BOOLEAN, s VARCHAR, raw BYTES, day DATE, "
    "ts TIMESTAMP, amount DECIMAL(12,3), tags ARRAY<VARCHAR>, nums ARRAY<BIGINT>, t TIME, "
    "flags ARRAY<BOOLEAN>) WITH (partitions = 2)"
)

rows = [
    (1, 2**62, 2.5, True, "héllo\ttab\nnewline \\ back", b"\x00\x01\xff",
     datetime.date(2026, 1, 2), datetime.datetime(2026, 1, 2, 3, 4, 5, 678000),
     Decimal("12345.678"), ["a", "b c", None, ""], [1, -2, 2**40], datetime.time(23, 59, 58, 250000),
     [True, False, None]),
    (2, -1, -1e300, False, "", b"", datetime.date(1999, 12, 31),
     datetime.datetime(1969, 7, 20, 20, 17, 40), Decimal("-0.005"), [], [], datetime.time(0, 0),
     []),
    (3, None, None, None, None, None, None, None, None, None, None, None, None),
    (4, 0, float("inf"), True, "x" * 10_000, bytes(range(256)) * 40, datetime.date(2000, 1, 1),
     datetime.datetime(2000, 1, 1), Decimal("0"), ["only"], [None], datetime.time(12, 0, 0, 1000),
     [None]),
]
# Every value is one Eddy keeps exactly (TIMESTAMP and TIME are milliseconds, the DECIMAL has
# three places).
expected = rows

with conn.cursor() as cur:
    with cur.copy(f"COPY kinds ({COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(TYPES)
        for row in rows:
            copy.write_row(row)
    assert cur.rowcount == len(rows), cur.rowcount


def copy_out(cur, statement, types):
    with cur.copy(statement) as copy:
        copy.set_types(types)
        return list(copy.rows())


with conn.cursor() as cur:
    got = copy_out(
        cur, f"COPY (SELECT {COLUMNS} FROM kinds ORDER BY i) TO STDOUT (FORMAT BINARY)", TYPES
    )
    assert got == expected, f"{got!r}\n!=\n{expected!r}"
    assert cur.rowcount == len(rows), cur.rowcount

    # The whole stream (its own columns), in partition order.
    got = copy_out(cur, "COPY kinds TO STDOUT (FORMAT BINARY)", TYPES)
    assert sorted(got, key=lambda r: r[0]) == expected, got

    # No rows: the file header and trailer only.
    assert copy_out(cur, "COPY (SELECT i FROM kinds WHERE i < 0) TO STDOUT (FORMAT BINARY)",
                    ["int4"]) == []
    assert cur.rowcount == 0, cur.rowcount

    # Query results of types no stream column has: SMALLINT, REAL, a wide DECIMAL.
    got = copy_out(
        cur,
        "COPY (SELECT CAST(7 AS SMALLINT), CAST(1.5 AS REAL), "
        "CAST('123456789012345678901234567890.5' AS DECIMAL(38, 1)), 'x') "
        "TO STDOUT (FORMAT BINARY)",
        ["int2", "float4", "numeric", "text"],
    )
    assert got == [(7, 1.5, Decimal("123456789012345678901234567890.5"), "x")], got

    # A push query's COPY, from the earliest offset: header, rows as they come, trailer.
    cur.execute("SET 'auto.offset.reset' = 'earliest'")
    got = copy_out(
        cur, "COPY (SELECT i, s FROM kinds WHERE i <= 2 EMIT CHANGES LIMIT 2) TO STDOUT (FORMAT BINARY)",
        ["int4", "text"],
    )
    assert sorted(got) == [(1, rows[0][4]), (2, "")], got

# Many rows: several blocks of the receiver, decoded in parallel, all or nothing.
conn.execute("CREATE STREAM many (id BIGINT, name VARCHAR)")
total = 100_000
with conn.cursor() as cur:
    with cur.copy("COPY many FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(["int8", "text"])
        for i in range(total):
            copy.write_row((i, f"name {i}"))
    assert cur.rowcount == total
    cur.execute("SELECT count(*), sum(id), count(DISTINCT name) FROM many")
    assert cur.fetchone() == (total, total * (total - 1) // 2, total)


def expect_failure(statement, write, error, words):
    """A COPY whose data `write` sends must fail with `error`, its message holding `words`,
    and store nothing."""
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM many")
        before = cur.fetchone()[0]
        try:
            with cur.copy(statement) as copy:
                write(copy)
        except error as e:
            for w in words:
                assert w in str(e), f"{w!r} not in {e}"
        else:
            raise AssertionError(f"{statement} succeeded")
        cur.execute("SELECT count(*) FROM many")
        assert cur.fetchone()[0] == before, "a failed COPY stored rows"


def late_bad_row(copy):
    copy.set_types(["int8", "text"])
    for i in range(40_000):
        copy.write_row((i, "fine"))
    # An int4 where the column is BIGINT (psycopg sends 4 bytes): row 40001.
    copy.set_types(["int4", "text"])
    copy.write_row((1, "bad"))


expect_failure("COPY many FROM STDIN (FORMAT BINARY)", late_bad_row,
               errors.InvalidBinaryRepresentation, ["row 40001", "column id", "4 bytes"])

HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8


def raw(data):
    return lambda copy: copy.write(data)


expect_failure("COPY many FROM STDIN (FORMAT BINARY)", raw(b"PGCOPY\nnope"),
               errors.BadCopyFileFormat, ["signature"])
# Row 1 says it has 3 fields.
expect_failure("COPY many FROM STDIN (FORMAT BINARY)",
               raw(HEADER + b"\x00\x03" + b"\xff\xff\xff\xff" * 3),
               errors.BadCopyFileFormat, ["row 1", "field count is 3, expected 2"])
# Row 1 is cut short.
expect_failure("COPY many FROM STDIN (FORMAT BINARY)",
               raw(HEADER + b"\x00\x02\x00\x00\x00\x08\x00\x00"),
               errors.BadCopyFileFormat, ["row 1", "unexpected EOF"])
# Text that is not UTF-8.
expect_failure("COPY many FROM STDIN (FORMAT BINARY)",
               raw(HEADER + b"\x00\x02\xff\xff\xff\xff\x00\x00\x00\x01\xc3"),
               errors.InvalidBinaryRepresentation, ["row 1", "column name", "UTF8"])
conn.close()
print("ok")
