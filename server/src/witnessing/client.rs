//! A minimal HTTP/1.1 client for the witness protocol: one request per
//! connection (`Connection: close`), plain `http://` only, bounded answers.
//! The log's witness calls and the tests use it; a witness behind TLS is
//! reached through a local TLS-terminating proxy (a bastion, in C2SP terms).

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Largest answer read from a witness.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// A witness's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: String,
}

/// `METHOD prefix/path` with `body`, within `timeout`. `prefix` is
/// `http://HOST:PORT[/path]`.
pub async fn request(
    method: &str,
    prefix: &str,
    path: &str,
    body: &str,
    timeout: Duration,
) -> Result<Answer, String> {
    tokio::time::timeout(timeout, request_inner(method, prefix, path, body))
        .await
        .map_err(|_| format!("no answer within {} ms", timeout.as_millis()))?
}

async fn request_inner(method: &str, prefix: &str, path: &str, body: &str) -> Result<Answer, String> {
    let rest = prefix
        .strip_prefix("http://")
        .ok_or_else(|| format!("witness URL {prefix:?} must start with http://"))?;
    let (host, base) = match rest.split_once('/') {
        Some((host, base)) => (host, format!("/{}", base.trim_end_matches('/'))),
        None => (rest, String::new()),
    };
    let target = format!("{}{path}", if base == "/" { "" } else { &base });
    let mut stream =
        tokio::net::TcpStream::connect(host).await.map_err(|e| format!("cannot connect to {host}: {e}"))?;
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.map_err(|e| format!("cannot send to {host}: {e}"))?;
    stream.write_all(body.as_bytes()).await.map_err(|e| format!("cannot send to {host}: {e}"))?;
    let mut raw = Vec::new();
    (&mut stream)
        .take(MAX_ANSWER_BYTES as u64 + 1)
        .read_to_end(&mut raw)
        .await
        .map_err(|e| format!("cannot read the answer of {host}: {e}"))?;
    if raw.len() > MAX_ANSWER_BYTES {
        return Err(format!("the answer of {host} is larger than {MAX_ANSWER_BYTES} bytes"));
    }
    parse_answer(&raw).ok_or_else(|| format!("{host} did not answer in HTTP/1.1"))
}

fn parse_answer(raw: &[u8]) -> Option<Answer> {
    let text = std::str::from_utf8(raw).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let mut content_type = None;
    let mut chunked = false;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        if name.eq_ignore_ascii_case("content-type") {
            content_type = Some(value.trim().to_string());
        }
        if name.eq_ignore_ascii_case("transfer-encoding") && value.trim().eq_ignore_ascii_case("chunked") {
            chunked = true;
        }
    }
    let body = if chunked { dechunk(body)? } else { body.to_string() };
    Some(Answer { status, content_type, body })
}

fn dechunk(mut body: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..size)?);
        body = rest.get(size..)?.strip_prefix("\r\n")?;
    }
}
