"""psycopg 3 against Eddy's push queries; run by tests/it/push.rs with the server's port.

Prints one line per row received: `stream <id> <name>` from a client-side cursor streaming a
push query (`cursor.stream`, single-row mode), then `named <id> <name>` from a server-side
(named) cursor, which psycopg drives with DECLARE, Describe portal and FETCH FORWARD.
A missing psycopg is an error (exit 1), never a skip.
"""

import sys

import psycopg

port = int(sys.argv[1])
conn = psycopg.connect(
    host="127.0.0.1", port=port, user="eddy", dbname="eddy", autocommit=True, connect_timeout=10
)

# Latest (the default): rows the test inserts from another connection while this runs.
with conn.cursor() as cur:
    for row in cur.stream("SELECT id, name FROM events WHERE name = 'new' EMIT CHANGES LIMIT 2"):
        print("stream", row[0], row[1], flush=True)

# Earliest, through a named cursor inside a transaction, one row per FETCH.
conn.execute("SET 'auto.offset.reset' = 'earliest'")
with conn.transaction():
    with conn.cursor(name="push_cursor") as cur:
        cur.itersize = 1
        cur.execute("SELECT id, name FROM events EMIT CHANGES LIMIT 4")
        for row in cur:
            print("named", row[0], row[1], flush=True)
conn.close()
