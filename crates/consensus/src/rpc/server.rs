//! The server RPC listener: one task per inbound connection (at most `max_connections`), each
//! answering one request at a time, in order.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, RaftError};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use super::message::{Envelope, Refusal, Request, Response, SnapshotFailure};
use super::{agents, frame};
use crate::consensus::Core;

/// An inbound connection with no request for this long is closed (peers reconnect).
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Accepts connections until `shutdown` turns true, then stops every connection task.
pub(crate) async fn serve(listener: TcpListener, core: Arc<Core>, mut shutdown: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(core.config.max_connections));
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                        tracing::warn!(
                            %peer,
                            limit = core.config.max_connections,
                            "server RPC: refused a connection, at the connection limit"
                        );
                        continue;
                    };
                    let core = Arc::clone(&core);
                    connections.spawn(async move {
                        serve_connection(stream, &core).await;
                        drop(slot);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "server RPC: accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}

async fn serve_connection(mut stream: TcpStream, core: &Core) {
    let _ = stream.set_nodelay(true);
    let max = core.config.max_frame_size;
    let body_timeout = Some(core.config.rpc_timeout);
    loop {
        let request = match tokio::time::timeout(
            IDLE_TIMEOUT,
            frame::read_bounded::<Envelope, _>(&mut stream, max, body_timeout),
        )
        .await
        {
            Err(_) | Ok(Ok(None)) => return,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "server RPC: closing a connection after a bad frame");
                return;
            }
            Ok(Ok(Some(request))) => request,
        };
        // A subscription takes the connection over (client agents, issue 14).
        let request = match request {
            Envelope { to, request: Request::Subscribe(subscription), .. } if to == core.config.node_id => {
                return agents::stream(&mut stream, core, subscription).await;
            }
            request => request,
        };
        let response = handle(core, request).await;
        let bytes = match frame::encode(&response, max) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!(error = %e, "server RPC: the answer does not fit in a frame");
                return;
            }
        };
        match tokio::time::timeout(core.config.rpc_timeout, frame::write(&mut stream, &bytes)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => return,
        }
    }
}

async fn handle(core: &Core, envelope: Envelope) -> Response {
    let Envelope { from, to, request } = envelope;
    let me = core.config.node_id;
    if to != me {
        // Meant for another identity (this server's data dir was wiped and it came back under a
        // new id at the same address, or the address changed hands): touch nothing.
        tracing::warn!(from, addressed = to, me, "server RPC: refused a request addressed to another server id");
        return Response::Refused(Refusal::WrongNode { addressed: to, actual: me });
    }
    match request {
        Request::AppendEntries(rpc) => {
            let result = core.raft.append_entries(rpc).await;
            if result.is_ok() {
                core.touch_contact();
            }
            Response::AppendEntries(result.map_err(|e| e.to_string()))
        }
        Request::Vote(rpc) => Response::Vote(core.raft.vote(rpc).await.map_err(|e| e.to_string())),
        Request::InstallSnapshot(rpc) => {
            let result = core.raft.install_snapshot(rpc).await;
            if result.is_ok() {
                core.touch_contact();
            }
            Response::InstallSnapshot(result.map_err(|e| match e {
                RaftError::APIError(InstallSnapshotError::SnapshotMismatch(m)) => SnapshotFailure::Mismatch(m),
                e => SnapshotFailure::Failed(e.to_string()),
            }))
        }
        Request::Forward(forwarded) => Response::Forward(core.on_leader(forwarded).await),
        Request::Client(request) => agents::answer(core, request).await,
        // Taken over by serve_connection before this point.
        Request::Subscribe(_) => Response::Stream(Err("a subscription is served on its own connection".into())),
        Request::Status => {
            let m = core.raft.metrics().borrow().clone();
            Response::Status(crate::consensus::PeerStatus {
                last_log_index: m.last_log_index,
                term: m.current_term,
                leader: m.current_leader,
            })
        }
    }
}
