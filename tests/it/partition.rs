//! One property of a 3-node cluster (issue 14): **a cut network loses and duplicates no
//! acknowledged row; the cut-off node refuses writes at once, naming the partition, while
//! the majority goes on**. Node 3's peers reach it only through a TCP proxy (its `--peers`
//! entry is the proxy; it listens behind it with `--peer-listen-addr`), so cutting the proxy
//! cuts node 3 off from both others. Writers run on every node before, during and after the
//! cut; afterwards every node, node 3 included once healed, holds every acknowledged row once,
//! at the same offsets.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::cluster::{free_ports, start_three_with};
use crate::failover::{Ledger, each_acknowledged_row_once_everywhere, writer};
use crate::proxy::Proxy;

/// How long writers run before the cut and after healing.
const WRITE_FOR: Duration = Duration::from_millis(2000);
/// How long node 3 is cut off: several leases (1 s).
const CUT_FOR: Duration = Duration::from_secs(5);

/// Acknowledged rows written through node `node` (writer keys start `n{node}-`).
fn acked_through(ledger: &Mutex<Ledger>, node: usize) -> usize {
    let prefix = format!("n{node}-");
    let l = ledger.lock().expect("ledger");
    l.acked.iter().filter(|k| k.starts_with(&prefix)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_node_refuses_writes_the_majority_goes_on_and_healing_loses_nothing() {
    let ports = free_ports(3);
    // Node 3 listens on ports[2]; its peers dial the proxy.
    let proxy = Proxy::start(ports[2]).await.expect("proxy");
    let peers = format!(
        "1@127.0.0.1:{},2@127.0.0.1:{},3@127.0.0.1:{}",
        ports[0], ports[1], proxy.port
    );
    let behind = format!("127.0.0.1:{}", ports[2]);
    // Starting waits for each node's listening line: off the runtime's threads, which the
    // proxy needs meanwhile.
    let nodes = tokio::task::block_in_place(|| {
        start_three_with(&peers, |id| match id {
            3 => vec!["--peer-listen-addr".into(), behind.clone()],
            _ => Vec::new(),
        })
    });
    let first = nodes[0].client().await.expect("connect");
    first
        .batch_execute(
            "CREATE STREAM f (k VARCHAR KEY, seq BIGINT, node BIGINT) WITH (partitions = 3)",
        )
        .await
        .expect("create");
    drop(first);

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<JoinHandle<()>> = (0..3)
        .map(|i| writer(&nodes[i], i + 1, 0, ledger.clone(), stop.clone()))
        .collect();
    tokio::time::sleep(WRITE_FOR).await;

    proxy.set_down(true);
    let (before_1, before_2) = (acked_through(&ledger, 1), acked_through(&ledger, 2));
    let refused_before = ledger.lock().expect("ledger").refused.len();
    tokio::time::sleep(CUT_FOR).await;
    let (during_1, during_2) = (
        acked_through(&ledger, 1) - before_1,
        acked_through(&ledger, 2) - before_2,
    );
    let refused_3: Vec<(String, String)> = ledger.lock().expect("ledger").refused[refused_before..]
        .iter()
        .filter(|(node, _, _)| *node == 3)
        .map(|(_, code, message)| (code.clone(), message.clone()))
        .collect();
    proxy.set_down(false);
    tokio::time::sleep(WRITE_FOR).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer task");
    }

    // The majority went on: both its nodes got writes acknowledged while node 3 was cut off.
    assert!(
        during_1 > 0 && during_2 > 0,
        "the majority took no writes while node 3 was cut off: {during_1} via node 1, \
         {during_2} via node 2"
    );
    // Node 3 refused its writes with 57P03 naming the partition, and not one per write
    // timeout (5 s): once cut off for a lease, a write is refused before it is proposed.
    assert!(
        refused_3.len() > 2,
        "node 3 refused {} writes in {CUT_FOR:?} of the cut: {refused_3:?}",
        refused_3.len()
    );
    assert!(
        refused_3
            .iter()
            .all(|(code, message)| code == "57P03" && message.contains("partition")),
        "refusals name the partition: {refused_3:?}"
    );

    let (acked, unknown) = {
        let l = ledger.lock().expect("ledger");
        (l.acked.clone(), l.unknown.clone())
    };
    let answers = each_acknowledged_row_once_everywhere(&nodes, &acked, &unknown).await;
    eprintln!(
        "cut for {CUT_FOR:?}: {} rows acknowledged ({during_1} + {during_2} by the majority \
         during the cut), {} refusals by node 3, {} unknown, {} stored",
        acked.len(),
        refused_3.len(),
        unknown.len(),
        answers[0].len()
    );
}
