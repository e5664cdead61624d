"""psycopg 3: a push query whose stream another session drops; run by tests/it/push.rs with
the server's port, which drops `events` once the query started.

Prints `<exception class> <sqlstate> <message>` for the error that ends the query, then `1`
from a query on the same connection (the session goes on). A missing psycopg is an error
(exit 1), never a skip.
"""

import sys

import psycopg

port = int(sys.argv[1])
conn = psycopg.connect(
    host="127.0.0.1", port=port, user="eddy", dbname="eddy", autocommit=True, connect_timeout=10
)
try:
    with conn.cursor() as cur:
        for row in cur.stream("SELECT id, name FROM events EMIT CHANGES"):
            pass
    print("ended without an error", flush=True)
except psycopg.Error as e:
    print(type(e).__name__, e.sqlstate, e.diag.message_primary, flush=True)
print(conn.execute("SELECT 1").fetchone()[0], flush=True)
conn.close()
