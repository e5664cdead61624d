"""pgcli against Eddy; run by tests/it/clients.rs with the server's port. The real `pgcli -c`
for `\\dt` and `\\d name` (pgspecial's queries), then pgcli's completion refresher in-process
(what an interactive pgcli runs on connect: search path, schemas, relations, columns, foreign
keys, types, functions) and the completions it then offers. Asserts as it goes and prints `ok`.
"""

import os
import subprocess
import sys
import tempfile

import psycopg
from pgcli.completion_refresher import CompletionRefresher
from pgcli.pgcompleter import PGCompleter
from pgcli.pgexecute import PGExecute
from prompt_toolkit.document import Document

port = sys.argv[1]
with psycopg.connect(f"host=127.0.0.1 port={port} user=eddy dbname=eddy", autocommit=True) as c:
    c.execute("CREATE STREAM clicks (user_id VARCHAR KEY, url VARCHAR) WITH (partitions = 2)")
    c.execute("CREATE TABLE users (id VARCHAR PRIMARY KEY, name VARCHAR)")


def pgcli(*commands):
    args = ["pgcli", "-h", "127.0.0.1", "-p", port, "-U", "eddy", "-w", "--less-chatty"]
    for command in commands:
        args += ["-c", command]
    env = dict(os.environ, XDG_CONFIG_HOME=config, PGCONNECT_TIMEOUT="10")
    out = subprocess.run(
        args + ["eddy"], env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )
    assert out.returncode == 0, (out.returncode, out.stdout, out.stderr)
    return out.stdout


with tempfile.TemporaryDirectory() as config:
    out = pgcli("\\dt")
    assert "| public | clicks | table | eddy  |" in out, out
    assert "| public | users  | table | eddy  |" in out, out
    out = pgcli("\\d clicks")
    assert "| user_id      | character varying" in out, out
    assert "| rowoffset    | bigint" in out, out
    assert '"clicks_key" hash (user_id)' in out, out
    out = pgcli("\\d users")
    assert '"users_pkey" PRIMARY KEY, hash (id)' in out, out
    assert "error" not in out.lower(), out

executor = PGExecute("eddy", "eddy", None, "127.0.0.1", port, None)
assert executor.search_path() == ["pg_catalog", "public"], executor.search_path()
completer = PGCompleter(smart_completion=True, pgspecial=None, settings={})
for name, refresh in CompletionRefresher.refreshers.items():
    refresh(completer, executor)  # any failure is the test's failure


def completions(text, at=None):
    at = len(text) if at is None else at
    return [c.text for c in completer.get_completions(Document(text, at), None)]


assert {"clicks", "users"} <= set(completions("SELECT * FROM ")), completions("SELECT * FROM ")
columns = completions("SELECT  FROM clicks", 7)
assert {"user_id", "url", "rowtime", "rowpartition", "rowoffset"} <= set(columns), columns
print("ok")
