//! The HTTP client the commands use: one HTTP/1.1 connection per request (hyper), Consul's
//! `/v1` paths, the token in `X-Consul-Token`.

use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::header::{HeaderValue, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::cli::ClientArgs;

/// Bound on connecting to the agent.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on one request (a join may take several seconds).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// An answer: status, body, and the `X-Consul-Index` if any.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) body: Bytes,
    /// `X-Consul-Index`, when the answer has a readable one.
    pub(crate) index: Option<u64>,
}

/// Where the agent is, and the token to send.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    addr: String,
    token: Option<String>,
}

impl Client {
    pub(crate) fn new(args: &ClientArgs) -> Self {
        let addr = args.http_addr.trim_start_matches("http://").trim_end_matches('/').to_owned();
        Self { addr, token: args.token.clone().filter(|token| !token.is_empty()) }
    }

    /// Sends a request; any status is returned (the caller decides what a 404 means).
    pub(crate) async fn send(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> anyhow::Result<Answer> {
        let exchange = async {
            let response = self.open(method, path, body).await?;
            let status = response.status();
            let index = response
                .headers()
                .get("x-consul-index")
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse().ok());
            let body = response.into_body().collect().await.context("reading the answer")?.to_bytes();
            anyhow::Ok(Answer { status, body, index })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| anyhow!("no answer from {} within {REQUEST_TIMEOUT:?}", self.addr))?
    }

    /// A GET whose answer is streamed (`/v1/agent/monitor`): `on_line` gets each line as it
    /// arrives, without its newline. Ends when the agent ends the stream; fails unless the
    /// status is 2xx, with the agent's message.
    pub(crate) async fn stream_lines(&self, path: &str, mut on_line: impl FnMut(&str)) -> anyhow::Result<()> {
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.open(Method::GET, path, None))
            .await
            .map_err(|_| anyhow!("no answer from {} within {REQUEST_TIMEOUT:?}", self.addr))??;
        let status = response.status();
        let mut body = response.into_body();
        if !status.is_success() {
            let body = body.collect().await.context("reading the answer")?.to_bytes();
            bail!("Unexpected response code: {} ({})", status.as_u16(), String::from_utf8_lossy(&body).trim());
        }
        let mut pending = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.context("the stream broke")?;
            let Ok(data) = frame.into_data() else { continue };
            pending.extend_from_slice(&data);
            while let Some(end) = pending.iter().position(|byte| *byte == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                on_line(String::from_utf8_lossy(&line[..end]).trim_end_matches('\r'));
            }
        }
        if !pending.is_empty() {
            on_line(&String::from_utf8_lossy(&pending));
        }
        Ok(())
    }

    /// Connects, sends the request, and returns the answer once its headers are in.
    async fn open(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<hyper::Response<hyper::body::Incoming>> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.addr))
            .await
            .map_err(|_| anyhow!("cannot reach the agent at {}: no answer within {CONNECT_TIMEOUT:?}", self.addr))?
            .with_context(|| {
                format!(
                    "cannot reach the agent at {} (is `consul-lite agent -dev` running? set -http-addr or CONSUL_HTTP_ADDR)",
                    self.addr
                )
            })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .with_context(|| format!("HTTP handshake with {}", self.addr))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut request = Request::builder().method(method).uri(path);
        request = request.header(HOST, HeaderValue::from_str(&self.addr).unwrap_or(HeaderValue::from_static("agent")));
        if let Some(token) = &self.token {
            request = request
                .header("x-consul-token", HeaderValue::from_str(token).context("-token: not valid header text")?);
        }
        let request = request.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        sender.send_request(request).await.with_context(|| format!("request to {}", self.addr))
    }

    /// Sends a request and fails unless the status is 2xx, with the agent's message.
    pub(crate) async fn ok(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> anyhow::Result<Bytes> {
        let answer = self.send(method, path, body).await?;
        if !answer.status.is_success() {
            bail!(
                "Unexpected response code: {} ({})",
                answer.status.as_u16(),
                String::from_utf8_lossy(&answer.body).trim()
            );
        }
        Ok(answer.body)
    }

    /// GET and decode JSON.
    pub(crate) async fn json(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let body = self.ok(Method::GET, path, None).await?;
        serde_json::from_slice(&body).context("the agent's answer is not JSON")
    }
}

/// Percent-encodes a key for a path (`/` kept), as Consul's client does.
pub(crate) fn encode_path(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for byte in key.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => out.push(byte as char),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}
