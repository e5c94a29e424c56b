//! The contract between a host HTTP server and the engine.

use std::net::SocketAddr;

use bytes::Bytes;
use futures::Stream;

/// A boxed error from a host's request body stream.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `wsgi.url_scheme` of a connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Plain HTTP.
    #[default]
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// The scheme as it appears in `wsgi.url_scheme`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    /// The port a URL of this scheme means when it names none, as `SERVER_PORT` text.
    pub(crate) fn default_port(self) -> &'static str {
        match self {
            Scheme::Http => "80",
            Scheme::Https => "443",
        }
    }
}

/// Facts about the connection a request arrived on, which the request itself does not carry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnInfo {
    /// The client's address: `REMOTE_ADDR` and `REMOTE_PORT`.
    pub peer_addr: Option<SocketAddr>,
    /// The server's address, used for `SERVER_NAME`/`SERVER_PORT` when there is no `Host`.
    pub local_addr: Option<SocketAddr>,
    /// `wsgi.url_scheme`.
    pub scheme: Scheme,
    /// The prefix the application is mounted under (`SCRIPT_NAME`), without a trailing
    /// slash; empty when the application owns the whole URL space.
    pub mount: String,
    /// Whether the connection came over a UNIX socket, whose peer has no address
    /// ([`peer_addr`](Self::peer_addr) is then `None`). A host must know it from the socket
    /// it accepted on, never guess it from a missing address: the peer of such a connection
    /// is a [trusted proxy](crate::EngineBuilder::trusted_proxies) when the list holds
    /// `"unix"`, and a TCP peer whose address could not be read must not pass for one.
    /// Default `false`; [`ConnInfo::unix`] sets it.
    pub unix_socket: bool,
}

impl ConnInfo {
    /// Connection facts for a plain-HTTP connection with the application at the root.
    pub fn new(peer_addr: Option<SocketAddr>, local_addr: Option<SocketAddr>) -> Self {
        ConnInfo {
            peer_addr,
            local_addr,
            scheme: Scheme::Http,
            mount: String::new(),
            unix_socket: false,
        }
    }

    /// Connection facts for a plain-HTTP connection on a UNIX socket (a proxy on the same
    /// machine, such as nginx with `proxy_pass http://unix:/run/app.sock`): no peer or local
    /// address, and a peer that the trusted-proxy entry `"unix"` trusts.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use futures::executor::block_on;
    /// use http_body_util::BodyExt as _;
    /// use wsgi_core::{ConnInfo, Engine};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // wsgiref's demo application answers with its environ.
    /// let engine = Engine::builder("wsgiref.simple_server:demo_app")
    ///     .threads(1)
    ///     .trusted_proxies(["unix"])
    ///     .build()?;
    /// let body = futures::stream::empty::<Result<Bytes, std::io::Error>>();
    /// let request = http::Request::get("/")
    ///     .header("x-forwarded-for", "203.0.113.7")
    ///     .header("x-forwarded-proto", "https")
    ///     .body(body)?;
    /// let response = block_on(engine.call((request, ConnInfo::unix())));
    /// let text = block_on(response.into_body().collect())?.to_bytes();
    /// let text = String::from_utf8_lossy(&text);
    /// assert!(text.contains("REMOTE_ADDR = '203.0.113.7'"), "{text}");
    /// assert!(text.contains("wsgi.url_scheme = 'https'"), "{text}");
    /// # Ok(())
    /// # }
    /// ```
    pub fn unix() -> Self {
        ConnInfo {
            unix_socket: true,
            ..ConnInfo::new(None, None)
        }
    }

    /// Mounts the application under `prefix` (`"/py"`); a trailing slash is ignored.
    pub fn with_mount(mut self, prefix: impl Into<String>) -> Self {
        let mut prefix = prefix.into();
        while prefix.ends_with('/') {
            prefix.pop();
        }
        if !prefix.is_empty() && !prefix.starts_with('/') {
            prefix.insert(0, '/');
        }
        self.mount = prefix;
        self
    }

    /// Sets `wsgi.url_scheme`.
    pub fn with_scheme(mut self, scheme: Scheme) -> Self {
        self.scheme = scheme;
        self
    }
}

/// The one trait a host HTTP server implements to hand a request to an
/// [`Engine`](crate::Engine).
///
/// A host provides three things: the request head, the body as a stream of byte chunks
/// (the engine reads it whole before the application runs, except for bodies it streams,
/// such as those behind `Expect: 100-continue`, which it pulls only when the application
/// reads `wsgi.input`, so a host that answers `100 Continue` on first read sends it at the
/// right time), and the facts of the connection. `parts.uri` must be the target as the client sent it, not a copy
/// stripped by a router: the engine splits it into `SCRIPT_NAME` and `PATH_INFO` using
/// [`ConnInfo::mount`].
///
/// Environ entries the host adds (`REMOTE_USER`, keys of its own) travel in the head's
/// extensions as an [`EnvironExtras`](crate::EnvironExtras), which the engine takes from
/// there.
///
/// A ready-made implementation covers `(http::Request<B>, ConnInfo)` for any body `B` that
/// is such a stream, which is all most hosts need:
///
/// ```
/// use bytes::Bytes;
/// use wsgi_core::{ConnInfo, HostRequest};
///
/// let body = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"hi"))]);
/// let request = http::Request::post("/echo").body(body).unwrap();
/// let (parts, _body, conn) = (request, ConnInfo::new(None, None)).into_parts();
/// assert_eq!(parts.uri.path(), "/echo");
/// assert_eq!(conn.mount, "");
/// ```
pub trait HostRequest: Send + 'static {
    /// The request body.
    type Body: Stream<Item = Result<Bytes, BoxError>> + Send + 'static;

    /// Splits the request into its head, its body and its connection facts.
    fn into_parts(self) -> (http::request::Parts, Self::Body, ConnInfo);
}

/// Adapts a body stream with any error type to the [`HostRequest::Body`] item type.
#[derive(Debug)]
pub struct MapErrBody<B>(B);

impl<B, E> Stream for MapErrBody<B>
where
    B: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Into<BoxError>,
{
    type Item = Result<Bytes, BoxError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::pin::Pin::new(&mut self.0)
            .poll_next(cx)
            .map(|item| item.map(|r| r.map_err(Into::into)))
    }
}

impl<B, E> HostRequest for (http::Request<B>, ConnInfo)
where
    B: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
    E: Into<BoxError>,
{
    type Body = MapErrBody<B>;

    fn into_parts(self) -> (http::request::Parts, Self::Body, ConnInfo) {
        let (parts, body) = self.0.into_parts();
        (parts, MapErrBody(body), self.1)
    }
}
