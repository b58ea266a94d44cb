//! Queries: [`QueryParams`] to send one, [`Query`] to answer one, [`QueryResponse`] to collect
//! the answers.
//!
//! A query is gossiped like a user event (de-duplicated by Lamport time and id, re-broadcast by
//! every node that sees it first). A node that passes the filters delivers it as
//! [`super::SerfEvent::Query`], acks it at once when asked to, and answers with
//! [`Query::respond`]: the ack and the response go straight to the originator's address in one
//! datagram, and through `relay_factor` random members as well (each wraps it in a relay
//! message and forwards it), so that an answer survives the loss of one path. The originator
//! de-duplicates per node and hands out acks and responses until the deadline.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::seq::SliceRandom;
use regex::{Regex, RegexBuilder};
use swim::{State, Tags};
use tokio::sync::mpsc;

use super::messages::{self, wire, Body};
use super::task::Command;
use super::{SerfError, Shared};

/// Largest compiled tag-filter regex (bytes): a hostile or careless pattern is refused rather
/// than compiled into something huge.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// How to send a query ([`super::SerfHandle::query`]). `Default`: every node, no acks, no
/// relays, the default timeout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryParams {
    /// Only these nodes deliver the query (empty: no node filter).
    pub filter_nodes: Vec<String>,
    /// Only nodes whose tag matches each regular expression deliver the query: `(tag, regexp)`.
    /// As Serf (Go's `regexp.MatchString`) the expression is searched in the value, not
    /// anchored: write `^web$` for an exact match. A missing tag is matched as the empty string.
    pub filter_tags: Vec<(String, String)>,
    /// Matching nodes acknowledge receipt at once ([`QueryReply::Ack`]).
    pub request_ack: bool,
    /// Each ack and response is also relayed through this many random members.
    pub relay_factor: u8,
    /// How long to wait for answers. `None`: `gossip_interval × query_timeout_mult ×
    /// ceil(log10(n + 1))`.
    pub timeout: Option<Duration>,
}

/// One answer to a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryReply {
    /// `from` received the query (sent when [`QueryParams::request_ack`]).
    Ack {
        /// The node.
        from: String,
    },
    /// `from` answered.
    Response {
        /// The node.
        from: String,
        /// Its answer.
        payload: Bytes,
    },
}

/// The answers to a query this node sent, until its deadline.
#[derive(Debug)]
pub struct QueryResponse {
    pub(crate) id: u32,
    pub(crate) ltime: u64,
    pub(crate) deadline: Instant,
    pub(crate) num_nodes: usize,
    pub(crate) replies: mpsc::Receiver<QueryReply>,
}

impl QueryResponse {
    /// The query's id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The query's Lamport time.
    pub fn ltime(&self) -> u64 {
        self.ltime
    }

    /// When the query ends: no answer is handed out after this.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Live members (this node included) when the query was sent: how many answers a query
    /// without filters can expect.
    pub fn num_nodes(&self) -> usize {
        self.num_nodes
    }

    /// The next ack or response, at most one of each per node; `None` at the deadline (or when
    /// the layer stops).
    pub async fn next(&mut self) -> Option<QueryReply> {
        let deadline = tokio::time::Instant::from_std(self.deadline);
        tokio::time::timeout_at(deadline, self.replies.recv()).await.ok().flatten()
    }
}

/// A query delivered to this node ([`super::SerfEvent::Query`]).
#[derive(Clone)]
pub struct Query {
    /// The query's Lamport time.
    pub ltime: u64,
    /// Its id (with `ltime`, identifies the query).
    pub id: u32,
    /// Its name.
    pub name: String,
    /// Its payload.
    pub payload: Bytes,
    /// The node that sent it.
    pub from: String,
    pub(crate) responder: Arc<Responder>,
}

impl Query {
    /// Until when the originator listens.
    pub fn deadline(&self) -> Instant {
        self.responder.deadline
    }

    /// The originator's address, where answers go.
    pub fn source_addr(&self) -> SocketAddr {
        self.responder.source_addr
    }

    /// Answer the query: once, before the deadline, at most
    /// [`super::SerfConfig::max_query_response_size`] bytes encoded (less when one datagram
    /// cannot carry that much). The answer goes to the originator directly and through the
    /// query's relay factor of random members. Every clone of a `Query` shares the "answered"
    /// state.
    pub async fn respond(&self, payload: Bytes) -> Result<(), SerfError> {
        let response = wire::QueryResponse {
            ltime: self.ltime,
            id: self.id,
            from: self.responder.local_name.clone(),
            ack: false,
            payload,
        };
        let message = messages::encode_message(Body::QueryResponse(response));
        let relay = self.responder.relay_message(&message);
        let max = self.responder.response_limit(relay.as_ref().map(|r| r.len() - message.len()));
        if message.len() > max {
            return Err(SerfError::ResponseTooLarge { len: message.len(), max });
        }
        if super::now() > self.responder.deadline {
            return Err(SerfError::DeadlinePassed { name: self.name.clone(), id: self.id });
        }
        if self.responder.responded.swap(true, Ordering::SeqCst) {
            return Err(SerfError::AlreadyResponded { name: self.name.clone(), id: self.id });
        }
        let sent = self.responder.send(message, relay).await;
        if sent.is_err() {
            // Nothing went out: the query may be answered again.
            self.responder.responded.store(false, Ordering::SeqCst);
        }
        sent
    }
}

impl fmt::Debug for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Query")
            .field("ltime", &self.ltime)
            .field("id", &self.id)
            .field("name", &self.name)
            .field("payload", &self.payload)
            .field("from", &self.from)
            .field("deadline", &self.responder.deadline)
            .finish_non_exhaustive()
    }
}

/// What answering a query needs: where to, through how many relays, the limits.
pub(crate) struct Responder {
    pub(crate) shared: Arc<Shared>,
    pub(crate) local_name: String,
    pub(crate) source_name: String,
    pub(crate) source_addr: SocketAddr,
    pub(crate) relay_factor: u8,
    pub(crate) deadline: Instant,
    /// [`super::SerfConfig::max_query_response_size`].
    pub(crate) max_response: usize,
    pub(crate) responded: AtomicBool,
}

impl Responder {
    /// The relay wrapping of `message` when the query asked for relays.
    fn relay_message(&self, message: &Bytes) -> Option<Bytes> {
        (self.relay_factor > 0).then(|| {
            messages::encode_message(Body::Relay(wire::Relay {
                dest_addr: Some(messages::address(self.source_addr)),
                dest_name: self.source_name.clone(),
                message: message.clone(),
            }))
        })
    }

    /// The largest encoded response: the configured limit, and what one datagram carries (with
    /// the relay wrapping, `relay_overhead` bytes, when there is one).
    fn response_limit(&self, relay_overhead: Option<usize>) -> usize {
        let datagram = self.shared.node.max_user_payload().saturating_sub(relay_overhead.unwrap_or(0));
        self.max_response.min(datagram)
    }

    /// An ack, sent by the layer itself when the query asked for one.
    pub(crate) async fn ack(&self, ltime: u64, id: u32) -> Result<(), SerfError> {
        let ack = wire::QueryResponse { ltime, id, from: self.local_name.clone(), ack: true, payload: Bytes::new() };
        let message = messages::encode_message(Body::QueryResponse(ack));
        let relay = self.relay_message(&message);
        self.send(message, relay).await
    }

    /// To the originator, and to `relay_factor` random live members other than this node and
    /// the originator. Without piggybacked gossip: the originator has the query already, and
    /// the query's own re-broadcast must not be spent on it. An answer to this node's own query
    /// goes straight to the task.
    async fn send(&self, message: Bytes, relay: Option<Bytes>) -> Result<(), SerfError> {
        let node = &self.shared.node;
        if self.source_name == self.local_name {
            let command = Command::LocalReply(message);
            return self.shared.commands.send(command).await.map_err(|_| SerfError::Stopped);
        }
        node.send_user_alone(self.source_addr, message).await?;
        let Some(relay) = relay else { return Ok(()) };
        let mut relays: Vec<SocketAddr> = node
            .members()
            .into_iter()
            .filter(|m| m.state == State::Alive && m.name != self.local_name && m.name != self.source_name)
            .map(|m| m.addr)
            .collect();
        relays.shuffle(&mut rand::rng());
        for addr in relays.into_iter().take(usize::from(self.relay_factor)) {
            node.send_user_alone(addr, relay.clone()).await?;
        }
        Ok(())
    }
}

/// A query this node sent and listens to.
#[derive(Debug)]
pub(crate) struct PendingQuery {
    pub(crate) deadline: Instant,
    pub(crate) acks: HashSet<String>,
    pub(crate) responses: HashSet<String>,
    pub(crate) replies: mpsc::Sender<QueryReply>,
}

/// Compile the tag filters of a query about to be sent; the error names the bad one.
pub(crate) fn check_filters(filters: &[(String, String)]) -> Result<(), SerfError> {
    for (tag, expr) in filters {
        compile(expr).map_err(|error| SerfError::InvalidFilter {
            tag: tag.clone(),
            expr: expr.clone(),
            reason: error.to_string(),
        })?;
    }
    Ok(())
}

fn compile(expr: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(expr).size_limit(REGEX_SIZE_LIMIT).build()
}

/// Whether this node (`name`, `tags`) passes the filters of `query`. A filter that does not
/// compile matches nothing.
pub(crate) fn matches(query: &wire::Query, name: &str, tags: &Tags) -> bool {
    if !query.filter_nodes.is_empty() && !query.filter_nodes.iter().any(|n| n == name) {
        return false;
    }
    query.filter_tags.iter().all(|filter| match compile(&filter.expr) {
        Ok(regex) => regex.is_match(tags.get(&filter.tag).unwrap_or("")),
        Err(_) => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(nodes: &[&str], tags: &[(&str, &str)]) -> wire::Query {
        wire::Query {
            filter_nodes: nodes.iter().map(|n| (*n).to_owned()).collect(),
            filter_tags: tags
                .iter()
                .map(|(tag, expr)| wire::TagFilter { tag: (*tag).to_owned(), expr: (*expr).to_owned() })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn filters_by_name_and_by_tag_regexp() {
        let tags = Tags::from_pairs([("role", "web-frontend"), ("dc", "eu-1")]).unwrap();
        assert!(matches(&query(&[], &[]), "a", &tags));
        assert!(matches(&query(&["b", "a"], &[]), "a", &tags));
        assert!(!matches(&query(&["b"], &[]), "a", &tags));
        // Unanchored, as Serf: "web" is found in "web-frontend".
        assert!(matches(&query(&[], &[("role", "web")]), "a", &tags));
        assert!(!matches(&query(&[], &[("role", "^web$")]), "a", &tags));
        assert!(matches(&query(&[], &[("role", "^web-.*$"), ("dc", "^eu-")]), "a", &tags));
        assert!(!matches(&query(&[], &[("role", "web"), ("dc", "us")]), "a", &tags));
        // A missing tag is the empty string.
        assert!(matches(&query(&[], &[("rack", "^$")]), "a", &tags));
        assert!(!matches(&query(&[], &[("rack", ".")]), "a", &tags));
        // A bad expression matches nothing, and is refused at the sender.
        assert!(!matches(&query(&[], &[("role", "(")]), "a", &tags));
        let err = check_filters(&[("role".into(), "(".into())]).unwrap_err();
        assert!(err.to_string().starts_with("tag filter role=\"(\""), "{err}");
        check_filters(&[("role".into(), "^web$".into())]).unwrap();
    }
}
