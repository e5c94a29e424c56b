//! A raw HTTP/1.x client over a plain TCP socket, with just enough parsing to check what
//! a server put on the wire: the response head (parsed by `httparse`), how the body was
//! framed, whether it ended the way its framing says, and a body read as it arrives.
//!
//! Every read waits at most [`DEADLINE`]; a server that neither sends nor closes by then
//! is a hang, and the read panics naming what it was waiting for.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};

use crate::DEADLINE;

/// An HTTP/1.x request; sent with `Connection: close` unless it names a `Connection`
/// itself or [`keep_alive`](Request::keep_alive) says otherwise.
#[derive(Clone, Debug)]
pub struct Request {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The request target as sent, e.g. `/path?query`.
    pub target: String,
    /// The version on the request line, e.g. `HTTP/1.1`.
    pub version: &'static str,
    /// Header fields, in the order they are sent.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// Send the body chunked, in pieces of this size, instead of with `Content-Length`.
    pub chunked: Option<usize>,
    /// Leave the connection open after the response (no `Connection: close`).
    pub keep_alive: bool,
}

impl Request {
    /// `method target HTTP/1.1` with no headers and no body.
    pub fn new(method: &str, target: &str) -> Request {
        Request {
            method: method.to_owned(),
            target: target.to_owned(),
            version: "HTTP/1.1",
            headers: Vec::new(),
            body: Vec::new(),
            chunked: None,
            keep_alive: false,
        }
    }

    /// A `GET`.
    pub fn get(target: &str) -> Request {
        Request::new("GET", target)
    }

    /// A `HEAD`.
    pub fn head(target: &str) -> Request {
        Request::new("HEAD", target)
    }

    /// A `POST` of `body` as `content_type`.
    pub fn post(target: &str, content_type: &str, body: impl Into<Vec<u8>>) -> Request {
        Request::new("POST", target)
            .header("Content-Type", content_type)
            .body(body)
    }

    /// A `POST` of `fields`, urlencoded as a browser sends a form.
    pub fn form(target: &str, fields: &[(&str, &str)]) -> Request {
        let body = fields
            .iter()
            .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        Request::post(target, "application/x-www-form-urlencoded", body)
    }

    /// Adds a header field.
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Adds header fields.
    pub fn headers(self, headers: &[(&str, &str)]) -> Request {
        headers
            .iter()
            .fold(self, |request, (name, value)| request.header(name, value))
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// Sets the version on the request line.
    pub fn version(mut self, version: &'static str) -> Request {
        self.version = version;
        self
    }

    /// Sends the body chunked, in pieces of `piece` bytes.
    pub fn chunked(mut self, piece: usize) -> Request {
        self.chunked = Some(piece.max(1));
        self
    }

    /// Leaves the connection open after the response.
    pub fn keep_alive(mut self) -> Request {
        self.keep_alive = true;
        self
    }

    /// The request on the wire; `addr` is the `Host` unless the request names one.
    /// `Content-Length` is added for a body or a `POST`, unless the body is chunked or the
    /// request sets its own `Transfer-Encoding` (it frames the body by hand).
    pub fn to_bytes(&self, addr: SocketAddr) -> Vec<u8> {
        let mut head = format!("{} {} {}\r\n", self.method, self.target, self.version);
        let has = |name: &str| {
            self.headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
        };
        if !has("host") {
            head.push_str(&format!("Host: {addr}\r\n"));
        }
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if !has("connection") && !self.keep_alive {
            head.push_str("Connection: close\r\n");
        }
        let framed_by_hand = has("transfer-encoding");
        match self.chunked {
            Some(_) => head.push_str("Transfer-Encoding: chunked\r\n"),
            None if framed_by_hand => {}
            None if !self.body.is_empty() || self.method == "POST" => {
                head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
            }
            None => {}
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        match self.chunked {
            Some(piece) => {
                for part in self.body.chunks(piece) {
                    bytes.extend_from_slice(&chunk(part));
                }
                bytes.extend_from_slice(b"0\r\n\r\n");
            }
            None => bytes.extend_from_slice(&self.body),
        }
        bytes
    }
}

/// `data` as one chunk of a chunked body.
pub fn chunk(data: &[u8]) -> Vec<u8> {
    let mut bytes = format!("{:x}\r\n", data.len()).into_bytes();
    bytes.extend_from_slice(data);
    bytes.extend_from_slice(b"\r\n");
    bytes
}

/// Sends `request` on a fresh connection and reads the whole response (panicking if it is
/// cut short).
pub fn send(addr: SocketAddr, request: &Request) -> Response {
    let mut conn = Conn::connect(addr);
    conn.send(&request.to_bytes(addr));
    conn.read_response(&request.method)
}

/// `GET target` on a fresh connection: the whole response.
pub fn get(addr: SocketAddr, target: &str) -> Response {
    send(addr, &Request::get(target))
}

/// How the response body was delimited on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body by definition (HEAD, 1xx, 204, 304).
    NoBody,
    /// `Content-Length`.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Delimited by the server closing the connection.
    Close,
}

/// Response header fields in the order received: names lower-cased, values as raw bytes
/// (they may be latin-1).
#[derive(Clone, Debug, Default)]
pub struct Headers(Vec<(String, Vec<u8>)>);

impl Headers {
    /// The first value of `name`, as text (invalid UTF-8 replaced).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.bytes(name)
            .map(|v| std::str::from_utf8(v).unwrap_or("\u{fffd}"))
    }

    /// The first value of `name`, as sent.
    pub fn bytes(&self, name: &str) -> Option<&[u8]> {
        let name = name.to_ascii_lowercase();
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// Every value of `name`, in order, as text.
    pub fn all(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.0
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| std::str::from_utf8(v).unwrap_or("\u{fffd}"))
            .collect()
    }

    /// Every `(name, value)` pair, values as text.
    pub fn pairs(&self) -> Vec<(&str, String)> {
        self.0
            .iter()
            .map(|(n, v)| (n.as_str(), String::from_utf8_lossy(v).into_owned()))
            .collect()
    }
}

/// A status line and header fields.
#[derive(Clone, Debug)]
pub struct Head {
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub version: String,
    /// The status code.
    pub status: u16,
    /// The reason phrase (empty if it was not UTF-8).
    pub reason: String,
    /// The header fields.
    pub headers: Headers,
}

impl Head {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// How the body after this head is delimited, for a request of `method`.
    pub fn framing(&self, method: &str) -> Framing {
        if method.eq_ignore_ascii_case("HEAD")
            || (100..200).contains(&self.status)
            || self.status == 204
            || self.status == 304
        {
            Framing::NoBody
        } else if self
            .header("transfer-encoding")
            .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"))
        {
            Framing::Chunked
        } else if let Some(length) = self.header("content-length") {
            Framing::Length(length.trim().parse().expect("numeric Content-Length"))
        } else {
            Framing::Close
        }
    }
}

/// A response as the client saw it.
#[derive(Clone)]
pub struct Response {
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub version: String,
    /// The status code.
    pub status: u16,
    /// The reason phrase.
    pub reason: String,
    /// The header fields.
    pub headers: Headers,
    /// The body, decoded from its framing.
    pub body: Vec<u8>,
    /// How the body was delimited.
    pub framing: Framing,
    /// The body ended the way its framing says it must: all `Content-Length` bytes, or the
    /// last chunk. False means an aborted response.
    pub complete: bool,
}

impl std::fmt::Debug for Response {
    /// The body as text, cut short: assertion messages stay readable.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self.text();
        let shown: String = text.chars().take(2000).collect();
        f.debug_struct("Response")
            .field("version", &self.version)
            .field("status", &self.status)
            .field("headers", &self.headers.pairs())
            .field("framing", &self.framing)
            .field("complete", &self.complete)
            .field("body_len", &self.body.len())
            .field("body", &shown)
            .finish()
    }
}

impl Response {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// Every value of header `name`.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers.all(name)
    }

    /// The first value of header `name`, as sent.
    pub fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        self.headers.bytes(name)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics, showing the response, if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {:?}", self.status, self.text()))
    }

    /// Asserts the status and that `Content-Type` starts with `content_type`.
    pub fn expect(&self, status: u16, content_type: &str) -> &Response {
        assert_eq!(self.status, status, "{self:?}");
        let actual = self.header("content-type").unwrap_or_default();
        assert!(
            actual.starts_with(content_type),
            "Content-Type {actual:?}, expected {content_type:?}: {self:?}"
        );
        self
    }

    /// A response with a body of known length must announce it exactly.
    pub fn assert_length_matches(&self) {
        if let Framing::Length(n) = self.framing {
            assert_eq!(n, self.body.len(), "Content-Length and body disagree");
        }
    }
}

/// One step of reading a body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Chunk {
    /// Body bytes, as they arrived (never more than the rest of the current chunk).
    Data(Vec<u8>),
    /// The body ended as its framing says: the last chunk and trailers were read, or (for
    /// a body delimited by the connection) the server closed it.
    End,
    /// The connection ended inside the body; holds what had arrived of the chunk.
    Truncated(Vec<u8>),
}

/// A client connection.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    eof: bool,
    /// Decoding state of a chunked body: bytes left in the current chunk.
    chunk_left: Option<usize>,
}

impl Conn {
    /// Connects to `addr`, with Nagle off and reads bounded by [`DEADLINE`].
    pub fn connect(addr: SocketAddr) -> Conn {
        Conn::try_connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
    }

    /// Like [`Conn::connect`], for a server that may have stopped listening.
    pub fn try_connect(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(DEADLINE))?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
            eof: false,
            chunk_left: None,
        })
    }

    /// The socket, for what this client does not do itself (shutting down a direction).
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// The client's end of the connection.
    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().expect("local addr")
    }

    /// Sends `bytes` as they are.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
        self.stream.flush().expect("flush");
    }

    /// Sends without panicking: the server may have closed the connection.
    pub fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Reads more bytes into the buffer; false once the server has closed the connection
    /// (or reset it: the framing checks catch a truncation). Panics, naming `awaiting`, if
    /// nothing arrives within [`DEADLINE`].
    fn fill(&mut self, awaiting: &str) -> bool {
        if self.eof {
            return false;
        }
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.eof = true;
                    return false;
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return true;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!(
                        "the server sent nothing for {DEADLINE:?} while the test awaited {awaiting} \
                         (it neither answered nor closed the connection); so far: {:?}",
                        String::from_utf8_lossy(&self.buf)
                    )
                }
                Err(_) => {
                    self.eof = true;
                    return false;
                }
            }
        }
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        let rest = self.buf.split_off(n);
        std::mem::replace(&mut self.buf, rest)
    }

    /// Whether the server closed the connection without sending anything more.
    pub fn closed(&mut self) -> bool {
        self.buf.is_empty() && !self.fill("more bytes or the end of the connection")
    }

    /// Everything the server sends until it closes the connection.
    pub fn read_to_end(&mut self) -> Vec<u8> {
        while self.fill("the server to close the connection") {}
        std::mem::take(&mut self.buf)
    }

    /// The next bytes of a body delimited by the connection closing; [`Chunk::End`] once
    /// it has.
    pub fn next_until_close(&mut self) -> Chunk {
        if self.buf.is_empty() && !self.fill("more bytes or the end of the connection") {
            return Chunk::End;
        }
        let n = self.buf.len();
        Chunk::Data(self.take(n))
    }

    /// Up to and including the next CRLF; `None` if the connection ended first.
    fn read_line(&mut self, awaiting: &str) -> Option<Vec<u8>> {
        loop {
            if let Some(pos) = find(&self.buf, b"\r\n") {
                let mut line = self.take(pos + 2);
                line.truncate(pos);
                return Some(line);
            }
            if !self.fill(awaiting) {
                return None;
            }
        }
    }

    /// A status line and headers; `None` if the connection ends before a complete head.
    /// Panics if the bytes are not a response head: that is how stray body bytes left on a
    /// keep-alive connection show up.
    pub fn try_read_head(&mut self) -> Option<Head> {
        loop {
            let mut fields = [httparse::EMPTY_HEADER; 128];
            let mut parsed = httparse::Response::new(&mut fields);
            match parsed.parse(&self.buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let head = Head {
                        version: format!("HTTP/1.{}", parsed.version.unwrap_or(1)),
                        status: parsed.code.unwrap_or_default(),
                        reason: parsed.reason.unwrap_or_default().to_owned(),
                        headers: Headers(
                            parsed
                                .headers
                                .iter()
                                .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
                                .collect(),
                        ),
                    };
                    self.take(len);
                    return Some(head);
                }
                Ok(httparse::Status::Partial) => {
                    if !self.fill("a response head") {
                        return None;
                    }
                }
                Err(e) => panic!(
                    "expected a response head, got {:?} ({e}; stray bytes on the connection?)",
                    String::from_utf8_lossy(&self.buf)
                ),
            }
        }
    }

    /// A status line and headers; panics if the connection ends first.
    pub fn read_head(&mut self) -> Head {
        self.try_read_head().unwrap_or_else(|| {
            panic!(
                "the connection ended before a complete response head; got {:?}",
                String::from_utf8_lossy(&self.buf)
            )
        })
    }

    /// The next piece of a chunked body, as soon as any of it has arrived.
    pub fn next_chunk(&mut self) -> Chunk {
        loop {
            match self.chunk_left {
                None => {
                    let Some(line) = self.read_line("a chunk size line") else {
                        return Chunk::Truncated(Vec::new());
                    };
                    let line = String::from_utf8_lossy(&line).into_owned();
                    let size =
                        usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                            .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
                    if size == 0 {
                        loop {
                            match self.read_line("the trailer section") {
                                Some(trailer) if trailer.is_empty() => return Chunk::End,
                                Some(_) => {}
                                None => return Chunk::Truncated(Vec::new()),
                            }
                        }
                    }
                    self.chunk_left = Some(size);
                }
                Some(0) => {
                    match self.read_line("the CRLF after a chunk") {
                        Some(line) => assert_eq!(line, b"", "chunk data not followed by CRLF"),
                        None => return Chunk::Truncated(Vec::new()),
                    }
                    self.chunk_left = None;
                }
                Some(left) => {
                    if self.buf.is_empty() && !self.fill("the data of a chunk") {
                        return Chunk::Truncated(Vec::new());
                    }
                    let n = left.min(self.buf.len());
                    self.chunk_left = Some(left - n);
                    return Chunk::Data(self.take(n));
                }
            }
        }
    }

    /// Reads a chunked body until its decoded bytes contain `needle`; returns them.
    pub fn read_chunked_until(&mut self, needle: &[u8]) -> Vec<u8> {
        let mut seen = Vec::new();
        while find(&seen, needle).is_none() {
            match self.next_chunk() {
                Chunk::Data(data) => seen.extend_from_slice(&data),
                end => panic!(
                    "body ended ({end:?}) without {:?}: {:?}",
                    String::from_utf8_lossy(needle),
                    String::from_utf8_lossy(&seen)
                ),
            }
        }
        seen
    }

    /// Reads the rest of a chunked body; panics if the connection ends inside it.
    pub fn read_chunked_to_end(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            match self.next_chunk() {
                Chunk::Data(data) => body.extend_from_slice(&data),
                Chunk::End => return body,
                Chunk::Truncated(_) => panic!(
                    "the connection ended inside a chunked body after {:?}",
                    String::from_utf8_lossy(&body)
                ),
            }
        }
    }

    /// Reads the body that `head` announces, for a request of `method`, however it ends.
    pub fn read_body(&mut self, head: Head, method: &str) -> Response {
        let framing = head.framing(method);
        let (body, complete) = match framing {
            Framing::NoBody => (Vec::new(), true),
            Framing::Length(n) => {
                while self.buf.len() < n && self.fill("the rest of a Content-Length body") {}
                let body = self.take(n.min(self.buf.len()));
                let complete = body.len() == n;
                (body, complete)
            }
            Framing::Chunked => {
                let mut body = Vec::new();
                let complete = loop {
                    match self.next_chunk() {
                        Chunk::Data(data) => body.extend_from_slice(&data),
                        Chunk::End => break true,
                        Chunk::Truncated(partial) => {
                            body.extend_from_slice(&partial);
                            break false;
                        }
                    }
                };
                (body, complete)
            }
            Framing::Close => (self.read_to_end(), true),
        };
        Response {
            version: head.version,
            status: head.status,
            reason: head.reason,
            headers: head.headers,
            body,
            framing,
            complete,
        }
    }

    /// One response (an interim 1xx counts as one), however it ends: see
    /// [`Response::complete`].
    pub fn read_possibly_cut_response(&mut self, method: &str) -> Response {
        let head = self.read_head();
        self.read_body(head, method)
    }

    /// One whole response (an interim 1xx counts as one); panics if it is cut short.
    pub fn read_response(&mut self, method: &str) -> Response {
        let response = self.read_possibly_cut_response(method);
        assert!(
            response.complete,
            "the connection ended inside the body ({:?} framing, {} bytes arrived): {response:?}",
            response.framing,
            response.body.len()
        );
        response
    }

    /// The next final response, skipping any 1xx, however it ends.
    pub fn read_final_response(&mut self, method: &str) -> Response {
        loop {
            let response = self.read_possibly_cut_response(method);
            if response.status >= 200 {
                return response;
            }
        }
    }

    /// A response the server must abort. `None` if the connection closed before a complete
    /// head: a host may drop what it has buffered when the body fails before the first
    /// flush, so an abort can reach the client as early as that.
    pub fn read_aborted_response(&mut self, method: &str) -> Option<Response> {
        let head = self.try_read_head()?;
        Some(self.read_body(head, method))
    }
}

/// Where `needle` first occurs in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Whether `hay` contains the text `needle`.
pub fn contains(hay: &[u8], needle: &str) -> bool {
    find(hay, needle.as_bytes()).is_some()
}

/// Percent-encodes everything but unreserved characters, as forms do (space as `%20`).
pub fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
