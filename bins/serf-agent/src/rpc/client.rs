//! The RPC client the commands use: one HTTP/1.1 connection per request (hyper), JSON in and
//! out, NDJSON streams read line by line.

use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpStream;

use super::api::ErrorBody;

/// Bound on connecting to the agent.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on a non-streaming request (a join or a leave may take several seconds).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the agent is and how to authenticate.
#[derive(Debug, Clone)]
pub(crate) struct RpcClient {
    addr: String,
    token: Option<String>,
}

impl RpcClient {
    pub(crate) fn new(addr: impl Into<String>, token: Option<String>) -> Self {
        Self { addr: addr.into(), token: token.filter(|token| !token.is_empty()) }
    }

    /// Send a request and return the response if its status is 2xx; otherwise the error names
    /// the status and the agent's message.
    async fn send(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> anyhow::Result<Response<Incoming>> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.addr))
            .await
            .map_err(|_| anyhow!("cannot reach the agent at {}: no answer within {CONNECT_TIMEOUT:?}", self.addr))?
            .with_context(|| {
                format!(
                    "cannot reach the agent at {} (is `serf-agent agent` running there? set -rpc-addr or SERF_RPC_ADDR)",
                    self.addr
                )
            })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .with_context(|| format!("HTTP handshake with {}", self.addr))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "rpc client connection ended");
            }
        });
        let mut request = Request::builder().method(method).uri(path);
        request = request.header(HOST, HeaderValue::from_str(&self.addr).unwrap_or(HeaderValue::from_static("agent")));
        if let Some(token) = &self.token {
            let value =
                HeaderValue::from_str(&format!("Bearer {token}")).context("the RPC token is not valid header text")?;
            request = request.header(AUTHORIZATION, value);
        }
        let request = match body {
            Some(body) => request.header(CONTENT_TYPE, "application/json").body(Full::new(Bytes::from(body)))?,
            None => request.body(Full::new(Bytes::new()))?,
        };
        let response = sender.send_request(request).await.with_context(|| format!("request to {}", self.addr))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body = tokio::time::timeout(REQUEST_TIMEOUT, response.into_body().collect())
            .await
            .map(|collected| collected.map(|body| body.to_bytes()).unwrap_or_default())
            .unwrap_or_default();
        let message = serde_json::from_slice::<ErrorBody>(&body)
            .map(|body| body.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).trim().to_owned());
        bail!("agent error ({}): {message}", status.as_u16())
    }

    async fn read_all(response: Response<Incoming>) -> anyhow::Result<Bytes> {
        let collected = tokio::time::timeout(REQUEST_TIMEOUT, response.into_body().collect())
            .await
            .map_err(|_| anyhow!("no complete answer within {REQUEST_TIMEOUT:?}"))?
            .context("reading the answer")?;
        Ok(collected.to_bytes())
    }

    /// `GET path` → JSON.
    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.send(Method::GET, path, None))
            .await
            .map_err(|_| anyhow!("no answer from {} within {REQUEST_TIMEOUT:?}", self.addr))??;
        let body = Self::read_all(response).await?;
        serde_json::from_slice(&body).with_context(|| format!("unexpected answer to GET {path}"))
    }

    /// `POST path` with a JSON body → JSON.
    pub(crate) async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> anyhow::Result<T> {
        let body = serde_json::to_vec(body)?;
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.send(Method::POST, path, Some(body)))
            .await
            .map_err(|_| anyhow!("no answer from {} within {REQUEST_TIMEOUT:?}", self.addr))??;
        let body = Self::read_all(response).await?;
        serde_json::from_slice(&body).with_context(|| format!("unexpected answer to POST {path}"))
    }

    /// A streaming request: `on_line` gets each NDJSON line as it arrives and returns whether to
    /// go on. Ends when the agent ends the stream.
    pub(crate) async fn stream<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        mut on_line: impl FnMut(&str) -> anyhow::Result<bool>,
    ) -> anyhow::Result<()> {
        let body = body.map(serde_json::to_vec).transpose()?;
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.send(method, path, body))
            .await
            .map_err(|_| anyhow!("no answer from {} within {REQUEST_TIMEOUT:?}", self.addr))??;
        let mut body = response.into_body();
        let mut pending = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.context("the stream broke")?;
            let Ok(data) = frame.into_data() else { continue };
            pending.extend_from_slice(&data);
            while let Some(end) = pending.iter().position(|byte| *byte == b'\n') {
                let line = pending.split_to(end + 1);
                let text = String::from_utf8_lossy(&line[..end]);
                if !text.trim().is_empty() && !on_line(&text)? {
                    return Ok(());
                }
            }
        }
        if !pending.is_empty() {
            on_line(&String::from_utf8_lossy(&pending))?;
        }
        Ok(())
    }
}
