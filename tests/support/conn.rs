//! One connection: reads requests in a keep-alive loop and acts out each request's `Action`.

use std::io::{self, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use rustls::{ServerConnection, StreamOwned};

use super::action::Action;
use super::http::{read_head, write_response_head, BodyReader, RequestHead};
use super::record::BodyProgress;
use super::server::Shared;

const IO_BUF: usize = 64 * 1024;

/// Bytes sent for `Action::Garbage`: clearly not an HTTP response.
const GARBAGE: &[u8] = b"\x00\xffSSH-2.0-not-http\r\n\x16\x03\x01garbage garbage\r\n\r\n";

/// What to do with the connection after a request.
enum Next {
    KeepAlive,
    /// Close politely after a complete response (TLS: send `close_notify`).
    Close,
    /// Drop the connection as a fault: no response, or not a valid one.
    Abort,
}

/// A connection's byte stream: plain TCP or TLS.
pub trait Transport: Read + Write {
    /// Ends the stream politely before it is dropped.
    fn close_politely(&mut self) {}
}

impl Transport for TcpStream {}

impl Transport for StreamOwned<ServerConnection, TcpStream> {
    fn close_politely(&mut self) {
        self.conn.send_close_notify();
        let _ = self.flush();
    }
}

/// Serves requests on `stream` until the client leaves, an action closes it, or the server
/// stops. Errors only end the connection; they are logged, never panicked on.
pub fn serve<S: Transport>(stream: S, connection_id: u64, shared: &Shared) {
    let mut conn = BufReader::with_capacity(IO_BUF, stream);
    while !shared.is_stopped() {
        let head = match read_head(&mut conn) {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(e) => {
                log::debug!("test server: connection {connection_id}: no request head: {e}");
                return;
            }
        };
        let (index, action) = shared.begin_request(&head, connection_id);
        log::debug!(
            "test server: request {index} {} {} -> {action:?}",
            head.method,
            head.path
        );
        match handle(&mut conn, &head, index, action, shared) {
            Ok(Next::KeepAlive) => {}
            Ok(Next::Close) => return conn.get_mut().close_politely(),
            Ok(Next::Abort) => return,
            Err(e) => {
                log::debug!("test server: request {index}: {e}");
                return;
            }
        }
    }
}

fn handle<S: Read + Write>(
    conn: &mut BufReader<S>,
    head: &RequestHead,
    index: usize,
    action: Action,
    shared: &Shared,
) -> io::Result<Next> {
    let mut body = match BodyReader::for_head(head) {
        Ok(body) => body,
        Err(e) => {
            drop(BodyProgress::start(&shared.log, index, false));
            let w = conn.get_mut();
            write_response_head(w, 400, &[], Some(0), true)?;
            w.flush()?;
            return Err(e);
        }
    };
    let mut progress = BodyProgress::start(&shared.log, index, body.is_done());
    if action == Action::CloseImmediately {
        return Ok(Next::Abort);
    }
    if head.expects_continue() && !body.is_done() {
        // A refusal (4xx, 5xx) goes out at once, as nginx does: no 100, no body read,
        // and the connection closes after it (the body may still come).
        if let Action::Respond {
            status,
            headers,
            body,
        } = &action
        {
            if *status >= 400 {
                drop(progress);
                respond(conn.get_mut(), head, *status, headers, body, true)?;
                return Ok(Next::Close);
            }
        }
        let w = conn.get_mut();
        w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        w.flush()?;
    }
    let (limit, rate) = match action {
        Action::CloseAfterBodyBytes(n) | Action::StallAfterBodyBytes(n) => (Some(n), None),
        Action::SlowRead { bytes_per_sec } => (None, Some(bytes_per_sec.max(1))),
        _ => (None, None),
    };
    let pumped = pump_body(conn, &mut body, &mut progress, limit, rate, shared);
    drop(progress); // the record is final before the client hears anything
    pumped?;

    let close = head.wants_close();
    let w = conn.get_mut();
    match action {
        Action::CloseImmediately | Action::CloseAfterBodyBytes(_) => Ok(Next::Abort),
        Action::StallAfterBodyBytes(_) => {
            shared.pause_until(None);
            Ok(Next::Abort)
        }
        Action::Respond {
            status,
            headers,
            body,
        } => respond(w, head, status, &headers, &body, close),
        Action::DelayResponse(delay) => {
            if !shared.pause_until(Instant::now().checked_add(delay)) {
                return Ok(Next::Abort);
            }
            respond(w, head, 200, &[], b"ok", close)
        }
        Action::RetryAfter { status, seconds } => {
            let headers = [("Retry-After".to_string(), seconds.to_string())];
            respond(w, head, status, &headers, b"retry later", close)
        }
        Action::Redirect { status, location } => {
            let headers = [("Location".to_string(), location)];
            respond(w, head, status, &headers, b"", close)
        }
        Action::SlowRead { .. } => respond(w, head, 200, &[], b"ok", close),
        Action::Garbage => {
            w.write_all(GARBAGE)?;
            w.flush()?;
            Ok(Next::Abort)
        }
        Action::HugeBody(len) => stream_body(w, head, len, close, shared),
    }
}

/// Reads the body into `progress` until it ends or `limit` bytes are read, at about `rate`
/// bytes per second if given. Fails if the client goes away or the server stops.
fn pump_body<S: Read>(
    conn: &mut BufReader<S>,
    body: &mut BodyReader,
    progress: &mut BodyProgress<'_>,
    limit: Option<u64>,
    rate: Option<u64>,
    shared: &Shared,
) -> io::Result<()> {
    let piece = rate.map_or(IO_BUF, |bps| (bps / 20).clamp(1, IO_BUF as u64) as usize);
    let mut buf = vec![0u8; piece];
    let started = Instant::now();
    let mut received = 0u64;
    while !body.is_done() {
        let left = limit.map_or(u64::MAX, |l| l.saturating_sub(received));
        if left == 0 {
            return Ok(());
        }
        if shared.is_stopped() {
            return Err(io::Error::other("server stopping"));
        }
        let want = (piece as u64).min(left) as usize;
        let n = body.read(conn, &mut buf[..want])?;
        progress.add(&buf[..n]);
        received += n as u64;
        if let Some(bps) = rate {
            let due =
                Duration::try_from_secs_f64(received as f64 / bps as f64).unwrap_or(Duration::MAX);
            if !shared.pause_until(started.checked_add(due)) {
                return Err(io::Error::other("server stopping"));
            }
        }
    }
    progress.mark_complete();
    Ok(())
}

/// Writes a complete response (no body for `HEAD`).
fn respond(
    w: &mut impl Write,
    head: &RequestHead,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
    close: bool,
) -> io::Result<Next> {
    write_response_head(w, status, headers, Some(body.len() as u64), close)?;
    if head.method != "HEAD" {
        w.write_all(body)?;
    }
    w.flush()?;
    Ok(if close { Next::Close } else { Next::KeepAlive })
}

/// Answers 200 with `len` generated bytes, or an endless close-delimited body for `u64::MAX`.
fn stream_body(
    w: &mut impl Write,
    head: &RequestHead,
    len: u64,
    close: bool,
    shared: &Shared,
) -> io::Result<Next> {
    let endless = len == u64::MAX;
    let close = close || endless;
    write_response_head(w, 200, &[], (!endless).then_some(len), close)?;
    if head.method != "HEAD" {
        let pattern: Vec<u8> = (0..IO_BUF).map(|i| (i % 251) as u8).collect();
        let mut left = len;
        while left > 0 {
            if shared.is_stopped() {
                return Err(io::Error::other("server stopping"));
            }
            let n = left.min(IO_BUF as u64) as usize;
            w.write_all(&pattern[..n])?;
            if !endless {
                left -= n as u64;
            }
        }
    }
    w.flush()?;
    Ok(if close { Next::Close } else { Next::KeepAlive })
}
