//! `Transport`: one TCP connection per pair of nodes, carrying every group's messages.
//!
//! The node with the lower id dials (and dials again, with backoff, whenever the connection is
//! gone); the other accepts. Both send requests on the one connection and match replies to
//! requests by id, so the RPCs of all groups interleave on it. A request waits for a
//! connection, then for its reply, at most the time its caller allows; a connection that breaks
//! fails every request waiting on it. Requests a node receives are handed to the [`Handler`]
//! registered for their group, each on its own task (openraft keeps one request in flight per
//! group and peer, so a group's order is its sender's). The writer coalesces whatever is
//! queued into one vectored write, each frame's head and its body as they are: a body
//! (a batch of entries, megabytes during a COPY) is never copied to be sent.
//!
//! There is no authentication: anyone who can reach the peer port can join the conversation.
//! Peers must listen on a trusted network (README says so).

use std::collections::{BTreeMap, HashMap};
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use parking_lot::{Mutex, RwLock};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::wire::{self, Envelope, HEAD_LEN, Kind, MAX_MESSAGE_BYTES};

/// How long an accepted connection may take to say who it is.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a dial may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a request waits for a connection to its peer before it is refused as
/// unreachable (a peer that is down must not hold a write for its whole timeout: the caller
/// looks for another leader).
const CONNECTION_WAIT: Duration = Duration::from_secs(1);
/// Waits between dials of a peer that is down, from the first to the longest.
const REDIAL_MIN: Duration = Duration::from_millis(50);
const REDIAL_MAX: Duration = Duration::from_millis(1000);

/// What a node does with the requests of one group.
pub trait Handler: Send + Sync + 'static {
    /// Answers a request's body with the reply's body, or says why it cannot.
    fn handle(&self, kind: Kind, body: Bytes) -> BoxFuture<'static, Result<Bytes>>;

    /// The connection to `peer` closed (it may have died). Must not block.
    fn peer_lost(&self, _peer: u64) {}
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("me", &self.me)
            .field("peers", &self.peers)
            .finish_non_exhaustive()
    }
}

/// This node's end of every peer connection.
pub struct Transport {
    me: u64,
    peers: BTreeMap<u64, String>,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    /// Bumped whenever a connection is added, so requests waiting for one look again.
    conns_changed: watch::Sender<u64>,
    groups: RwLock<HashMap<u64, Arc<dyn Handler>>>,
    next_id: AtomicU64,
    /// Messages and socket writes this node has sent, for [`Transport::sent`].
    messages: AtomicU64,
    writes: Arc<AtomicU64>,
    stop: CancellationToken,
    tasks: Tasks,
    /// When the transport started: [`Transport::last_heard`]'s clock.
    born: std::time::Instant,
    /// Per peer, when it last sent this node a message: milliseconds since `born`, plus
    /// one (0: never).
    heard: HashMap<u64, AtomicU64>,
}

/// The transport's tasks, so that shutdown waits for them; finished ones are reaped as new
/// ones start.
#[derive(Default)]
struct Tasks(Mutex<JoinSet<()>>);

impl Tasks {
    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut set = self.0.lock();
        while set.try_join_next().is_some() {}
        set.spawn(task);
    }

    async fn wait(&self) {
        let mut set = std::mem::take(&mut *self.0.lock());
        while set.join_next().await.is_some() {}
    }
}

/// A frame queued to be sent: its head ([`Envelope::head`]) and its body; for a request, its
/// id, so that one whose caller gave up before it went out is not sent.
struct Outgoing {
    head: [u8; HEAD_LEN],
    body: Bytes,
    request: Option<u64>,
}

impl Outgoing {
    fn of(envelope: Envelope) -> Result<Outgoing> {
        Ok(Outgoing {
            head: envelope.head()?,
            request: envelope.kind.is_request().then_some(envelope.id),
            body: envelope.body,
        })
    }
}

/// The most frames one write takes (two slices each, well under the kernel's `IOV_MAX`).
const WRITE_BATCH: usize = 256;

/// Writes `batch` in as few system calls as the socket takes it.
async fn write_batch(socket: &mut OwnedWriteHalf, batch: &[Outgoing]) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = batch
        .iter()
        .flat_map(|m| [IoSlice::new(&m.head), IoSlice::new(&m.body)])
        .collect();
    let mut slices = &mut slices[..];
    while !slices.is_empty() {
        let n = socket.write_vectored(slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, n);
    }
    Ok(())
}

/// The read half of a peer connection, noting when bytes last came in: a peer is heard as
/// soon as a frame starts arriving, not once a large one (megabytes of entries, on a busy
/// machine) has been read whole.
struct Listening {
    io: OwnedReadHalf,
    /// The transport and the peer, once the peer is known (after its hello).
    heard: Option<(Arc<Transport>, u64)>,
}

impl AsyncRead for Listening {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before
            && let Some((transport, peer)) = &this.heard
        {
            transport.heard_from(*peer);
        }
        polled
    }
}

struct Conn {
    peer: u64,
    out: mpsc::UnboundedSender<Outgoing>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Envelope>>>,
    closed: CancellationToken,
}

impl Conn {
    fn close(&self) {
        self.closed.cancel();
        // Dropping the senders wakes every waiting request with an error.
        self.pending.lock().clear();
    }
}

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_type::<u32>()
        .max_frame_length(MAX_MESSAGE_BYTES)
        .new_codec()
}

impl Transport {
    /// Starts serving `listener` as node `me` among `peers` (id → `host:port`, this node's
    /// own entry included), and dialing the peers with higher ids.
    pub fn start(me: u64, listener: TcpListener, peers: BTreeMap<u64, String>) -> Arc<Transport> {
        Self::launch(me, Some(listener), peers)
    }

    /// The transport of a node that is a cluster of one: no peers, nothing listened on.
    pub fn alone(me: u64) -> Arc<Transport> {
        Self::launch(me, None, BTreeMap::from([(me, String::new())]))
    }

    fn launch(
        me: u64,
        listener: Option<TcpListener>,
        peers: BTreeMap<u64, String>,
    ) -> Arc<Transport> {
        let transport = Arc::new(Transport {
            me,
            conns: Mutex::new(HashMap::new()),
            conns_changed: watch::channel(0).0,
            groups: RwLock::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            messages: AtomicU64::new(0),
            writes: Arc::new(AtomicU64::new(0)),
            stop: CancellationToken::new(),
            tasks: Tasks::default(),
            born: std::time::Instant::now(),
            heard: peers
                .keys()
                .filter(|p| **p != me)
                .map(|p| (*p, AtomicU64::new(0)))
                .collect(),
            peers,
        });
        if let Some(listener) = listener {
            let t = transport.clone();
            transport
                .tasks
                .spawn(async move { t.accept_loop(listener).await });
        }
        for (&peer, addr) in &transport.peers {
            if peer > me {
                let t = transport.clone();
                let addr = addr.clone();
                transport
                    .tasks
                    .spawn(async move { t.dial_loop(peer, addr).await });
            }
        }
        transport
    }

    /// This node's id.
    pub fn node_id(&self) -> u64 {
        self.me
    }

    /// The peers, this node included: id → peer address.
    pub fn peers(&self) -> &BTreeMap<u64, String> {
        &self.peers
    }

    /// Messages (requests and replies) and socket writes this node has sent so far: the writer
    /// coalesces what is queued, so writes ≤ messages.
    pub fn sent(&self) -> (u64, u64) {
        (
            self.messages.load(Ordering::Relaxed),
            self.writes.load(Ordering::Relaxed),
        )
    }

    /// Whether [`Transport::shutdown`] was called.
    pub fn is_stopped(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Whether a connection to `peer` is up now.
    pub fn connected(&self, peer: u64) -> bool {
        self.conns.lock().contains_key(&peer)
    }

    /// Changes whenever a connection comes up.
    pub fn connections(&self) -> watch::Receiver<u64> {
        self.conns_changed.subscribe()
    }

    /// How long ago `peer` last sent this node a message (`None`: never, since this node
    /// started, or not a peer).
    pub fn last_heard(&self, peer: u64) -> Option<Duration> {
        let at = self.heard.get(&peer)?.load(Ordering::Relaxed);
        let at = Duration::from_millis(at.checked_sub(1)?);
        Some(self.born.elapsed().saturating_sub(at))
    }

    /// Notes that bytes came in from `peer` now.
    fn heard_from(&self, peer: u64) {
        if let Some(heard) = self.heard.get(&peer) {
            heard.store(
                self.born.elapsed().as_millis() as u64 + 1,
                Ordering::Relaxed,
            );
        }
    }

    /// Whether this node and the peers it heard from within `within` are a majority of
    /// `voters` — or it has not run that long yet (its peers had no time to speak).
    pub fn hears_majority(&self, voters: &[u64], within: Duration) -> bool {
        if self.born.elapsed() < within {
            return true;
        }
        let heard = voters
            .iter()
            .filter(|v| **v == self.me || self.last_heard(**v).is_some_and(|d| d < within))
            .count();
        heard > voters.len() / 2
    }

    /// Routes `group`'s requests to `handler` (replacing any before it).
    pub fn register(&self, group: u64, handler: Arc<dyn Handler>) {
        self.groups.write().insert(group, handler);
    }

    /// Stops routing `group`'s requests; they are answered with a failure.
    pub fn unregister(&self, group: u64) {
        self.groups.write().remove(&group);
    }

    /// Closes every connection and stops every task; requests in flight fail.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        for conn in self.conns.lock().drain().map(|(_, c)| c) {
            conn.close();
        }
        self.groups.write().clear();
        self.tasks.wait().await;
    }

    /// Sends a request to `peer` for `group` and waits, at most `timeout` in all, for its
    /// reply's body. [`Error::Unreachable`] means the request was not sent; [`Error::NoReply`]
    /// that it was, and the peer may have acted on it.
    pub async fn call(
        &self,
        peer: u64,
        kind: Kind,
        group: u64,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes> {
        let unreachable = |why: String| Error::Unreachable { node: peer, why };
        let sent = std::sync::atomic::AtomicBool::new(false);
        let exchange = async {
            let conn = tokio::time::timeout(CONNECTION_WAIT, self.connection(peer))
                .await
                .map_err(|_| unreachable(format!("not connected within {CONNECTION_WAIT:?}")))??;
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = oneshot::channel();
            conn.pending.lock().insert(id, tx);
            let frame = Outgoing::of(Envelope {
                id,
                kind,
                group,
                body,
            });
            let frame = match frame {
                Ok(frame) => frame,
                Err(e) => {
                    conn.pending.lock().remove(&id);
                    return Err(e);
                }
            };
            self.messages.fetch_add(1, Ordering::Relaxed);
            if conn.closed.is_cancelled() || conn.out.send(frame).is_err() {
                conn.pending.lock().remove(&id);
                return Err(unreachable("the connection closed".into()));
            }
            sent.store(true, Ordering::Relaxed);
            let reply = rx.await.map_err(|_| Error::NoReply {
                node: peer,
                why: "the connection closed before the reply".into(),
            })?;
            match reply.kind {
                Kind::Reply => Ok(reply.body),
                Kind::Failure => Err(unreachable(
                    String::from_utf8_lossy(&reply.body).into_owned(),
                )),
                other => Err(Error::Protocol(format!(
                    "a {other:?} in reply to a request"
                ))),
            }
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) if sent.load(Ordering::Relaxed) => Err(Error::NoReply {
                node: peer,
                why: format!("no reply within {timeout:?}"),
            }),
            Err(_) => Err(unreachable(format!("no connection within {timeout:?}"))),
        }
    }

    /// The connection to `peer`, waiting until there is one (it is dialed by whichever of the
    /// two has the lower id, in the background).
    async fn connection(&self, peer: u64) -> Result<Arc<Conn>> {
        if peer == self.me || !self.peers.contains_key(&peer) {
            return Err(Error::Unreachable {
                node: peer,
                why: "not a peer of this node".into(),
            });
        }
        let mut changed = self.conns_changed.subscribe();
        loop {
            if let Some(conn) = self.conns.lock().get(&peer) {
                return Ok(conn.clone());
            }
            if self.stop.is_cancelled() || changed.changed().await.is_err() {
                return Err(Error::Unreachable {
                    node: peer,
                    why: "this node is shutting down".into(),
                });
            }
        }
    }

    async fn accept_loop(self: Arc<Self>, listener: TcpListener) {
        loop {
            let accepted = tokio::select! {
                _ = self.stop.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, from)) => {
                    let t = self.clone();
                    self.tasks.spawn(async move {
                        if let Err(e) = t.clone().accepted(stream).await {
                            tracing::warn!(%from, "peer connection refused: {e}");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!("accepting a peer connection: {e}");
                    tokio::time::sleep(REDIAL_MIN).await;
                }
            }
        }
    }

    async fn accepted(self: Arc<Self>, stream: TcpStream) -> Result<()> {
        stream.set_nodelay(true).ok();
        let (read, write) = stream.into_split();
        let mut frames = FramedRead::new(
            Listening {
                io: read,
                heard: None,
            },
            codec(),
        );
        let hello = tokio::time::timeout(HELLO_TIMEOUT, frames.next())
            .await
            .map_err(|_| Error::Protocol("no hello".into()))?
            .ok_or_else(|| Error::Protocol("closed before its hello".into()))?
            .map_err(|e| Error::Protocol(format!("reading a hello: {e}")))?;
        let hello = Envelope::decode(hello.freeze())?;
        if hello.kind != Kind::Hello {
            return Err(Error::Protocol(format!("{:?} before a hello", hello.kind)));
        }
        let peer: u64 = wire::from_body(&hello.body, "a hello")?;
        if peer >= self.me || !self.peers.contains_key(&peer) {
            return Err(Error::Protocol(format!(
                "node {peer} is not a peer that dials node {}",
                self.me
            )));
        }
        self.run(peer, frames, write).await;
        Ok(())
    }

    async fn dial_loop(self: Arc<Self>, peer: u64, addr: String) {
        let mut wait = REDIAL_MIN;
        while !self.stop.is_cancelled() {
            let dialed = tokio::select! {
                _ = self.stop.cancelled() => return,
                dialed = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(&addr)) => dialed,
            };
            match dialed {
                Ok(Ok(stream)) => {
                    stream.set_nodelay(true).ok();
                    let (read, mut write) = stream.into_split();
                    let hello = Outgoing::of(Envelope {
                        id: 0,
                        kind: Kind::Hello,
                        group: 0,
                        body: wire::to_body(&self.me).unwrap_or_default(),
                    });
                    let said = match hello {
                        Ok(hello) => write_batch(&mut write, &[hello]).await.is_ok(),
                        Err(_) => false,
                    };
                    if said {
                        wait = REDIAL_MIN;
                        self.clone()
                            .run(
                                peer,
                                FramedRead::new(
                                    Listening {
                                        io: read,
                                        heard: None,
                                    },
                                    codec(),
                                ),
                                write,
                            )
                            .await;
                    }
                }
                Ok(Err(e)) => tracing::debug!(peer, %addr, "dialing a peer: {e}"),
                Err(_) => tracing::debug!(peer, %addr, "dialing a peer timed out"),
            }
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(REDIAL_MAX);
        }
    }

    /// Serves one connection until it breaks or the transport stops.
    async fn run(
        self: Arc<Self>,
        peer: u64,
        mut frames: FramedRead<Listening, LengthDelimitedCodec>,
        mut socket: OwnedWriteHalf,
    ) {
        frames.get_mut().heard = Some((self.clone(), peer));
        let (out, mut queue) = mpsc::unbounded_channel::<Outgoing>();
        let conn = Arc::new(Conn {
            peer,
            out,
            pending: Mutex::new(HashMap::new()),
            closed: CancellationToken::new(),
        });
        if let Some(old) = self.conns.lock().insert(peer, conn.clone()) {
            old.close();
        }
        self.conns_changed.send_modify(|n| *n += 1);
        tracing::debug!(me = self.me, peer, "peer connected");

        let closed = conn.closed.clone();
        let writes = self.writes.clone();
        let writer = async {
            let mut batch = Vec::with_capacity(WRITE_BATCH);
            while let Some(first) = queue.recv().await {
                batch.push(first);
                while batch.len() < WRITE_BATCH
                    && let Ok(next) = queue.try_recv()
                {
                    batch.push(next);
                }
                // A request whose caller stopped waiting (openraft gives an AppendEntries
                // one heartbeat interval, then sends it again) is dropped unsent: on a busy
                // connection, megabytes of entries would otherwise go out twice or more.
                {
                    let mut pending = conn.pending.lock();
                    batch.retain(|m| match m.request {
                        Some(id) if pending.get(&id).is_none_or(|tx| tx.is_closed()) => {
                            pending.remove(&id);
                            false
                        }
                        _ => true,
                    });
                }
                if write_batch(&mut socket, &batch).await.is_err() {
                    break;
                }
                batch.clear();
                writes.fetch_add(1, Ordering::Relaxed);
            }
        };
        let reader = async {
            while let Some(frame) = frames.next().await {
                let Ok(frame) = frame else { break };
                let Ok(envelope) = Envelope::decode(frame.freeze()) else {
                    break;
                };
                if envelope.kind.is_request() {
                    self.serve(&conn, envelope);
                } else if matches!(envelope.kind, Kind::Reply | Kind::Failure) {
                    if let Some(tx) = conn.pending.lock().remove(&envelope.id) {
                        let _ = tx.send(envelope);
                    }
                } else {
                    break;
                }
            }
        };
        tokio::select! {
            _ = writer => {}
            _ = reader => {}
            _ = closed.cancelled() => {}
            _ = self.stop.cancelled() => {}
        }
        conn.close();
        let current = {
            let mut conns = self.conns.lock();
            let current = conns.get(&peer).is_some_and(|c| Arc::ptr_eq(c, &conn));
            if current {
                conns.remove(&peer);
            }
            current
        };
        tracing::debug!(me = self.me, peer = conn.peer, "peer connection closed");
        // Not when a newer connection replaced this one, nor when this node stops.
        if current && !self.stop.is_cancelled() {
            let handlers: Vec<Arc<dyn Handler>> = self.groups.read().values().cloned().collect();
            for handler in handlers {
                handler.peer_lost(peer);
            }
        }
    }

    /// Answers one request on its own task.
    fn serve(&self, conn: &Arc<Conn>, request: Envelope) {
        let handler = self.groups.read().get(&request.group).cloned();
        let conn = conn.clone();
        let stop = self.stop.clone();
        self.messages.fetch_add(1, Ordering::Relaxed);
        self.tasks.spawn(async move {
            let (kind, body) = match handler {
                Some(handler) => {
                    let answer = tokio::select! {
                        _ = stop.cancelled() => return,
                        answer = handler.handle(request.kind, request.body) => answer,
                    };
                    match answer {
                        Ok(body) => (Kind::Reply, body),
                        Err(e) => (Kind::Failure, Bytes::from(e.to_string())),
                    }
                }
                None => (
                    Kind::Failure,
                    Bytes::from(format!("no raft group {} on this node", request.group)),
                ),
            };
            let reply = Outgoing::of(Envelope {
                id: request.id,
                kind,
                group: request.group,
                body,
            })
            .or_else(|e| {
                Outgoing::of(Envelope {
                    id: request.id,
                    kind: Kind::Failure,
                    group: request.group,
                    body: Bytes::from(e.to_string()),
                })
            });
            if let Ok(reply) = reply {
                let _ = conn.out.send(reply);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;

    impl Handler for Echo {
        fn handle(&self, kind: Kind, body: Bytes) -> BoxFuture<'static, Result<Bytes>> {
            Box::pin(async move {
                if kind == Kind::Vote {
                    return Err(Error::Protocol("votes refused".into()));
                }
                let mut out = body.to_vec();
                out.reverse();
                Ok(Bytes::from(out))
            })
        }
    }

    async fn nodes(n: u64) -> Vec<Arc<Transport>> {
        let mut listeners = Vec::new();
        let mut peers = BTreeMap::new();
        for id in 1..=n {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            peers.insert(id, listener.local_addr().unwrap().to_string());
            listeners.push((id, listener));
        }
        listeners
            .into_iter()
            .map(|(id, l)| Transport::start(id, l, peers.clone()))
            .collect()
    }

    const SECOND: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn requests_go_both_ways_on_one_connection_per_pair() {
        let nodes = nodes(3).await;
        for node in &nodes {
            node.register(7, Arc::new(Echo));
        }
        for from in &nodes {
            for to in &nodes {
                if from.node_id() == to.node_id() {
                    continue;
                }
                let reply = from
                    .call(
                        to.node_id(),
                        Kind::AppendEntries,
                        7,
                        Bytes::from_static(b"abc"),
                        SECOND,
                    )
                    .await
                    .unwrap();
                assert_eq!(&reply[..], b"cba");
            }
        }
        for node in &nodes {
            assert_eq!(node.conns.lock().len(), 2, "node {}", node.node_id());
        }
        for node in nodes {
            node.shutdown().await;
        }
    }

    #[tokio::test]
    async fn an_unknown_group_and_a_refusal_are_errors_not_hangs() {
        let nodes = nodes(2).await;
        nodes[1].register(1, Arc::new(Echo));
        let unknown = nodes[0]
            .call(2, Kind::AppendEntries, 99, Bytes::new(), SECOND)
            .await
            .unwrap_err();
        assert!(
            unknown.to_string().contains("no raft group 99"),
            "{unknown}"
        );
        let refused = nodes[0]
            .call(2, Kind::Vote, 1, Bytes::new(), SECOND)
            .await
            .unwrap_err();
        assert!(refused.to_string().contains("votes refused"), "{refused}");
        for node in nodes {
            node.shutdown().await;
        }
    }

    #[tokio::test]
    async fn a_peer_that_is_down_times_out_then_is_reached_when_it_comes_back() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let mine = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peers = BTreeMap::from([
            (1, mine.local_addr().unwrap().to_string()),
            (2, addr.clone()),
        ]);
        let one = Transport::start(1, mine, peers.clone());
        let err = one
            .call(
                2,
                Kind::AppendEntries,
                1,
                Bytes::new(),
                Duration::from_millis(300),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Unreachable { node: 2, .. }), "{err}");

        let two = Transport::start(2, TcpListener::bind(&addr).await.unwrap(), peers);
        two.register(1, Arc::new(Echo));
        let reply = one
            .call(2, Kind::AppendEntries, 1, Bytes::from_static(b"xy"), SECOND)
            .await
            .unwrap();
        assert_eq!(&reply[..], b"yx");

        // The peer goes away: a request fails, it does not wait for ever.
        two.shutdown().await;
        let err = one
            .call(
                2,
                Kind::AppendEntries,
                1,
                Bytes::new(),
                Duration::from_millis(300),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Unreachable { .. } | Error::NoReply { .. }),
            "{err}"
        );
        one.shutdown().await;
    }

    #[tokio::test]
    async fn a_stranger_is_refused() {
        let nodes = nodes(2).await;
        let addr = nodes[1].peers()[&2].clone();
        use futures::SinkExt;
        let stream = TcpStream::connect(&addr).await.unwrap();
        let mut sink = tokio_util::codec::FramedWrite::new(stream, codec());
        let hello = Envelope {
            id: 0,
            kind: Kind::Hello,
            group: 0,
            body: wire::to_body(&9u64).unwrap(),
        };
        sink.send(hello.encode()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!nodes[1].connected(9));
        for node in nodes {
            node.shutdown().await;
        }
    }
}
