//! openraft's network over the [`Transport`]: `GroupNetwork` sends one group's RPCs to its
//! peers, `RaftHandler` answers the RPCs a peer sends it. Bodies are the openraft messages,
//! postcard-encoded; a reply is the `Result` openraft's handler returned, so a remote refusal
//! reaches the sender as openraft's `RemoteError`.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use openraft::error::{
    ClientWriteError, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, ClientWriteResponse, InstallSnapshotRequest,
    InstallSnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::rejoin::Rejoin;
use crate::takeover::Takeover;
use crate::transport::{Handler, Transport};
use crate::wire::{self, Kind};
use crate::{Request, TypeConfig};

/// A group's way to its peers.
#[derive(Clone)]
pub(crate) struct GroupNetwork {
    pub transport: Arc<Transport>,
    pub group: u64,
}

impl RaftNetworkFactory<TypeConfig> for GroupNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> PeerClient {
        PeerClient {
            transport: self.transport.clone(),
            group: self.group,
            target,
        }
    }
}

/// One group's RPCs to one peer.
pub(crate) struct PeerClient {
    transport: Arc<Transport>,
    group: u64,
    target: u64,
}

impl PeerClient {
    async fn rpc<Req, Resp, E>(
        &self,
        kind: Kind,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<u64, BasicNode, RaftError<u64, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let body = wire::to_body(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let reply = self
            .transport
            .call(self.target, kind, self.group, body, option.hard_ttl())
            .await
            .map_err(|e| match e {
                Error::Unreachable { .. } => RPCError::Unreachable(Unreachable::new(&e)),
                _ => RPCError::Network(NetworkError::new(&e)),
            })?;
        let answer: Result<Resp, RaftError<u64, E>> = wire::from_body(&reply, "an RPC reply")
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.rpc(Kind::AppendEntries, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        self.rpc(Kind::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.rpc(Kind::Vote, &rpc, &option).await
    }
}

/// What a forwarded client write is answered with.
pub(crate) type ClientWriteAnswer =
    Result<ClientWriteResponse<TypeConfig>, RaftError<u64, ClientWriteError<u64, BasicNode>>>;

/// Answers a peer's RPCs for one group with its local `Raft`.
pub(crate) struct RaftHandler {
    pub raft: Raft<TypeConfig>,
    pub rejoin: Arc<Rejoin>,
    pub takeover: Arc<Takeover>,
}

impl Handler for RaftHandler {
    fn handle(&self, kind: Kind, body: Bytes) -> BoxFuture<'static, Result<Bytes>> {
        let raft = self.raft.clone();
        let rejoin = self.rejoin.clone();
        let takeover = self.takeover.clone();
        Box::pin(async move {
            match kind {
                Kind::AppendEntries => {
                    let request: AppendEntriesRequest<TypeConfig> =
                        wire::from_body(&body, "an AppendEntries request")?;
                    rejoin.heard(request.leader_commit.map_or(0, |l| l.index));
                    wire::to_body(&raft.append_entries(request).await)
                }
                Kind::Vote => {
                    let request: VoteRequest<u64> = wire::from_body(&body, "a Vote request")?;
                    if !rejoin.may_vote() {
                        let metrics = raft.metrics().borrow().clone();
                        let refused: Result<VoteResponse<u64>, RaftError<u64>> = Ok(VoteResponse {
                            vote: metrics.vote,
                            vote_granted: false,
                            last_log_id: None,
                        });
                        return wire::to_body(&refused);
                    }
                    wire::to_body(&raft.vote(request).await)
                }
                Kind::Probe => {
                    // Index 0 is the initial membership every voter writes; an entry past it
                    // exists only once a leader was elected.
                    let last = raft.metrics().borrow().last_log_index.unwrap_or(0);
                    wire::to_body(&last)
                }
                Kind::Standing => {
                    let lost: u64 = wire::from_body(&body, "a standing request")?;
                    wire::to_body(&takeover.standing(lost).await)
                }
                Kind::InstallSnapshot => {
                    let request = wire::from_body(&body, "an InstallSnapshot request")?;
                    wire::to_body(&raft.install_snapshot(request).await)
                }
                Kind::ClientWrite => {
                    let request: Request = wire::from_body(&body, "a client write")?;
                    let answer: ClientWriteAnswer = raft.client_write(request).await;
                    wire::to_body(&answer)
                }
                other => Err(Error::Protocol(format!("{other:?} is not a request"))),
            }
        })
    }

    fn peer_lost(&self, peer: u64) {
        self.takeover.peer_lost(peer);
    }
}
