//! What the group tests share: loopback listeners for a cluster, waiting for a condition, and
//! the frames partition tests write and read back. Each test binary uses a part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{AsArray, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use eddy_storage::{EncodedFrame, PartitionLog};
use tokio::net::TcpListener;

/// One frame per element of `ids`, each a batch of those ids.
pub fn frames(ids: &[&[i64]]) -> Vec<EncodedFrame> {
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
    ids.iter()
        .map(|ids| {
            let column = Int64Array::from(ids.to_vec());
            let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(column)]).unwrap();
            EncodedFrame::encode(&batch, 0, 0).unwrap()
        })
        .collect()
}

/// Every readable row's id, in offset order.
pub fn rows(log: &PartitionLog) -> Vec<i64> {
    log.reader(0)
        .unwrap()
        .flat_map(|b| {
            let b = b.unwrap();
            b.batch
                .column(0)
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        })
        .collect()
}

/// A listener on `addr` again, for a node restarted on its own address. The address may
/// still be held for a moment by the stopped node's listener (its transport's task ends
/// after the stop returns) or by another test's socket the kernel gave the freed port to, so
/// the bind is retried for a while (a CI run once failed `AddrInUse` here).
pub async fn listen_again(addr: &str) -> TcpListener {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => return listener,
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("cannot listen on {addr} again: {e}"),
        }
    }
}

/// A listener on an ephemeral loopback port for each of nodes `1..=n`, and the peer map
/// (id → address) they make.
pub async fn listeners(n: u64) -> (BTreeMap<u64, String>, Vec<(u64, TcpListener)>) {
    let mut listeners = Vec::new();
    let mut peers = BTreeMap::new();
    for id in 1..=n {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        peers.insert(id, listener.local_addr().unwrap().to_string());
        listeners.push((id, listener));
    }
    (peers, listeners)
}

/// Waits until `check` holds, failing with `what` after 20 s.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
