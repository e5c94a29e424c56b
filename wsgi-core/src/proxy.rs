//! Trusted reverse proxies: when (and only when) the peer is one of them, the client's
//! address, the scheme, the host and a mount prefix come from the proxy's headers —
//! `Forwarded` (RFC 7239) or `X-Forwarded-For`/`-Proto`/`-Host`/`-Prefix` — as with
//! mod_wsgi's `WSGITrustedProxies` or gunicorn's `forwarded_allow_ips`. From anyone else
//! those headers are ordinary `HTTP_*` variables and change nothing.
//!
//! A peer on a UNIX socket has no address to match: it is trusted when the list holds the
//! entry [`UNIX`], and only then. gunicorn trusts every UNIX-socket peer unconditionally
//! (its `forwarded_allow_ips` "does not affect UNIX socket connections"), but it also
//! trusts 127.0.0.1 and ::1 by default, while this list trusts no one unless told: a socket
//! whose mode lets any local user connect would otherwise let each of them choose their
//! `REMOTE_ADDR` and scheme. uvicorn and Granian do not trust UNIX peers by default either
//! (uvicorn's proposal for a dedicated `unix:` entry is the same idea as [`UNIX`]).

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

use crate::error::Error;
use crate::host::ConnInfo;

/// What trusted proxies said about the original request.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Forwarded {
    pub(crate) client: Option<IpAddr>,
    pub(crate) https: Option<bool>,
    pub(crate) host: Option<String>,
    pub(crate) prefix: Option<String>,
}

/// The entry of a trusted-proxy list that trusts every peer on a UNIX socket.
pub(crate) const UNIX: &str = "unix";

/// The other end of a connection, as far as trusting it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peer {
    /// A TCP peer.
    Ip(IpAddr),
    /// A peer on a UNIX socket, which the host said the connection is.
    UnixSocket,
    /// A host that did not say: never trusted.
    Unknown,
}

impl Peer {
    /// The peer of a connection with `conn`'s facts.
    pub(crate) fn of(conn: &ConnInfo) -> Peer {
        match (conn.peer_addr, conn.unix_socket) {
            (Some(addr), _) => Peer::Ip(addr.ip()),
            (None, true) => Peer::UnixSocket,
            (None, false) => Peer::Unknown,
        }
    }
}

/// The set of proxies whose forwarding headers are believed.
#[derive(Debug, Clone, Default)]
pub(crate) struct TrustedProxies {
    nets: Vec<IpNet>,
    /// Whether the list holds [`UNIX`].
    unix: bool,
}

impl TrustedProxies {
    /// Parses `10.0.0.0/8`, `127.0.0.1`, `::1`, `fd00::/8` and [`UNIX`].
    pub(crate) fn parse<S: AsRef<str>>(items: &[S]) -> Result<Self, Error> {
        let mut proxies = TrustedProxies::default();
        for item in items {
            let s = item.as_ref().trim();
            if s.eq_ignore_ascii_case(UNIX) {
                proxies.unix = true;
                continue;
            }
            let net = s
                .parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|source| Error::TrustedProxy {
                    entry: s.to_owned(),
                    source,
                })?;
            proxies.nets.push(net);
        }
        Ok(proxies)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.nets.is_empty() && !self.unix
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// What the headers say, if `peer` is trusted; `None` otherwise.
    pub(crate) fn read(&self, peer: Peer, headers: &HeaderMap) -> Option<Forwarded> {
        let trusted = match peer {
            Peer::Ip(ip) => self.trusts(ip),
            Peer::UnixSocket => self.unix,
            Peer::Unknown => false,
        };
        if !trusted {
            return None;
        }
        let mut out = Forwarded::default();
        let forwarded = list(headers, "forwarded");
        if !forwarded.is_empty() {
            let elements: Vec<Vec<(String, String)>> = forwarded.iter().map(|e| pairs(e)).collect();
            let chain = elements
                .iter()
                .filter_map(|e| find(e, "for").and_then(node_ip));
            out.client = self.client(chain.collect());
            // The element our direct peer appended describes the request it received.
            if let Some(last) = elements.last() {
                out.https = find(last, "proto").map(|p| p.eq_ignore_ascii_case("https"));
                out.host = find(last, "host").map(str::to_owned);
            }
        } else {
            let chain = list(headers, "x-forwarded-for")
                .iter()
                .filter_map(|s| node_ip(s))
                .collect();
            out.client = self.client(chain);
            out.https = list(headers, "x-forwarded-proto")
                .last()
                .map(|p| p.eq_ignore_ascii_case("https"));
            out.host = list(headers, "x-forwarded-host").last().cloned();
        }
        out.prefix = headers
            .get("x-forwarded-prefix")
            .and_then(|v| v.to_str().ok())
            .map(|p| p.trim().trim_end_matches('/'))
            .filter(|p| p.starts_with('/') && !p.contains(['?', '#', '\\']))
            .map(str::to_owned);
        Some(out)
    }

    /// The client is the rightmost address that is not itself a trusted proxy.
    fn client(&self, chain: Vec<IpAddr>) -> Option<IpAddr> {
        chain
            .iter()
            .rev()
            .find(|ip| !self.trusts(**ip))
            .or(chain.first())
            .copied()
    }
}

/// The comma-separated items of every `name` header, in order.
fn list(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// `for=192.0.2.1;proto=https` -> `[("for", "192.0.2.1"), ("proto", "https")]`.
fn pairs(element: &str) -> Vec<(String, String)> {
    element
        .split(';')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| {
            (
                k.trim().to_ascii_lowercase(),
                v.trim().trim_matches('"').to_owned(),
            )
        })
        .collect()
}

fn find<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// `192.0.2.1`, `192.0.2.1:8080`, `[2001:db8::1]:443`, `2001:db8::1`.
fn node_ip(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse() {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    node.rsplit_once(':')?.0.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn ip(text: &str) -> Peer {
        Peer::Ip(text.parse().unwrap())
    }

    #[test]
    fn untrusted_peers_change_nothing() {
        let proxies = TrustedProxies::parse(&["10.0.0.0/8"]).unwrap();
        let h = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-prefix", "/evil"),
        ]);
        assert_eq!(proxies.read(ip("192.168.1.1"), &h), None);
        assert_eq!(TrustedProxies::default().read(ip("10.0.0.1"), &h), None);
    }

    #[test]
    fn x_forwarded_headers_from_a_trusted_proxy() {
        let proxies = TrustedProxies::parse(&["10.0.0.0/8", "127.0.0.1"]).unwrap();
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.0.0.7"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "example.com"),
            ("x-forwarded-prefix", "/app/"),
        ]);
        let f = proxies.read(ip("127.0.0.1"), &h).unwrap();
        assert_eq!(f.client, Some("1.2.3.4".parse().unwrap()));
        assert_eq!(f.https, Some(true));
        assert_eq!(f.host.as_deref(), Some("example.com"));
        assert_eq!(f.prefix.as_deref(), Some("/app"));
    }

    #[test]
    fn rfc7239_forwarded() {
        let proxies = TrustedProxies::parse(&["::1"]).unwrap();
        let h = headers(&[(
            "forwarded",
            "for=\"[2001:db8::1]:4711\";proto=http, for=10.1.1.1;proto=https;host=a.example",
        )]);
        let f = proxies.read(ip("::1"), &h).unwrap();
        assert_eq!(f.client, Some("10.1.1.1".parse().unwrap()));
        assert_eq!(f.https, Some(true));
        assert_eq!(f.host.as_deref(), Some("a.example"));
        assert!(TrustedProxies::parse(&["not-an-ip"]).is_err());
    }

    #[test]
    fn a_unix_socket_peer_is_trusted_only_by_the_unix_entry() {
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.7, 10.0.0.7"),
            ("x-forwarded-proto", "https"),
        ]);
        let with_unix = TrustedProxies::parse(&["10.0.0.0/8", " UNIX "]).unwrap();
        let f = with_unix.read(Peer::UnixSocket, &h).unwrap();
        assert_eq!(f.client, Some("203.0.113.7".parse().unwrap()));
        assert_eq!(f.https, Some(true));
        // The entry trusts UNIX sockets, not every peer.
        assert_eq!(with_unix.read(ip("192.0.2.1"), &h), None);

        // IP ranges, even all of them, do not name a UNIX peer.
        let everyone = TrustedProxies::parse(&["0.0.0.0/0", "::/0"]).unwrap();
        assert_eq!(everyone.read(Peer::UnixSocket, &h), None);
        assert_eq!(TrustedProxies::default().read(Peer::UnixSocket, &h), None);
        assert!(!TrustedProxies::parse(&["unix"]).unwrap().is_empty());
    }

    #[test]
    fn a_peer_the_host_did_not_describe_is_never_trusted() {
        let h = headers(&[("x-forwarded-for", "203.0.113.7")]);
        let all = TrustedProxies::parse(&["0.0.0.0/0", "::/0", "unix"]).unwrap();
        assert_eq!(all.read(Peer::Unknown, &h), None);
        assert_eq!(Peer::of(&ConnInfo::new(None, None)), Peer::Unknown);
        assert_eq!(Peer::of(&ConnInfo::unix()), Peer::UnixSocket);
        let tcp = ConnInfo::new(Some("192.0.2.1:4000".parse().unwrap()), None);
        assert_eq!(Peer::of(&tcp), ip("192.0.2.1"));
    }

    #[test]
    fn unix_with_a_path_is_not_an_entry() {
        // `unix:/run/app.sock` looks like `--bind`'s spelling, but the entry trusts every
        // UNIX socket: a path would promise a choice the list does not make.
        assert!(TrustedProxies::parse(&["unix:/run/app.sock"]).is_err());
    }
}
