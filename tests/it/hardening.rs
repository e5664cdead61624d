//! What no statement and no damaged file may do: delete data, write outside the data
//! directory, keep a failed statement half-done, or keep the server from starting. Each test
//! restarts or corrupts a real server's data directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{TestServer, rows, scalar_i64, sqlstate};

/// Every file under `dir` with its contents (directories as empty entries), but the `LOCK`
/// files, which hold the pid of whoever last locked the directory.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().to_path_buf();
            if p.file_name().is_some_and(|n| n == "LOCK") {
                continue;
            }
            if p.is_dir() {
                out.insert(rel, vec![]);
                stack.push(p);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    out
}

/// Runs a second `eddy server` on `data_dir` and returns (exit code, stderr).
fn second_server(data_dir: &Path) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["server", "--pg-addr", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn a second server");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status.code(), err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("a second server on a locked data dir kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn storage_of(client: &tokio_postgres::Client, name: &str) -> String {
    let r = rows(
        client,
        &format!("SELECT storage FROM eddy.streams WHERE name = '{name}'"),
    )
    .await
    .unwrap();
    r[0][0].clone().expect("a storage name")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_a_live_data_dir_is_refused_and_changes_nothing() {
    let mut server = TestServer::start_fresh().expect("server starts");
    let client = server.client().await.unwrap();
    client
        .batch_execute("CREATE STREAM a (x INT); INSERT INTO a VALUES (1), (2)")
        .await
        .unwrap();
    let before = tree(server.data_dir());
    let (code, err) = second_server(server.data_dir());
    assert_ne!(code, Some(0), "the second server must fail:\n{err}");
    assert!(
        err.contains("in use by another eddy server"),
        "the error says why:\n{err}"
    );
    let after = tree(server.data_dir());
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    assert!(before == after, "the second server changed files");
    // The live server goes on, and everything survives its restart.
    client
        .batch_execute(
            "CREATE STREAM b (y INT); INSERT INTO b VALUES (3); INSERT INTO a VALUES (4)",
        )
        .await
        .unwrap();
    drop(client);
    server.terminate().unwrap();
    server.restart().unwrap();
    let client = server.client().await.unwrap();
    assert_eq!(
        scalar_i64(&client, "SELECT sum(x) FROM a").await.unwrap(),
        7
    );
    assert_eq!(
        scalar_i64(&client, "SELECT sum(y) FROM b").await.unwrap(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_never_become_paths() {
    let outer = tempfile::Builder::new()
        .prefix("eddy-names-")
        .tempdir()
        .unwrap();
    // A canary beside the data directory, and one where an absolute name would point.
    std::fs::create_dir_all(outer.path().join("x")).unwrap();
    std::fs::write(outer.path().join("x/canary"), b"keep me").unwrap();
    let mut server = TestServer::start_with(outer.path(), &[], &[]).expect("server starts");
    let client = server.client().await.unwrap();
    client
        .batch_execute("CREATE STREAM keep (v INT); INSERT INTO keep VALUES (42)")
        .await
        .unwrap();
    let abs = outer.path().join("x").display().to_string();
    let names = [
        "..",
        ".",
        "../../x",
        "../x",
        "a/b",
        "topics",
        "catalog",
        "ünï code",
        &abs,
    ];
    for (i, name) in names.iter().enumerate() {
        let q = name.replace('"', "\"\"");
        client
            .batch_execute(&format!(
                "CREATE STREAM \"{q}\" (v INT); INSERT INTO \"{q}\" VALUES ({i})"
            ))
            .await
            .unwrap_or_else(|e| panic!("create {name:?}: {e}"));
        assert_eq!(
            scalar_i64(&client, &format!("SELECT v FROM \"{q}\""))
                .await
                .unwrap(),
            i as i64
        );
    }
    // Every topic directory is a catalog-assigned plain name inside topics/.
    let topics = server.data_dir().join("topics");
    for e in std::fs::read_dir(&topics).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if !e.path().is_dir() {
            // The commit records of transactions over several streams.
            assert_eq!(n, "transactions.log", "a file among the topic directories");
            continue;
        }
        assert!(
            n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
            "topic dir {n:?}"
        );
    }
    for name in names {
        let q = name.replace('"', "\"\"");
        client
            .batch_execute(&format!("DROP STREAM \"{q}\""))
            .await
            .unwrap_or_else(|e| panic!("drop {name:?}: {e}"));
    }
    assert_eq!(scalar_i64(&client, "SELECT v FROM keep").await.unwrap(), 42);
    assert_eq!(
        std::fs::read(outer.path().join("x/canary")).unwrap(),
        b"keep me"
    );
    // Identifiers as PostgreSQL takes them: not empty, at most 63 bytes.
    assert_eq!(
        sqlstate(client.batch_execute("CREATE STREAM \"\" (v INT)").await),
        "42602"
    );
    let long = "n".repeat(64);
    assert_eq!(
        sqlstate(
            client
                .batch_execute(&format!("CREATE STREAM {long} (v INT)"))
                .await
        ),
        "42622"
    );
    assert_eq!(
        sqlstate(
            client
                .batch_execute(&format!("CREATE STREAM s300 ({} INT)", "c".repeat(300)))
                .await
        ),
        "42622"
    );
    let ok = "n".repeat(63);
    client
        .batch_execute(&format!(
            "CREATE STREAM {ok} (v INT); INSERT INTO {ok} VALUES (1)"
        ))
        .await
        .unwrap();
    assert_eq!(
        rows(&client, "SELECT name FROM eddy.streams ORDER BY name")
            .await
            .unwrap(),
        vec![vec![Some("keep".to_string())], vec![Some(ok.clone())]]
    );
    drop(client);
    server.terminate().unwrap();
    server.restart().unwrap();
    let client = server.client().await.unwrap();
    assert_eq!(scalar_i64(&client, "SELECT v FROM keep").await.unwrap(), 42);
    assert_eq!(
        scalar_i64(&client, &format!("SELECT count(*) FROM {ok}"))
            .await
            .unwrap(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_files_fail_leaves_nothing_behind() {
    let mut server = TestServer::start_fresh().expect("server starts");
    let client = server.client().await.unwrap();
    client
        .batch_execute("CREATE STREAM first (v INT)")
        .await
        .unwrap();
    let next = storage_of(&client, "first")
        .await
        .replace("first-1", "doomed-2");
    // Where the next stream's directory would go, a file: creating its partitions fails.
    std::fs::write(server.data_dir().join("topics").join(&next), b"in the way").unwrap();
    let err = client
        .batch_execute("CREATE STREAM doomed (v INT) WITH (partitions = 2)")
        .await
        .expect_err("the create fails");
    assert!(err.as_db_error().is_some(), "an error response: {err}");
    assert_eq!(
        rows(&client, "SELECT name FROM eddy.streams")
            .await
            .unwrap(),
        vec![vec![Some("first".to_string())]],
        "a failed create is not in the catalog"
    );
    assert_eq!(
        sqlstate(client.batch_execute("INSERT INTO doomed VALUES (1)").await),
        "42P01"
    );
    // The same name works once the obstacle is gone (a new storage name), and restarts work.
    client
        .batch_execute("CREATE STREAM doomed (v INT); INSERT INTO doomed VALUES (5)")
        .await
        .unwrap();
    drop(client);
    server.terminate().unwrap();
    server.restart().unwrap();
    let client = server.client().await.unwrap();
    assert_eq!(
        scalar_i64(&client, "SELECT v FROM doomed").await.unwrap(),
        5
    );
    assert_eq!(
        std::fs::read(server.data_dir().join("topics").join(&next)).unwrap(),
        b"in the way",
        "a file the catalog did not create is never removed"
    );
}

/// Creates streams a, b, c with rows, then kills the server; returns their storage names.
async fn three_streams_then_kill(server: &mut TestServer) -> Vec<String> {
    let client = server.client().await.unwrap();
    let mut storage = vec![];
    for (i, n) in ["a", "b", "c"].iter().enumerate() {
        client
            .batch_execute(&format!(
                "CREATE STREAM {n} (v INT); INSERT INTO {n} VALUES ({i})"
            ))
            .await
            .unwrap();
        storage.push(storage_of(&client, n).await);
    }
    drop(client);
    server.kill9();
    storage
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_catalog_moves_unknown_data_aside_and_never_deletes_it() {
    let mut server = TestServer::start_fresh().expect("server starts");
    let storage = three_streams_then_kill(&mut server).await;
    let log = server.data_dir().join("meta/log/raft.log");
    let bytes = std::fs::read(&log).unwrap();
    // Cut in the middle of the second record: b's and c's commands are gone.
    let b_at = bytes
        .windows(10)
        .position(|w| w == b"\"name\":\"b\"")
        .unwrap();
    std::fs::write(&log, &bytes[..b_at]).unwrap();
    let b_files = tree(&server.data_dir().join("topics").join(&storage[1]));
    server.restart().expect("a torn tail is only dropped");
    let client = server.client().await.unwrap();
    assert_eq!(
        rows(&client, "SELECT name FROM eddy.streams")
            .await
            .unwrap(),
        vec![vec![Some("a".to_string())]]
    );
    assert_eq!(scalar_i64(&client, "SELECT v FROM a").await.unwrap(), 0);
    // b's and c's data were moved aside whole, not deleted.
    let aside = server.data_dir().join("lost+found");
    let moved: Vec<String> = std::fs::read_dir(&aside)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for s in &storage[1..] {
        let m = moved
            .iter()
            .find(|m| m.starts_with(&format!("{s}.")))
            .unwrap_or_else(|| panic!("{s} in lost+found: {moved:?}"));
        if s == &storage[1] {
            let kept = tree(&aside.join(m));
            let logs = |t: &BTreeMap<PathBuf, Vec<u8>>| {
                t.iter()
                    .filter(|(p, _)| p.extension().is_some_and(|e| e == "log"))
                    .map(|(p, b)| (p.clone(), b.clone()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(logs(&kept), logs(&b_files), "segments kept byte for byte");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_the_catalog_is_refused_and_nothing_is_touched() {
    let mut server = TestServer::start_fresh().expect("server starts");
    let _storage = three_streams_then_kill(&mut server).await;
    let log = server.data_dir().join("meta/log/raft.log");
    let mut bytes = std::fs::read(&log).unwrap();
    let at = bytes
        .windows(10)
        .position(|w| w == b"\"name\":\"a\"")
        .unwrap();
    bytes[at + 8] = b'q';
    std::fs::write(&log, &bytes).unwrap();
    let before = tree(server.data_dir());
    let (code, err) = second_server(server.data_dir());
    assert_ne!(code, Some(0), "a damaged catalog must not start:\n{err}");
    assert!(err.contains("damaged"), "the error says so:\n{err}");
    let after = tree(server.data_dir());
    assert!(before == after, "a refused start changed files");
    // Repaired by the operator (the byte put back), the server starts with everything.
    bytes[at + 8] = b'a';
    std::fs::write(&log, &bytes).unwrap();
    server.restart().unwrap();
    let client = server.client().await.unwrap();
    assert_eq!(scalar_i64(&client, "SELECT v FROM c").await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_frame_takes_only_its_stream_offline() {
    let mut server = TestServer::start_fresh().expect("server starts");
    let client = server.client().await.unwrap();
    client
        .batch_execute("CREATE STREAM good (v INT); CREATE STREAM bad (v VARCHAR)")
        .await
        .unwrap();
    for i in 0..3 {
        client
            .batch_execute(&format!(
                "INSERT INTO good VALUES ({i}); INSERT INTO bad VALUES ('row-{i}-abcdefgh')"
            ))
            .await
            .unwrap();
    }
    let bad = storage_of(&client, "bad").await;
    drop(client);
    server.kill9();
    let segment = server
        .data_dir()
        .join("topics")
        .join(&bad)
        .join("0")
        .join("00000000000000000000.log");
    let mut bytes = std::fs::read(&segment).unwrap();
    // Damage the first frame's body; valid frames follow, so this is not a torn tail.
    let at = bytes
        .windows(12)
        .position(|w| w == b"row-0-abcdef")
        .unwrap();
    bytes[at] ^= 0x01;
    std::fs::write(&segment, &bytes).unwrap();
    server
        .restart()
        .expect("the server starts despite one corrupt partition");
    let client = server.client().await.unwrap();
    assert_eq!(
        scalar_i64(&client, "SELECT sum(v) FROM good")
            .await
            .unwrap(),
        3
    );
    client
        .batch_execute("INSERT INTO good VALUES (10)")
        .await
        .unwrap();
    let err = client
        .simple_query("SELECT * FROM bad")
        .await
        .expect_err("an offline stream is refused");
    let db = err.as_db_error().expect("an error response");
    assert_eq!(db.code().code(), "XX001", "{}", db.message());
    assert!(db.message().contains("offline"), "{}", db.message());
    assert_eq!(
        sqlstate(client.batch_execute("INSERT INTO bad VALUES ('x')").await),
        "XX001"
    );
    let status = rows(
        &client,
        "SELECT status, reason FROM eddy.streams WHERE name = 'bad'",
    )
    .await
    .unwrap();
    assert_eq!(status[0][0].as_deref(), Some("offline"));
    assert!(
        status[0][1].as_deref().unwrap_or("").contains("CRC"),
        "{status:?}"
    );
    assert_eq!(
        std::fs::read(&segment).unwrap(),
        bytes,
        "the damaged segment is left as it is"
    );
}

/// A tmpfs of `mb` MiB mounted at `dir`, unmounted on drop. Needs root (CI runs as root).
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, mb: u32) -> SmallDisk {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a {mb} MiB tmpfs at {} failed: this test needs root",
            dir.display()
        );
        SmallDisk(dir.to_path_buf())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system of `path` with a file there until a write fails.
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![7u8; 64 << 10];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_statement_whole_and_the_log_recovers_by_itself() {
    use bytes::Bytes;
    use futures::{SinkExt, pin_mut};
    let outer = tempfile::Builder::new()
        .prefix("eddy-full-")
        .tempdir()
        .unwrap();
    let disk = SmallDisk::mount(&outer.path().join("disk"), 64);
    let mut server = TestServer::start_with(&disk.0, &[], &[]).expect("server starts");
    let client = server.client().await.unwrap();
    client
        .batch_execute(
            "CREATE STREAM s (id BIGINT KEY, pad VARCHAR) WITH (partitions = 3); \
             INSERT INTO s VALUES (0, 'first')",
        )
        .await
        .unwrap();
    let data: String = (1..=100_000)
        .map(|i| format!("{i}\tpadding-padding-padding-padding-{i}\n"))
        .collect();
    async fn copy(
        client: &tokio_postgres::Client,
        data: &str,
    ) -> Result<u64, tokio_postgres::Error> {
        let sink = client.copy_in::<_, Bytes>("COPY s FROM STDIN").await?;
        pin_mut!(sink);
        for piece in data.as_bytes().chunks(1 << 20) {
            sink.as_mut().send(Bytes::copy_from_slice(piece)).await?;
        }
        sink.finish().await
    }
    let filler = disk.0.join("filler");
    fill(&filler);
    let err = copy(&client, &data)
        .await
        .expect_err("a COPY onto a full disk fails");
    let db = err.as_db_error().expect("an error response");
    assert_eq!(db.code().code(), "53100", "{}", db.message());
    assert_eq!(
        scalar_i64(&client, "SELECT count(*) FROM s").await.unwrap(),
        1,
        "nothing of the failed COPY is visible"
    );
    // Space comes back: the next statements work without a restart.
    std::fs::remove_file(&filler).unwrap();
    client
        .batch_execute("INSERT INTO s VALUES (-1, 'after')")
        .await
        .unwrap();
    assert_eq!(copy(&client, &data).await.unwrap(), 100_000);
    let want = "SELECT count(*), sum(id) FROM s";
    let before = rows(&client, want).await.unwrap();
    assert_eq!(before[0][0].as_deref(), Some("100002"));
    drop(client);
    server.kill9();
    server.restart().unwrap();
    let client = server.client().await.unwrap();
    assert_eq!(
        rows(&client, want).await.unwrap(),
        before,
        "the same after a kill -9"
    );
    drop(client);
    server.kill9();
    drop(disk);
}
