//! HTTP/1.1 wire format for the test server: request heads, body framing, response heads.

use std::io::{self, BufRead, Read, Write};

/// Longest accepted request line, header line or chunk-size line.
const MAX_LINE: u64 = 16 * 1024;
/// Most header lines accepted in one request head (or chunked trailer).
const MAX_HEADERS: usize = 256;

/// The parsed start line and headers of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    /// Request target as sent, query included.
    pub path: String,
    pub version: String,
    /// Headers in the order and case they were sent.
    pub headers: Vec<(String, String)>,
}

impl RequestHead {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    pub fn expects_continue(&self) -> bool {
        self.header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    }

    /// Whether the client asked for the connection to end after this request.
    pub fn wants_close(&self) -> bool {
        let tokens = self.header("connection").unwrap_or("").to_ascii_lowercase();
        let has = |t: &str| tokens.split(',').any(|x| x.trim() == t);
        if has("close") {
            true
        } else {
            self.version == "HTTP/1.0" && !has("keep-alive")
        }
    }
}

/// First value of header `name` (case-insensitive) in `headers`.
pub fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

fn eof(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, msg.to_string())
}

/// Reads one line without its CRLF; `None` on end of stream before any byte.
fn read_line(r: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    if r.take(MAX_LINE).read_until(b'\n', &mut line)? == 0 {
        return Ok(None);
    }
    if line.pop() != Some(b'\n') {
        return Err(invalid("line too long or cut off"));
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| invalid("line is not UTF-8"))
}

/// Reads `Name: value` lines up to the empty line that ends a head or a chunked trailer.
fn read_header_lines(r: &mut impl BufRead) -> io::Result<Vec<(String, String)>> {
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?.ok_or_else(|| eof("connection closed inside headers"))?;
        if line.is_empty() {
            return Ok(headers);
        }
        if headers.len() == MAX_HEADERS {
            return Err(invalid("too many header lines"));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid("header line without ':'"))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
}

/// Reads the next request head; `None` if the client closed the connection between requests.
pub fn read_head(r: &mut impl BufRead) -> io::Result<Option<RequestHead>> {
    let start = loop {
        match read_line(r)? {
            None => return Ok(None),
            Some(line) if line.is_empty() => continue, // tolerated before a request line
            Some(line) => break line,
        }
    };
    let mut parts = start.split(' ');
    let (Some(method), Some(path), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("malformed request line"));
    };
    if method.is_empty() || path.is_empty() || !version.starts_with("HTTP/1.") {
        return Err(invalid("malformed request line"));
    }
    Ok(Some(RequestHead {
        method: method.to_string(),
        path: path.to_string(),
        version: version.to_string(),
        headers: read_header_lines(r)?,
    }))
}

/// Decodes a request body framed by `Content-Length` or `Transfer-Encoding: chunked`.
#[derive(Debug)]
pub struct BodyReader {
    framing: Framing,
    done: bool,
}

#[derive(Debug)]
enum Framing {
    Length { remaining: u64 },
    Chunked { left_in_chunk: u64 },
}

impl BodyReader {
    pub fn for_head(head: &RequestHead) -> io::Result<BodyReader> {
        if let Some(te) = head.header("transfer-encoding") {
            let last = te.rsplit(',').next().unwrap_or("").trim();
            if !last.eq_ignore_ascii_case("chunked") {
                return Err(invalid("unsupported transfer-encoding"));
            }
            return Ok(BodyReader {
                framing: Framing::Chunked { left_in_chunk: 0 },
                done: false,
            });
        }
        let remaining = match head.header("content-length") {
            Some(v) => v
                .parse::<u64>()
                .map_err(|_| invalid("bad content-length"))?,
            None => 0,
        };
        Ok(BodyReader {
            framing: Framing::Length { remaining },
            done: remaining == 0,
        })
    }

    /// Whether the whole body (and any chunked trailer) has been read.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Reads up to `buf.len()` (> 0) body bytes; `Ok(0)` only once the body is complete.
    /// A connection closed mid-body is an `UnexpectedEof` error.
    pub fn read(&mut self, r: &mut impl BufRead, buf: &mut [u8]) -> io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        match &mut self.framing {
            Framing::Length { remaining } => {
                let n = read_some(r, buf, *remaining)?;
                *remaining -= n as u64;
                self.done = *remaining == 0;
                Ok(n)
            }
            Framing::Chunked { left_in_chunk } => {
                if *left_in_chunk == 0 {
                    let size = read_chunk_size(r)?;
                    if size == 0 {
                        read_header_lines(r)?; // trailer
                        self.done = true;
                        return Ok(0);
                    }
                    *left_in_chunk = size;
                }
                let n = read_some(r, buf, *left_in_chunk)?;
                *left_in_chunk -= n as u64;
                if *left_in_chunk == 0 && read_line(r)? != Some(String::new()) {
                    return Err(invalid("chunk data not followed by CRLF"));
                }
                Ok(n)
            }
        }
    }
}

/// One `read` of at most `max` bytes; end of stream is an error.
fn read_some(r: &mut impl Read, buf: &mut [u8], max: u64) -> io::Result<usize> {
    let want = buf.len().min(usize::try_from(max).unwrap_or(usize::MAX));
    match r.read(&mut buf[..want])? {
        0 => Err(eof("connection closed inside the body")),
        n => Ok(n),
    }
}

fn read_chunk_size(r: &mut impl BufRead) -> io::Result<u64> {
    let line = read_line(r)?.ok_or_else(|| eof("connection closed before a chunk size"))?;
    let hex = line.split(';').next().unwrap_or("").trim();
    u64::from_str_radix(hex, 16).map_err(|_| invalid("bad chunk size"))
}

/// Writes a response status line and headers. Adds `Content-Length` when `content_length`
/// is given and `headers` has none, and `Connection: close` when `close`.
pub fn write_response_head(
    w: &mut impl Write,
    status: u16,
    headers: &[(String, String)],
    content_length: Option<u64>,
    close: bool,
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(len) = content_length {
        if find_header(headers, "content-length").is_none() {
            head.push_str(&format!("Content-Length: {len}\r\n"));
        }
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())
}

/// Reason phrase for the status codes tests use; anything else gets `Status`.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}
