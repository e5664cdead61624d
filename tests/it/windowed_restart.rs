//! A restart changes no answer: after the README's persistent-query block (every kind of
//! table: unwindowed, tumbling, session, hopping `EMIT FINAL`, a source table, and the streams
//! queries write), `SELECT *` of every relation is the same after a clean restart (SIGTERM)
//! and again after a `kill -9` — also when windows expired by `RETENTION` while the queries
//! ran, which a restart used to bring back.
//!
//! Pull queries wait until their table reflects every committed source row; the streams that
//! queries write are polled until they hold what they must (bounded, so a hang fails).

use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use futures::{SinkExt, pin_mut};
use tokio_postgres::Client;

use crate::harness::{TestServer, rows, scalar_i64};

const BOUND: Duration = Duration::from_secs(60);

/// The README's psql session up to its `DROP STREAM` (the COPY is sent with `copy_in`).
const SESSION: &str = "
CREATE STREAM clicks (user_id VARCHAR KEY, url VARCHAR, ts TIMESTAMP)
  WITH (partitions = 3, timestamp = 'ts');
INSERT INTO clicks VALUES ('alice', '/home', '2026-11-23 10:00:00'),
                          ('bob',   '/cart', '2026-11-23 10:00:05'),
                          ('alice', '/pay',  '2026-11-23 10:01:00');";
const SESSION_COPY: &str = "carol,/home,2026-11-23 10:02:00\ncarol,/cart,2026-11-23 10:02:30\n";

/// The README's "Persistent queries and tables" block (its statements that create or write).
const PERSISTENT: &str = "
SET 'auto.offset.reset' = 'earliest';
CREATE STREAM checkout WITH (partitions = 1) AS
  SELECT user_id, upper(url) AS page FROM clicks WHERE url <> '/home' EMIT CHANGES;
CREATE STREAM audit (user_id VARCHAR KEY, what VARCHAR);
INSERT INTO audit SELECT user_id, url FROM clicks WHERE url = '/pay' EMIT CHANGES;
CREATE TABLE clicks_per_user AS
  SELECT user_id, COUNT(*) AS n, COUNT_DISTINCT(url) AS pages, LATEST_BY_OFFSET(url) AS last_url
  FROM clicks GROUP BY user_id EMIT CHANGES;
CREATE TABLE clicks_per_minute AS
  SELECT user_id, WINDOWSTART AS minute, COUNT(*) AS n FROM clicks
  WINDOW TUMBLING (SIZE 1 MINUTE, GRACE PERIOD 10 SECONDS) GROUP BY user_id EMIT CHANGES;
CREATE TABLE bursts AS
  SELECT user_id, COUNT(*) AS n FROM clicks
  WINDOW SESSION (30 SECONDS) GROUP BY user_id EMIT CHANGES;
CREATE TABLE hourly_final AS
  SELECT user_id, COUNT(*) AS n FROM clicks
  WINDOW HOPPING (SIZE 1 HOUR, ADVANCE BY 10 MINUTES, GRACE PERIOD 0 SECONDS)
  GROUP BY user_id EMIT FINAL;
CREATE TABLE users (user_id VARCHAR PRIMARY KEY, country VARCHAR) WITH (partitions = 3);
INSERT INTO users VALUES ('alice', 'NO'), ('bob', 'PE');
INSERT INTO users VALUES ('alice', 'IT');";

/// Every relation the block creates.
const RELATIONS: [&str; 8] = [
    "clicks",
    "checkout",
    "audit",
    "clicks_per_user",
    "clicks_per_minute",
    "bursts",
    "hourly_final",
    "users",
];

/// `SELECT *` of every relation, each ordered (by all its columns), as text.
async fn answers(c: &Client) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let mut out = Vec::new();
    for r in RELATIONS {
        let mut lines: Vec<String> = rows(c, &format!("SELECT * FROM {r}"))
            .await?
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|v| v.unwrap_or_else(|| "NULL".into()))
                    .collect::<Vec<_>>()
                    .join(" | ")
            })
            .collect();
        lines.sort();
        out.push((r.to_string(), lines));
    }
    Ok(out)
}

/// Polls `sql` (one integer) until it returns `want`.
async fn eventually(c: &Client, sql: &str, want: i64) -> anyhow::Result<()> {
    let deadline = Instant::now() + BOUND;
    loop {
        let got = scalar_i64(c, sql).await?;
        if got == want {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{sql} gave {got}, waited {BOUND:?} for {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs the README's session and persistent block; returns once every query caught up.
async fn readme_block(c: &Client) -> anyhow::Result<()> {
    c.batch_execute(SESSION).await?;
    let sink = c
        .copy_in::<_, Bytes>("COPY clicks FROM STDIN WITH (FORMAT csv)")
        .await?;
    pin_mut!(sink);
    sink.as_mut()
        .send(Bytes::from_static(SESSION_COPY.as_bytes()))
        .await?;
    sink.finish().await?;
    c.batch_execute(PERSISTENT).await?;
    settle(c, 5).await
}

/// Waits until the streams that queries write reflect all `clicks` rows (the tables wait by
/// themselves): `checkout` holds the clicks not on `/home`, `audit` those on `/pay`.
async fn settle(c: &Client, clicks: i64) -> anyhow::Result<()> {
    eventually(c, "SELECT count(*) FROM clicks", clicks).await?;
    let not_home = scalar_i64(c, "SELECT count(*) FROM clicks WHERE url <> '/home'").await?;
    let pay = scalar_i64(c, "SELECT count(*) FROM clicks WHERE url = '/pay'").await?;
    eventually(c, "SELECT count(*) FROM checkout", not_home).await?;
    eventually(c, "SELECT count(*) FROM audit", pay).await?;
    Ok(())
}

/// Captures every answer, restarts cleanly and compares, then `kill -9`s, restarts and
/// compares again.
async fn restarts_change_no_answer(server: &mut TestServer, clicks: i64) -> anyhow::Result<()> {
    let c = server.client().await?;
    settle(&c, clicks).await?;
    let before = answers(&c).await?;
    drop(c);

    let code = server.terminate()?;
    anyhow::ensure!(code == Some(0), "exit code after SIGTERM: {code:?}");
    server.restart()?;
    let c = server.client().await?;
    settle(&c, clicks).await?;
    let after_clean = answers(&c).await?;
    assert_eq!(after_clean, before, "a clean restart changed an answer");
    drop(c);

    server.kill9();
    server.restart()?;
    let c = server.client().await?;
    settle(&c, clicks).await?;
    let after_kill = answers(&c).await?;
    assert_eq!(
        after_kill, before,
        "a kill -9 and restart changed an answer"
    );
    Ok(())
}

fn table<'a>(answers: &'a [(String, Vec<String>)], name: &str) -> &'a [String] {
    answers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, rows)| rows.as_slice())
        .unwrap_or(&[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_persistent_block_answers_the_same_after_restart_and_kill9() -> anyhow::Result<()> {
    let mut server = TestServer::start_fresh()?;
    let c = server.client().await?;
    readme_block(&c).await?;
    // What the README's data gives (stream time 10:02:30 in each partition): nothing closed,
    // nothing expired.
    let now = answers(&c).await?;
    assert_eq!(table(&now, "clicks_per_user").len(), 3, "{now:?}");
    assert_eq!(table(&now, "clicks_per_minute").len(), 4, "{now:?}");
    assert_eq!(
        table(&now, "bursts").len(),
        4,
        "alice has two sessions (10:00, 10:01), bob and carol one: {now:?}"
    );
    assert!(
        table(&now, "bursts")
            .iter()
            .any(|r| r.starts_with("carol ")),
        "{now:?}"
    );
    assert_eq!(
        table(&now, "hourly_final"),
        &[] as &[String],
        "EMIT FINAL: no hour-long window closed by 10:02:30"
    );
    drop(c);
    restarts_change_no_answer(&mut server, 5)
        .await
        .with_context(|| server.log())
}

/// A row whose event time moves the stream time of `carol`'s partition two days on (`erin`
/// shares it): carol's windows of 2026-11-23 close (`hourly_final` emits them) and pass their
/// retention (24 hours), so they leave every windowed table while the queries run — the
/// issue's "`hourly_final` has 0 rows, `bursts` no carol" — and must stay gone after a
/// restart (which brought back carol's six hourly windows and her session). Then rows that
/// move the other partition on expire alice's and bob's windows too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_expired_while_running_stay_expired_after_restart_and_kill9() -> anyhow::Result<()>
{
    let mut server = TestServer::start_fresh()?;
    let c = server.client().await?;
    readme_block(&c).await?;
    assert_eq!(
        rows(
            &c,
            "SELECT DISTINCT rowpartition FROM clicks WHERE user_id IN ('carol', 'erin')"
        )
        .await?
        .len(),
        1,
        "erin's rows share carol's partition"
    );
    c.batch_execute("INSERT INTO clicks VALUES ('erin', '/home', '2026-11-25 12:00:00')")
        .await?;
    settle(&c, 6).await?;
    let now = answers(&c).await?;
    for t in ["clicks_per_minute", "bursts"] {
        let rows = table(&now, t);
        assert!(
            !rows.iter().any(|r| r.starts_with("carol ")),
            "{t}: carol's windows expired: {rows:?}"
        );
        assert!(
            rows.iter().any(|r| r.starts_with("alice ")),
            "{t}: alice's partition did not move: {rows:?}"
        );
    }
    assert_eq!(
        table(&now, "hourly_final"),
        &[] as &[String],
        "carol's hourly windows were emitted when they closed, and expired at once"
    );
    drop(c);
    restarts_change_no_answer(&mut server, 6)
        .await
        .with_context(|| server.log())?;

    let c = server.client().await?;
    c.batch_execute(
        "INSERT INTO clicks VALUES ('alice', '/home', '2026-11-25 12:00:00'),
                                   ('bob',   '/home', '2026-11-25 12:00:30')",
    )
    .await?;
    settle(&c, 8).await?;
    let now = answers(&c).await?;
    for t in ["clicks_per_minute", "bursts"] {
        let rows = table(&now, t);
        assert_eq!(
            rows.len(),
            3,
            "{t}: only the windows of the 25th are left: {rows:?}"
        );
    }
    assert_eq!(table(&now, "hourly_final"), &[] as &[String]);
    assert_eq!(
        table(&now, "clicks_per_user").len(),
        4,
        "an unwindowed table does not expire"
    );
    drop(c);
    restarts_change_no_answer(&mut server, 8)
        .await
        .with_context(|| server.log())
}

/// `k@windowstart` of every row of table `t`, sorted.
async fn window_starts(c: &Client, t: &str) -> anyhow::Result<Vec<String>> {
    let mut got: Vec<String> = rows(c, &format!("SELECT k, windowstart FROM {t}"))
        .await?
        .into_iter()
        .map(|r| r.into_iter().flatten().collect::<Vec<_>>().join("@"))
        .collect();
    got.sort();
    Ok(got)
}

/// `RETENTION` counts in stream time from a time window's start (a session's last event), as
/// ksqlDB's window and session stores do; a restart keeps what expired expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_counts_from_the_window_start_or_the_sessions_last_event() -> anyhow::Result<()> {
    let mut server = TestServer::start_fresh()?;
    let c = server.client().await?;
    c.batch_execute(
        "CREATE STREAM ev (k VARCHAR KEY, ts BIGINT) WITH (partitions = 1, timestamp = 'ts');
         CREATE TABLE hours AS SELECT k, COUNT(*) AS n FROM ev
           WINDOW TUMBLING (SIZE 1 HOUR, RETENTION 2 HOURS, GRACE PERIOD 0 SECONDS)
           GROUP BY k EMIT CHANGES;
         CREATE TABLE visits AS SELECT k, COUNT(*) AS n FROM ev
           WINDOW SESSION (10 MINUTES, RETENTION 2 HOURS, GRACE PERIOD 0 SECONDS)
           GROUP BY k EMIT CHANGES;
         INSERT INTO ev VALUES ('a', 0), ('a', 3000000)",
    )
    .await?;
    assert_eq!(window_starts(&c, "hours").await?, ["a@0"]);
    assert_eq!(window_starts(&c, "visits").await?, ["a@0", "a@3000000"]);
    // Stream time 2 h: the hour [0, 1 h) is gone (start + 2 h), though it ended only 1 h ago;
    // the session that ended at 0 is gone, the one that ended at 50 min stays.
    c.batch_execute("INSERT INTO ev VALUES ('b', 7200000)")
        .await?;
    assert_eq!(window_starts(&c, "hours").await?, ["b@7200000"]);
    assert_eq!(
        window_starts(&c, "visits").await?,
        ["a@3000000", "b@7200000"]
    );
    // 2 h 50 min: the session that ended at 50 min goes too.
    c.batch_execute("INSERT INTO ev VALUES ('c', 10200000)")
        .await?;
    let hours = window_starts(&c, "hours").await?;
    let visits = window_starts(&c, "visits").await?;
    assert_eq!(visits, ["b@7200000", "c@10200000"]);
    drop(c);
    server.kill9();
    server.restart()?;
    let c = server.client().await?;
    assert_eq!(window_starts(&c, "hours").await?, hours);
    assert_eq!(window_starts(&c, "visits").await?, visits);
    Ok(())
}
