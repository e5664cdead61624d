// node-postgres (pg, pg-cursor, pg-query-stream) against Eddy; run by tests/it/clients.rs with
// the server's port, after `.ci/run` installed the packages of package.json here (`npm ci`).
// Asserts as it goes and prints `ok` at the end; a missing package is an error, never a skip.

'use strict';

const assert = require('node:assert/strict');
const { Client } = require('pg');
const Cursor = require('pg-cursor');
const QueryStream = require('pg-query-stream');

const port = Number(process.argv[2]);
const connect = async () => {
  const client = new Client({
    host: '127.0.0.1',
    port,
    user: 'eddy',
    database: 'eddy',
    connectionTimeoutMillis: 10000,
  });
  await client.connect();
  return client;
};

const read = (cursor, n) => cursor.read(n);

async function basicTypes(client) {
  await client.query(
    `CREATE STREAM kinds (i INT, b BIGINT, d DOUBLE, ok BOOLEAN, s VARCHAR, ts TIMESTAMP,
       day DATE, amount DECIMAL(10,2), raw BYTES, tags ARRAY<VARCHAR>, ns ARRAY<BIGINT>)`,
  );
  // node-pg sends array parameters as text (`{"a","b c",NULL,""}`), read as PostgreSQL
  // array literals.
  const insert =
    'INSERT INTO kinds (i, b, d, ok, s, ts, day, amount, raw, tags, ns) ' +
    'VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)';
  const first = await client.query(insert, [
    7,
    '9007199254740993', // beyond a JavaScript number's exact integers: node-pg sends text
    2.5,
    true,
    'héllo, "world"',
    new Date(Date.UTC(2026, 0, 2, 3, 4, 5, 678)),
    '2026-01-02',
    '12.34',
    Buffer.from([0, 1, 2, 255]), // node-pg binds a Buffer in binary format
    ['a', 'b c', null, ''],
    [1, -2],
  ]);
  assert.equal(first.command, 'INSERT');
  assert.equal(first.rowCount, 1);
  const nulls = await client.query(insert.replace('$10, $11', 'NULL, NULL'), [
    8, null, null, false, null, null, null, null, null,
  ]);
  assert.equal(nulls.rowCount, 1);

  const res = await client.query(
    'SELECT i, b, d, ok, s, ts, day, amount, raw, tags, ns FROM kinds WHERE i = $1',
    [7],
  );
  assert.equal(res.rows.length, 1);
  const names = res.fields.map((f) => `${f.name}:${f.dataTypeID}`).join(' ');
  assert.equal(
    names,
    'i:23 b:20 d:701 ok:16 s:1043 ts:1114 day:1082 amount:1700 raw:17 tags:1009 ns:1016',
  );
  const row = res.rows[0];
  assert.equal(row.i, 7);
  assert.equal(row.b, '9007199254740993'); // int8 is a string in node-pg, exactly
  assert.equal(row.d, 2.5);
  assert.equal(row.ok, true);
  assert.equal(row.s, 'héllo, "world"');
  // TIMESTAMP is milliseconds; node-pg reads a timestamp without time zone as local time, and
  // the test runs with TZ=UTC.
  assert.equal(row.ts.toISOString(), '2026-01-02T03:04:05.678Z');
  assert.equal(row.day.getFullYear(), 2026);
  assert.equal(row.day.getMonth(), 0);
  assert.equal(row.day.getDate(), 2);
  assert.equal(row.amount, '12.34');
  assert.deepEqual([...row.raw], [0, 1, 2, 255]);
  assert.deepEqual(row.tags, ['a', 'b c', null, '']);
  assert.deepEqual(row.ns, ['1', '-2']);

  const empty = await client.query('SELECT b, s, ts, raw FROM kinds WHERE i = $1', [8]);
  assert.deepEqual(empty.rows, [{ b: null, s: null, ts: null, raw: null }]);

  // The same statement with a name is prepared once and executed again.
  for (let n = 0; n < 3; n++) {
    const named = await client.query({
      name: 'by-flag',
      text: 'SELECT count(*) AS n FROM kinds WHERE ok = $1',
      values: [n % 2 === 0],
    });
    assert.equal(named.rows[0].n, '1'); // count(*) is int8: a string
  }
  // Array mode and the text protocol for a statement without parameters.
  const arrays = await client.query({ text: 'SELECT i, s FROM kinds ORDER BY i', rowMode: 'array' });
  assert.deepEqual(arrays.rows, [[7, 'héllo, "world"'], [8, null]]);
}

async function cursorOverAQuery(client) {
  await client.query('CREATE STREAM numbers (n INT)');
  await client.query(
    'INSERT INTO numbers VALUES ' + Array.from({ length: 10 }, (_, i) => `(${i})`).join(', '),
  );
  const cursor = client.query(new Cursor('SELECT n FROM numbers WHERE n >= $1 ORDER BY n', [0]));
  const chunks = [];
  for (;;) {
    const rows = await read(cursor, 3);
    chunks.push(rows.map((r) => r.n));
    if (rows.length === 0) break;
  }
  await cursor.close();
  assert.deepEqual(chunks, [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9], []]);
}

async function cursorOverAPushQuery(client, writer) {
  await client.query('CREATE STREAM ticks (id INT, note VARCHAR)');
  await client.query("SET 'auto.offset.reset' = 'earliest'");
  await writer.query("INSERT INTO ticks VALUES (0, 'before'), (1, 'before')");
  const cursor = client.query(
    new Cursor("SELECT id, note FROM ticks WHERE note <> 'skip' EMIT CHANGES LIMIT 5"),
  );
  // The history first, then rows that arrive while the cursor waits for them.
  assert.deepEqual((await read(cursor, 2)).map((r) => r.id), [0, 1]);
  const waiting = read(cursor, 2);
  let got = false;
  waiting.then(() => {
    got = true;
  });
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(got, false, 'the cursor waits for rows that are not there yet');
  await writer.query("INSERT INTO ticks VALUES (2, 'after'), (3, 'skip'), (4, 'after')");
  assert.deepEqual((await waiting).map((r) => [r.id, r.note]), [
    [2, 'after'],
    [4, 'after'],
  ]);
  const last = read(cursor, 10);
  await writer.query("INSERT INTO ticks VALUES (5, 'after'), (6, 'after')");
  // LIMIT 5 ends it: one more row, then the cursor is done.
  assert.deepEqual((await last).map((r) => r.id), [5]);
  assert.deepEqual(await read(cursor, 10), []);
  await cursor.close();
}

async function queryStreamOverAPushQuery(client, writer) {
  await client.query('CREATE STREAM events (id INT, kind VARCHAR)');
  await writer.query("INSERT INTO events VALUES (1, 'a'), (2, 'b')");
  const stream = client.query(
    new QueryStream('SELECT id, kind FROM events EMIT CHANGES LIMIT 4', [], { batchSize: 100 }),
  );
  const seen = [];
  const done = new Promise((resolve, reject) => {
    stream.on('data', (row) => seen.push(`${row.id}${row.kind}`));
    stream.on('end', resolve);
    stream.on('error', reject);
  });
  await new Promise((resolve) => setTimeout(resolve, 300));
  await writer.query("INSERT INTO events VALUES (3, 'c'), (4, 'd'), (5, 'e')");
  await done;
  assert.deepEqual(seen, ['1a', '2b', '3c', '4d']);
}

async function errorsCarrySqlstate(client) {
  const expectCode = async (query, values, code) => {
    await assert.rejects(client.query(query, values), (e) => {
      assert.equal(e.code, code, `${query}: ${e.message}`);
      return true;
    });
    // The connection goes on.
    assert.equal((await client.query('SELECT 1 AS one')).rows.length, 1);
  };
  await expectCode('SELECT * FROM no_such_stream', undefined, '42P01');
  await expectCode('SELEC 1', undefined, '42601');
  await expectCode('SELECT nope FROM numbers', undefined, '42703');
  await expectCode('SELECT n / $1 FROM numbers', [0], '22012');
  await expectCode('INSERT INTO numbers VALUES ($1)', ['not a number'], '22P02');
  await expectCode("SELECT current_setting('no.such.setting')", undefined, '42704');
}

(async () => {
  const client = await connect();
  const writer = await connect();
  try {
    await basicTypes(client);
    await cursorOverAQuery(client);
    await cursorOverAPushQuery(client, writer);
    await queryStreamOverAPushQuery(client, writer);
    await errorsCarrySqlstate(client);
  } finally {
    await client.end();
    await writer.end();
  }
  console.log('ok');
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
