//! The transaction status a connection reports in ReadyForQuery: always the session's own.
//!
//! pgwire derives the status from the kinds of responses it sends (a `TransactionStart` moves
//! Idle to in-block, an error moves in-block to failed), which cannot express the one move
//! back: a `ROLLBACK TO SAVEPOINT` that ends a failed state (psycopg's and SQLAlchemy's
//! nested transactions do this after every caught error). So the status comes from
//! [`eddy_sql::Session::transaction_status`]: the simple-query loop here is pgwire's,
//! ending with the session's status; the extended protocol's Sync reports it too; and errors
//! that never passed through the session (a Parse, a Bind, a COPY that failed) fail its block
//! first, as PostgreSQL's do.

use std::fmt::Debug;
use std::sync::Arc;

use eddy_sql::{Session, TransactionStatus};
use futures::future::{Either, select};
use futures::{Sink, SinkExt};
use pgwire::api::query::{
    SimpleQueryHandler, send_execution_response, send_query_response, send_ready_for_query,
};
use pgwire::api::results::Response;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, ConnectionHandle, PgWireConnectionState};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::response::{EmptyQueryResponse, ReadyForQuery};

/// The wire status of a session status.
pub fn wire_status(status: TransactionStatus) -> pgwire::messages::response::TransactionStatus {
    use pgwire::messages::response::TransactionStatus as Wire;
    match status {
        TransactionStatus::Idle => Wire::Idle,
        TransactionStatus::InBlock => Wire::Transaction,
        TransactionStatus::Failed => Wire::Error,
    }
}

/// Sets the connection's status to the session's before an error returns to pgwire (which
/// then sends it with the ErrorResponse and a ReadyForQuery): the error fails the block.
pub fn fail_block<C: ClientInfo>(client: &mut C, session: &Session) {
    session.fail_transaction();
    client.set_transaction_status(wire_status(session.transaction_status()));
}

/// One simple Query message: its statements' responses, then ReadyForQuery with the session's
/// status. As pgwire's own loop otherwise: an empty string answers EmptyQueryResponse, a
/// CancelRequest while `do_query` runs ends it with 57014, and a COPY FROM leaves the
/// ReadyForQuery to the end of the copy.
pub async fn simple_query<H, C>(
    handler: &H,
    session: &Arc<Session>,
    client: &mut C,
    query: &str,
) -> PgWireResult<()>
where
    H: SimpleQueryHandler,
    C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::PortalStore: PortalStore,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
        return Err(PgWireError::NotReadyForQuery);
    }
    client.set_state(PgWireConnectionState::QueryInProgress);
    if query.chars().all(|c| c == ';' || c.is_whitespace()) {
        client
            .feed(PgWireBackendMessage::EmptyQueryResponse(
                EmptyQueryResponse::new(),
            ))
            .await?;
        client.set_transaction_status(wire_status(session.transaction_status()));
    } else {
        let handle = client.session_extensions().get::<Arc<ConnectionHandle>>();
        let responses = match handle {
            Some(handle) => {
                let cancelled = handle.start_query().await;
                match select(std::pin::pin!(handler.do_query(client, query)), cancelled).await {
                    Either::Left((result, _)) => result,
                    Either::Right(_) => Err(PgWireError::QueryCanceled),
                }
            }
            None => handler.do_query(client, query).await,
        };
        let responses = match responses {
            Ok(r) => r,
            Err(e) => {
                fail_block(client, session);
                return Err(e);
            }
        };
        // Nothing runs after a statement that fails, so an error here is the block's end.
        let mut error_sent = false;
        for response in responses {
            error_sent |= matches!(response, Response::Error(_));
            let sent = match response {
                Response::EmptyQuery => client
                    .feed(PgWireBackendMessage::EmptyQueryResponse(
                        EmptyQueryResponse::new(),
                    ))
                    .await
                    .map_err(PgWireError::from),
                Response::Query(results) => send_query_response(client, results, true).await,
                Response::Execution(tag)
                | Response::TransactionStart(tag)
                | Response::TransactionEnd(tag) => send_execution_response(client, tag).await,
                Response::Error(e) => client
                    .feed(PgWireBackendMessage::ErrorResponse((*e).into()))
                    .await
                    .map_err(PgWireError::from),
                Response::CopyIn(result) => {
                    let sent = pgwire::api::copy::send_copy_in_response(client, result).await;
                    client.set_state(PgWireConnectionState::CopyInProgress(false));
                    sent
                }
                Response::CopyOut(result) => {
                    pgwire::api::copy::send_copy_out_response(client, result).await
                }
                Response::CopyBoth(result) => {
                    let sent = pgwire::api::copy::send_copy_both_response(client, result).await;
                    client.set_state(PgWireConnectionState::CopyInProgress(false));
                    sent
                }
            };
            if let Err(e) = sent {
                fail_block(client, session);
                return Err(e);
            }
        }
        let status = wire_status(session.ready_for_query(error_sent));
        client.set_transaction_status(status);
    }
    let status = client.transaction_status();
    if !matches!(client.state(), PgWireConnectionState::CopyInProgress(_)) {
        client.set_state(PgWireConnectionState::ReadyForQuery);
        send_ready_for_query(client, status).await?;
    }
    Ok(())
}

/// The extended protocol's Sync: ReadyForQuery with the session's status. pgwire marked the
/// connection failed if any message since the last Sync failed; an error the session did not
/// raise itself (a Parse or Bind error) fails its block here.
pub async fn sync<C>(session: &Session, client: &mut C) -> PgWireResult<()>
where
    C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::PortalStore: PortalStore,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    // As pgwire's own Sync: the unnamed portal ends here.
    client.portal_store().rm_portal(pgwire::api::DEFAULT_NAME);
    let error_sent = matches!(
        client.transaction_status(),
        pgwire::messages::response::TransactionStatus::Error
    );
    let status = wire_status(session.ready_for_query(error_sent));
    client.set_transaction_status(status);
    client
        .send(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
            status,
        )))
        .await?;
    client.flush().await?;
    Ok(())
}
