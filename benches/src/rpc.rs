//! Clients for the agents' control interfaces: HashiCorp Serf's RPC (MessagePack over TCP, one
//! persistent connection per agent) and a small blocking HTTP/1.1 client for serf-agent's
//! JSON API and the primary web services. Both are bounded by timeouts.

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::msgpack::{self, map, Value};

/// Connect, read and write timeout of every request.
pub const TIMEOUT: Duration = Duration::from_millis(1500);

/// A member as one agent sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    /// Node name.
    pub name: String,
    /// Status as the agent reports it (`alive`, `suspect`, `failed`, `left`, `leaving`).
    pub status: String,
}

/// A connection to HashiCorp Serf's RPC, after the handshake.
#[derive(Debug)]
pub struct SerfRpc {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    seq: u64,
}

impl SerfRpc {
    /// Connect to `addr` and perform the handshake (protocol version 1).
    pub fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        stream.set_write_timeout(Some(TIMEOUT))?;
        stream.set_nodelay(true)?;
        let mut rpc = Self { reader: BufReader::new(stream.try_clone()?), writer: stream, seq: 0 };
        rpc.call("handshake", Some(map([("Version", Value::Int(1))])))?;
        Ok(rpc)
    }

    /// Send a command (with an optional body) and read the response header; an error names the
    /// agent's error text.
    fn call(&mut self, command: &str, body: Option<Value>) -> anyhow::Result<()> {
        let seq = self.seq;
        self.seq += 1;
        let mut out = Vec::new();
        msgpack::encode(
            &map([("Command", Value::Str(command.into())), ("Seq", Value::Int(i128::from(seq)))]),
            &mut out,
        );
        if let Some(body) = body {
            msgpack::encode(&body, &mut out);
        }
        self.writer.write_all(&out)?;
        let header = msgpack::decode(&mut self.reader)?;
        let got = header.get("Seq").and_then(Value::as_int);
        anyhow::ensure!(got == Some(i128::from(seq)), "serf rpc: response to seq {got:?}, expected {seq}");
        match header.get("Error").and_then(Value::as_str) {
            Some(e) if !e.is_empty() => anyhow::bail!("serf rpc {command}: {e}"),
            _ => Ok(()),
        }
    }

    /// `members`: every member this agent knows, with its status.
    pub fn members(&mut self) -> anyhow::Result<Vec<MemberView>> {
        self.call("members", None)?;
        let body = msgpack::decode(&mut self.reader)?;
        let members = body.get("Members").and_then(Value::as_array).unwrap_or_default();
        Ok(members
            .iter()
            .filter_map(|m| {
                Some(MemberView {
                    name: m.get("Name")?.as_str()?.to_owned(),
                    status: m.get("Status")?.as_str()?.to_owned(),
                })
            })
            .collect())
    }

    /// `event`: send a user event.
    pub fn user_event(&mut self, name: &str, payload: &str, coalesce: bool) -> anyhow::Result<()> {
        let body = map([
            ("Name", Value::Str(name.into())),
            // A string, not a byte string: Serf's msgpack codec decodes either into []byte.
            ("Payload", Value::Str(payload.into())),
            ("Coalesce", Value::Bool(coalesce)),
        ]);
        self.call("event", Some(body))
    }
}

/// An HTTP response: status code and body.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Body (de-chunked).
    pub body: Vec<u8>,
}

/// `GET path` or `POST path` (with a JSON body) on `addr`, one connection per request.
pub fn http(addr: SocketAddr, method: &str, path: &str, json: Option<&str>) -> anyhow::Result<HttpResponse> {
    http_timeout(addr, method, path, json, TIMEOUT)
}

/// As [`http`] with another timeout (the availability probe uses a short one).
pub fn http_timeout(
    addr: SocketAddr,
    method: &str,
    path: &str,
    json: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<HttpResponse> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let body = json.unwrap_or("");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if json.is_some() {
        request.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.take(16 << 20).read_to_end(&mut raw)?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> anyhow::Result<HttpResponse> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| anyhow::anyhow!("http: no header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status: u16 = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("http: bad status line"))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let rest = &raw[split + 4..];
    let body = if chunked { dechunk(rest)? } else { rest.to_vec() };
    Ok(HttpResponse { status, body })
}

fn dechunk(mut data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").ok_or_else(|| anyhow::anyhow!("http: bad chunk"))?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        anyhow::ensure!(data.len() >= size, "http: truncated chunk");
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_plain_and_chunked() {
        let r = parse_response(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 3\r\n\r\nno!").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (503, &b"no!"[..]));
        let r =
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
                .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"abcde"[..]));
        assert!(parse_response(b"garbage").is_err());
    }
}
