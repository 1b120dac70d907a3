//! The connection layer: every accepted TCP stream passes through [`Guarded`] before actix's
//! HTTP/1 dispatcher reads it.
//!
//! The dispatcher answers some requests without ever calling the application: a request line or
//! header block it cannot parse, a bad `Content-Length`, `Content-Length` beside
//! `Transfer-Encoding` (400), a header block over its limit (431), a head that does not arrive
//! in time (408). It answers those with an empty body, and actix offers no hook to change that.
//! The dispatcher writes such an answer as one head with `content-length: 0` and then closes the
//! connection; the application never answers 400, 408 or 431 without a problem body. So this
//! layer recognises those heads in the outgoing bytes and writes an RFC 9457 problem with a
//! fresh request id in their place, counts it, and logs it at debug level: a client can send
//! garbage at will, so it must not be able to fill the log with it.
//!
//! The head is recognised at the start of a write. A pipelining client whose malformed request
//! arrives in the same read as a valid one may see the dispatcher's bare answer written right
//! after the valid response, in one write; that answer is then left as the dispatcher wrote it.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::metrics::Metrics;
use crate::problem::{self, ProblemKind};

/// What the layer needs to explain the dispatcher's answers.
#[derive(Debug, Clone)]
pub struct Explainer {
    metrics: Metrics,
    head_timeout_ms: u64,
}

impl Explainer {
    /// `head_timeout_ms` is the dispatcher's client request timeout, named in 408 answers.
    pub fn new(metrics: Metrics, head_timeout_ms: u64) -> Self {
        Self { metrics, head_timeout_ms }
    }

    /// Wraps an accepted stream.
    pub fn guard<T>(&self, io: T) -> Guarded<T> {
        Guarded { io, explainer: self.clone(), replacement: None }
    }

    /// The problem that replaces a bare answer with this status, as the bytes of a response.
    fn replacement(&self, status: u16, date: Option<&str>) -> Option<Vec<u8>> {
        let (kind, detail) = match status {
            400 => (
                ProblemKind::MALFORMED_REQUEST,
                "the request is not valid HTTP/1.1: check the request line, the header syntax, \
                 Content-Length and Transfer-Encoding"
                    .to_owned(),
            ),
            408 => (
                ProblemKind::REQUEST_TIMEOUT,
                format!("the request head did not arrive within {} ms", self.head_timeout_ms),
            ),
            431 => (
                ProblemKind::HEADERS_TOO_LARGE,
                "the request's header block is too large or has too many fields".to_owned(),
            ),
            _ => return None,
        };
        let request_id = uuid::Uuid::new_v4().to_string();
        self.metrics.count_malformed(status);
        tracing::debug!(status, request_id = %request_id, "request refused before routing");
        let body = problem::document(kind, detail, request_id.clone());
        let mut head = format!(
            "HTTP/1.1 {status} {}\r\ncontent-type: application/problem+json\r\n\
             content-length: {}\r\nx-request-id: {request_id}\r\nconnection: close\r\n",
            reason(status),
            body.len(),
        );
        if let Some(date) = date {
            head.push_str(date);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&body);
        Some(bytes)
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        408 => "Request Timeout",
        _ => "Request Header Fields Too Large",
    }
}

/// The status and `date` line of a head the dispatcher wrote on its own, if `bytes` starts
/// with one: a 400, 408 or 431 with `content-length: 0` and no `content-type`.
fn bare_answer(bytes: &[u8]) -> Option<(u16, Option<&str>)> {
    // Every response passes here: decide from the status line before looking further, so a
    // large response costs nothing more.
    let status_line = bytes.get(..12)?;
    let version_ok = status_line.starts_with(b"HTTP/1.1 ") || status_line.starts_with(b"HTTP/1.0 ");
    if !version_ok || !matches!(&status_line[9..12], b"400" | b"408" | b"431") {
        return None;
    }
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&bytes[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let rest =
        status_line.strip_prefix("HTTP/1.1 ").or_else(|| status_line.strip_prefix("HTTP/1.0 "))?;
    let status: u16 = rest.get(..3)?.parse().ok()?;
    if !matches!(status, 400 | 408 | 431) {
        return None;
    }
    let mut empty = false;
    let mut date = None;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        match name.trim().to_ascii_lowercase().as_str() {
            "content-type" => return None,
            "content-length" => empty = value.trim() == "0",
            "date" => date = Some(line),
            _ => {}
        }
    }
    empty.then_some((status, date))
}

/// A stream whose outgoing bare answers are replaced by problems.
#[derive(Debug)]
pub struct Guarded<T> {
    io: T,
    explainer: Explainer,
    /// The problem being written in place of a bare answer, and how much of it is out.
    replacement: Option<(Vec<u8>, usize)>,
}

impl<T: AsyncWrite + Unpin> Guarded<T> {
    /// Writes what is left of the replacement.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some((bytes, written)) = &mut self.replacement {
            while *written < bytes.len() {
                let n = ready!(Pin::new(&mut self.io).poll_write(cx, &bytes[*written..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                *written += n;
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.replacement.is_none() {
            let replacement = bare_answer(buf)
                .and_then(|(status, date)| this.explainer.replacement(status, date));
            match replacement {
                Some(bytes) => this.replacement = Some((bytes, 0)),
                None => return Pin::new(&mut this.io).poll_write(cx, buf),
            }
        }
        // The dispatcher closes the connection after a bare answer: whatever it writes from
        // here on is taken and dropped, once the replacement is out.
        ready!(this.drain(cx))?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dispatchers_bare_answers_are_recognised_and_nothing_else() {
        let bare = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\
                     date: Fri, 27 Nov 2026 19:00:00 GMT\r\n\r\n";
        assert_eq!(bare_answer(bare), Some((400, Some("date: Fri, 27 Nov 2026 19:00:00 GMT"))));
        let too_large =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(bare_answer(too_large), Some((431, None)));
        let problem = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\
                        content-type: application/problem+json\r\n\r\n";
        assert_eq!(bare_answer(problem), None, "the application's answers carry a type");
        let with_body = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 120\r\n\r\n";
        assert_eq!(bare_answer(with_body), None);
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(bare_answer(ok), None);
        let partial = b"HTTP/1.1 400 Bad Request\r\ncontent-len";
        assert_eq!(bare_answer(partial), None);
        let body_only = b"{\"status\":400}";
        assert_eq!(bare_answer(body_only), None);
    }
}
