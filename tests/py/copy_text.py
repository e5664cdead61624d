"""COPY in PostgreSQL's text and CSV formats, both ways, as psycopg 3 (`cursor.copy`) and
psycopg2 (`copy_expert`) drive it; run by tests/it/clients.rs with the server's port. What Eddy
writes, Eddy reads: rows with NULLs, tabs, newlines, backslashes, quotes, commas, non-ASCII
text and arrays go in, come out byte for byte as PostgreSQL writes them, and go in again to
the same rows; psycopg2's named cursor reads them back in chunks. Asserts as it goes, prints
`ok` at the end.
"""

import io
import sys

import psycopg
import psycopg2

port = int(sys.argv[1])
dsn = f"host=127.0.0.1 port={port} user=eddy dbname=eddy"
conn = psycopg.connect(dsn, autocommit=True)
conn.execute(
    "CREATE STREAM notes (id BIGINT KEY, body VARCHAR, tags ARRAY<VARCHAR>, n INT) "
    "WITH (partitions = 2)"
)
conn.execute("CREATE STREAM again (id BIGINT KEY, body VARCHAR, tags ARRAY<VARCHAR>, n INT)")
conn.execute("CREATE STREAM csv_again (id BIGINT KEY, body VARCHAR, tags ARRAY<VARCHAR>, n INT)")

ROWS = [
    (1, "plain", ["a", "b"], 10),
    (2, "tab\there, newline\nthere", ["x y", "z,w"], None),
    (3, "back\\slash and \"quotes\", commas", [], -3),
    (4, None, None, 0),
    (5, "ünïcødé ✓", ['q"uote', "back\\slash"], 2147483647),
    (6, "", ["", None], 1),
]
COLUMNS = "id, body, tags, n"


def copy_out(statement):
    """The bytes of a COPY ... TO STDOUT, as psycopg 3 receives them."""
    with conn.cursor() as cur:
        with cur.copy(statement) as copy:
            return b"".join(bytes(block) for block in copy)


def stored(stream):
    return conn.execute(f"SELECT {COLUMNS} FROM {stream} ORDER BY id").fetchall()


# psycopg 3 writes rows in the text format (its own escaping), then reads them back as rows.
with conn.cursor() as cur:
    with cur.copy(f"COPY notes ({COLUMNS}) FROM STDIN") as copy:
        for row in ROWS:
            copy.write_row(row)
assert stored("notes") == ROWS, stored("notes")
with conn.cursor() as cur:
    with cur.copy(f"COPY (SELECT {COLUMNS} FROM notes ORDER BY id) TO STDOUT") as copy:
        copy.set_types(["int8", "text", "text[]", "int4"])
        assert list(copy.rows()) == ROWS

# The text format byte for byte, as PostgreSQL writes these rows.
text_out = copy_out(f"COPY (SELECT {COLUMNS} FROM notes ORDER BY id) TO STDOUT")
expected_text = (
    b"1\tplain\t{a,b}\t10\n"
    b'2\ttab\\there, newline\\nthere\t{"x y","z,w"}\t\\N\n'
    b'3\tback\\\\slash and "quotes", commas\t{}\t-3\n'
    b"4\t\\N\t\\N\t0\n"
    + "5\tünïcødé ✓\t".encode()
    + b'{"q\\\\"uote","back\\\\\\\\slash"}\t2147483647\n'
    b'6\t\t{"",NULL}\t1\n'
)
assert text_out == expected_text, (text_out, expected_text)

# CSV with a header, out and in again, and what Eddy wrote it reads to the same rows.
csv_out = copy_out(
    f"COPY (SELECT {COLUMNS} FROM notes ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)"
)
lines = csv_out.decode().split("\n")
assert lines[0] == "id,body,tags,n", lines[0]
assert lines[1] == "1,plain,\"{a,b}\",10", lines[1]
# Row 2 spans two lines (a quoted newline). NULL is the empty unquoted field, an empty string
# the quoted one.
assert lines[5] == "4,,,0", lines[5]
assert lines[7] == '6,"","{"""",NULL}",1', lines[7]
with conn.cursor() as cur:
    with cur.copy(f"COPY csv_again ({COLUMNS}) FROM STDIN WITH (FORMAT csv, HEADER)") as copy:
        copy.write(csv_out)
assert stored("csv_again") == ROWS, stored("csv_again")

# psycopg2: the text Eddy wrote goes in again through copy_expert, and comes out the same.
conn2 = psycopg2.connect(dsn)
conn2.autocommit = True
with conn2.cursor() as cur:
    cur.copy_expert(f"COPY again ({COLUMNS}) FROM STDIN", io.BytesIO(text_out))
    assert cur.rowcount == len(ROWS), cur.rowcount
    out = io.BytesIO()
    cur.copy_expert(f"COPY (SELECT {COLUMNS} FROM again ORDER BY id) TO STDOUT", out)
    assert out.getvalue() == expected_text, out.getvalue()
    out = io.BytesIO()
    cur.copy_expert(
        f"COPY (SELECT {COLUMNS} FROM again ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)", out
    )
    assert out.getvalue() == csv_out, (out.getvalue(), csv_out)
assert stored("again") == ROWS, stored("again")

# psycopg2's named (server-side) cursor: DECLARE inside its transaction, FETCH itersize rows
# at a time, CLOSE at the end.
conn2.autocommit = False
with conn2.cursor(name="notes_cursor") as cur:
    cur.itersize = 2
    cur.execute(f"SELECT id, body FROM notes ORDER BY id")
    assert [r[0] for r in cur] == [r[0] for r in ROWS]
conn2.commit()
conn2.close()
conn.close()
print("ok")
