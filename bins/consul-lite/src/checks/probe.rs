//! One run of a probed check: an HTTP request, a TCP connect, or a script, bounded by the
//! check's timeout, turned into a status and an output as Consul words them.

use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::header::{HeaderName, HeaderValue, ACCEPT, HOST, USER_AGENT};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use leader_failover::script::{CapturedOutput, ProcessGroup};
use service_registry::HealthStatus;
use tokio::net::TcpStream;

use super::{truncate_output, CheckKind, CheckSpec, MAX_OUTPUT};

/// Consul's `User-Agent` of HTTP checks.
const USER_AGENT_VALUE: &str = "Consul Health Check";
/// How long a timed-out script's group has between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_millis(500);
/// How long the output of an exited script is read for (a process it left may hold the pipe).
const DRAIN_BOUND: Duration = Duration::from_millis(200);

/// Runs the check once; its status and output.
pub(crate) async fn run(spec: &CheckSpec) -> (HealthStatus, String) {
    match &spec.kind {
        CheckKind::Http { url, method, headers, body } => http(url, method, headers, body, spec.timeout).await,
        CheckKind::Tcp { address } => tcp(address, spec.timeout).await,
        CheckKind::Script { args } => script(args, spec.timeout).await,
        CheckKind::Ttl { .. } | CheckKind::Maintenance => (HealthStatus::Critical, String::new()),
    }
}

/// Checks an HTTP check's URL when it is registered: `http://` with a host.
pub(crate) fn http_url(url: &str) -> Result<Uri, String> {
    let uri: Uri = url.parse().map_err(|error| format!("not a URL: {error}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => return Err("https is not supported by consul-lite (http:// only)".to_owned()),
        _ => return Err("expected an http:// URL".to_owned()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("the URL has no host".to_owned());
    }
    Ok(uri)
}

/// 2xx passing, 429 warning, anything else (or no answer) critical; the output is
/// `HTTP <method> <url>: <status line> Output: <at most 4 KiB of body>`.
async fn http(
    url: &str,
    method: &str,
    headers: &[(String, String)],
    body: &str,
    timeout: Duration,
) -> (HealthStatus, String) {
    let exchange = async {
        let uri = http_url(url)?;
        let host = uri.host().unwrap_or_default().to_owned();
        let port = uri.port_u16().unwrap_or(80);
        let method =
            Method::from_bytes(method.as_bytes()).map_err(|error| format!("bad method {method:?}: {error}"))?;
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let stream = TcpStream::connect(format!("{host}:{port}"))
            .await
            .map_err(|error| format!("{method} {url}: dial tcp {host}:{port}: {error}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|error| format!("{method} {url}: {error}"))?;
        let connection = tokio::spawn(connection);
        let mut request = Request::builder().method(method.clone()).uri(path);
        let mut has = (false, false, false);
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|error| format!("header {name:?}: {error}"))?;
            let value = HeaderValue::from_str(value).map_err(|error| format!("header {name}: {error}"))?;
            has = (has.0 || name == HOST, has.1 || name == USER_AGENT, has.2 || name == ACCEPT);
            request = request.header(name, value);
        }
        let authority = uri.authority().map_or(host.clone(), |a| a.as_str().to_owned());
        if !has.0 {
            request = request.header(HOST, authority);
        }
        if !has.1 {
            request = request.header(USER_AGENT, USER_AGENT_VALUE);
        }
        if !has.2 {
            request = request.header(ACCEPT, "text/plain, text/*, */*");
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_owned())))
            .map_err(|error| format!("{method} {url}: {error}"))?;
        let response = sender.send_request(request).await.map_err(|error| format!("{method} {url}: {error}"))?;
        let status = response.status();
        let mut body = response.into_body();
        let mut kept = Vec::new();
        while kept.len() < MAX_OUTPUT {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        kept.extend_from_slice(&data[..data.len().min(MAX_OUTPUT - kept.len())]);
                    }
                }
                Some(Err(error)) => {
                    tracing::debug!(url, %error, "http check: reading the body failed");
                    break;
                }
                None => break,
            }
        }
        connection.abort();
        let line = format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or_default());
        let output = format!("HTTP {method} {url}: {line} Output: {}", String::from_utf8_lossy(&kept));
        let verdict = match status.as_u16() {
            200..=299 => HealthStatus::Passing,
            429 => HealthStatus::Warning,
            _ => HealthStatus::Critical,
        };
        Ok::<_, String>((verdict, output))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(result)) => result,
        Ok(Err(error)) => (HealthStatus::Critical, error),
        Err(_) => (
            HealthStatus::Critical,
            format!("{method} {url}: timed out after {} (Timeout)", crate::duration::format(timeout)),
        ),
    }
}

/// Passing when a connection opens within the timeout.
async fn tcp(address: &str, timeout: Duration) -> (HealthStatus, String) {
    match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
        Ok(Ok(_stream)) => (HealthStatus::Passing, format!("TCP connect {address}: Success")),
        Ok(Err(error)) => (HealthStatus::Critical, format!("dial tcp {address}: {error}")),
        Err(_) => (
            HealthStatus::Critical,
            format!("dial tcp {address}: i/o timeout after {}", crate::duration::format(timeout)),
        ),
    }
}

/// Runs `args` directly (no shell) in its own process group: exit 0 passing, 1 warning,
/// anything else critical; stdout then stderr as the output. At the timeout the whole group is
/// ended (SIGTERM, SIGKILL after [`KILL_GRACE`]); processes the script leaves behind when it
/// exits are ended with it too.
async fn script(args: &[String], timeout: Duration) -> (HealthStatus, String) {
    let Some((program, rest)) = args.split_first() else {
        return (HealthStatus::Critical, "no program to run (Args is empty)".to_owned());
    };
    let spawned = tokio::process::Command::new(program)
        .args(rest)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => return (HealthStatus::Critical, format!("cannot run {program:?}: {error}")),
    };
    // Dropped with this future (the check deregistered mid-run): SIGKILL to the whole group.
    let mut group = ProcessGroup::of(&child);
    let (stdout, mut stdout_reader) = CapturedOutput::read(child.stdout.take(), MAX_OUTPUT + 1);
    let (stderr, mut stderr_reader) = CapturedOutput::read(child.stderr.take(), MAX_OUTPUT + 1);
    let waited = tokio::time::timeout(timeout, child.wait()).await;
    let collect = |stdout: &CapturedOutput, stderr: &CapturedOutput| {
        let mut bytes = stdout.take();
        bytes.extend(stderr.take());
        truncate_output(&String::from_utf8_lossy(&bytes))
    };
    let result = match waited {
        Ok(Ok(status)) => {
            let _ = tokio::time::timeout(DRAIN_BOUND, async {
                let _ = (&mut stdout_reader).await;
                let _ = (&mut stderr_reader).await;
            })
            .await;
            let output = collect(&stdout, &stderr);
            let verdict = match status.code() {
                Some(0) => HealthStatus::Passing,
                Some(1) => HealthStatus::Warning,
                _ => HealthStatus::Critical,
            };
            (verdict, output)
        }
        Ok(Err(error)) => (HealthStatus::Critical, format!("waiting for {program:?}: {error}")),
        Err(_) => {
            let _ = group.end(&mut child, KILL_GRACE).await;
            let output = collect(&stdout, &stderr);
            let mut message = format!("Timed out ({}) running check", crate::duration::format(timeout));
            if !output.is_empty() {
                message.push_str("\n\n");
                message.push_str(&output);
            }
            (HealthStatus::Critical, message)
        }
    };
    let _ = group.end(&mut child, KILL_GRACE).await;
    stdout_reader.abort();
    stderr_reader.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: CheckKind, timeout: Duration) -> CheckSpec {
        CheckSpec { timeout, interval: Duration::from_secs(1), ..CheckSpec::passive(kind) }
    }

    #[test]
    fn only_plain_http_urls_are_taken() {
        assert!(http_url("http://127.0.0.1:8080/health").is_ok());
        assert!(http_url("https://example.com/").unwrap_err().contains("https"));
        assert!(http_url("127.0.0.1:80").is_err());
        assert!(http_url("ftp://x/").is_err());
    }

    #[tokio::test]
    async fn script_exit_codes_map_to_statuses() {
        let run_args = |args: &[&str]| {
            let kind = CheckKind::Script { args: args.iter().map(|a| (*a).to_owned()).collect() };
            let spec = spec(kind, Duration::from_secs(5));
            async move { run(&spec).await }
        };
        let (status, output) = run_args(&["sh", "-c", "echo fine"]).await;
        assert_eq!((status, output.as_str()), (HealthStatus::Passing, "fine\n"));
        assert_eq!(run_args(&["sh", "-c", "echo meh >&2; exit 1"]).await, (HealthStatus::Warning, "meh\n".into()));
        assert_eq!(run_args(&["sh", "-c", "exit 2"]).await.0, HealthStatus::Critical);
        let (status, output) = run_args(&["/nonexistent/check"]).await;
        assert_eq!(status, HealthStatus::Critical);
        assert!(output.contains("cannot run"), "{output}");
        // Arguments are not interpreted by a shell.
        let (_, output) = run_args(&["echo", "$HOME;", "exit 3"]).await;
        assert_eq!(output, "$HOME; exit 3\n");
    }

    #[tokio::test]
    async fn a_script_over_its_timeout_is_killed_with_its_group() {
        let kind = CheckKind::Script { args: vec!["sh".into(), "-c".into(), "echo started; sleep 30 & wait".into()] };
        let started = std::time::Instant::now();
        let (status, output) = run(&spec(kind, Duration::from_millis(300))).await;
        assert_eq!(status, HealthStatus::Critical);
        assert!(output.starts_with("Timed out (300ms) running check"), "{output}");
        assert!(output.contains("started"), "{output}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn tcp_connects_or_is_critical() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let (status, output) = run(&spec(CheckKind::Tcp { address: address.clone() }, Duration::from_secs(2))).await;
        assert_eq!((status, output), (HealthStatus::Passing, format!("TCP connect {address}: Success")));
        drop(listener);
        let (status, _) = run(&spec(CheckKind::Tcp { address }, Duration::from_secs(2))).await;
        assert_eq!(status, HealthStatus::Critical);
    }
}
