//! What the group tests share: loopback listeners for a cluster, and waiting for a condition.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::net::TcpListener;

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
