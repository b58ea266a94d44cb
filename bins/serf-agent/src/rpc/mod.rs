//! The RPC API: HTTP/1.1 + JSON on the RPC address (default 127.0.0.1:7373), documented in
//! `docs/rpc.md`.
//!
//! - [`api`]: the JSON documents, shared by both sides.
//! - [`server`]: the transport (connections, auth, limits, errors, streaming bodies).
//! - [`routes`]: what each route does on the agent.
//! - [`client`]: what the client commands use.

pub(crate) mod api;
pub(crate) mod client;
mod routes;
pub(crate) mod server;
