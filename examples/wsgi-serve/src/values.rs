//! The types of option values: each parses and checks its text for clap, so that a bad value
//! is a usage error (exit 2) before anything starts, and prints as it is written, so that a
//! default shown in `--help` comes from the constant it is made of.

use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::num::NonZeroUsize;
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;

/// An address to listen on, `HOST:PORT`, with what it resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListenAddr {
    text: String,
    addrs: Vec<SocketAddr>,
}

impl ListenAddr {
    /// The addresses to try binding, in order.
    pub(crate) fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }
}

impl From<SocketAddr> for ListenAddr {
    fn from(addr: SocketAddr) -> Self {
        ListenAddr {
            text: addr.to_string(),
            addrs: vec![addr],
        }
    }
}

impl FromStr for ListenAddr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let addrs: Vec<SocketAddr> = text
            .to_socket_addrs()
            .map_err(|e| format!("expected HOST:PORT, e.g. 127.0.0.1:8000 or [::1]:8000 ({e})"))?
            .collect();
        if addrs.is_empty() {
            return Err(format!("{text} resolves to no address"));
        }
        Ok(ListenAddr {
            text: text.to_owned(),
            addrs,
        })
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Where to listen: `HOST:PORT`, or `unix:PATH` for a UNIX socket (gunicorn's and
/// Granian's spelling).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BindAddr {
    /// A TCP address.
    Tcp(ListenAddr),
    /// The path of a UNIX socket.
    Unix(std::path::PathBuf),
}

impl FromStr for BindAddr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.strip_prefix("unix:") {
            Some("") => Err("expected unix:PATH, e.g. unix:/run/app/http.sock".into()),
            Some(path) => Ok(BindAddr::Unix(path.into())),
            None => text.parse().map(BindAddr::Tcp),
        }
    }
}

impl fmt::Display for BindAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindAddr::Tcp(addr) => addr.fmt(f),
            BindAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// The prefix of the health paths: `/` (for `/livez`) or a path such as `/-` (for
/// `/-/livez`), without a trailing slash.
pub(crate) fn health_prefix(text: &str) -> Result<String, String> {
    let prefix = text.trim_end_matches('/');
    if !text.starts_with('/') || prefix.contains(['?', '#', ' ']) {
        return Err(format!("expected a path such as / or /-, got {text:?}"));
    }
    Ok(prefix.to_owned())
}

/// A file mode in octal, as `chmod` takes it: `660`, `0660`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mode(pub(crate) u32);

impl FromStr for Mode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        u32::from_str_radix(text, 8)
            .ok()
            .filter(|&mode| mode <= 0o7777)
            .map(Mode)
            .ok_or_else(|| format!("expected an octal mode such as 660 or 0600, got {text:?}"))
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

/// The owner to give a UNIX socket: `UID`, `UID:GID` or `:GID`, as numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Owner {
    /// The user, if it changes.
    pub(crate) uid: Option<u32>,
    /// The group, if it changes.
    pub(crate) gid: Option<u32>,
}

impl FromStr for Owner {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("expected UID, UID:GID or :GID as numbers (see `id`), got {text:?}");
        let (uid, gid) = text.split_once(':').unwrap_or((text, ""));
        let number = |s: &str| -> Result<Option<u32>, String> {
            (!s.is_empty())
                .then(|| s.parse().map_err(|_| bad()))
                .transpose()
        };
        let owner = Owner {
            uid: number(uid)?,
            gid: number(gid)?,
        };
        if owner.uid.is_none() && owner.gid.is_none() {
            return Err(bad());
        }
        Ok(owner)
    }
}

/// A span of time: a number of seconds (`30`, `0.25`) or a number with a unit (`250ms`,
/// `30s`, `2m`, `1h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Secs(pub(crate) Duration);

impl FromStr for Secs {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let scale = match unit.trim() {
            "" | "s" => 1.0,
            "ms" => 0.001,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            other => {
                return Err(format!(
                    "unknown unit {other:?}: give seconds (30, 0.5) or ms, s, m, h (250ms, 2m)"
                ));
            }
        };
        let number: f64 = number
            .parse()
            .map_err(|_| "expected a number of seconds (30, 0.5) or ms, s, m, h (250ms, 2m)")?;
        Duration::try_from_secs_f64(number * scale)
            .map(Secs)
            .map_err(|_| format!("{text} is out of range"))
    }
}

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.subsec_nanos() == 0 {
            write!(f, "{}s", d.as_secs())
        } else if d.subsec_nanos().is_multiple_of(1_000_000) {
            write!(f, "{}ms", d.as_millis())
        } else {
            write!(f, "{}s", d.as_secs_f64())
        }
    }
}

/// A [`Secs`] that is more than zero, for limits where zero would mean "fail everything".
pub(crate) fn positive_secs(text: &str) -> Result<Secs, String> {
    let secs: Secs = text.parse()?;
    if secs.0.is_zero() {
        return Err("must be more than 0 (leave the option out for no limit)".into());
    }
    Ok(secs)
}

/// A number of bytes: `65536`, or with a binary unit: `64K` (= `64KiB`), `1M`, `2G`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bytes(pub(crate) u64);

/// The units [`Bytes`] reads and prints, largest first.
const BYTE_UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];

impl FromStr for Bytes {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: u64 = number
            .parse()
            .map_err(|_| "expected a number of bytes (65536) or one with K, M or G (64K, 1M)")?;
        let unit = unit.trim();
        let scale = if unit.is_empty() || unit.eq_ignore_ascii_case("b") {
            1
        } else {
            BYTE_UNITS
                .iter()
                .find(|(name, _)| {
                    unit.eq_ignore_ascii_case(name) || unit.eq_ignore_ascii_case(&name[..1])
                })
                .map(|(_, scale)| *scale)
                .ok_or_else(|| format!("unknown unit {unit:?}: use K, M or G (KiB, MiB, GiB)"))?
        };
        number
            .checked_mul(scale)
            .map(Bytes)
            .ok_or_else(|| format!("{text} is too large"))
    }
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match BYTE_UNITS
            .iter()
            .find(|(_, scale)| self.0 != 0 && self.0.is_multiple_of(*scale))
        {
            Some((name, scale)) => write!(f, "{}{name}", self.0 / scale),
            None => write!(f, "{}", self.0),
        }
    }
}

/// A memory size for `--max-rss`: a bare number is MiB (as Granian's `--workers-max-rss`),
/// or a [`Bytes`] with its unit (`512M`, `2G`).
pub(crate) fn mebibytes(text: &str) -> Result<Bytes, String> {
    let text = text.trim();
    let bytes = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let mib: u64 = text.parse().map_err(|_| format!("{text} is too large"))?;
        Bytes(
            mib.checked_mul(1 << 20)
                .ok_or_else(|| format!("{text} MiB is too large"))?,
        )
    } else {
        text.parse()?
    };
    if bytes.0 == 0 {
        return Err("must be more than 0 (leave the option out for no limit)".into());
    }
    Ok(bytes)
}

/// A count of at least one.
pub(crate) fn at_least_one(text: &str) -> Result<NonZeroUsize, String> {
    let n: usize = text
        .trim()
        .parse()
        .map_err(|_| "expected a whole number".to_owned())?;
    NonZeroUsize::new(n).ok_or_else(|| "must be at least 1".to_owned())
}

/// How many worker processes: `N` (a fixed pool; 0 runs Python in this process) or
/// `MIN..MAX`, an elastic pool that grows when requests wait and shrinks when workers idle
/// (Passenger's min instances and max pool size, uWSGI's cheaper and workers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Processes {
    /// Workers always running.
    pub(crate) min: usize,
    /// Workers at most.
    pub(crate) max: usize,
}

impl FromStr for Processes {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let count = |part: &str| {
            part.trim().parse::<usize>().map_err(|_| {
                "expected a number of workers (4) or a range MIN..MAX (1..8)".to_owned()
            })
        };
        let Some((min, max)) = text.split_once("..") else {
            let n = count(text)?;
            return Ok(Processes { min: n, max: n });
        };
        let (min, max) = (count(min)?, count(max)?);
        if min == 0 {
            return Err(format!(
                "{min}..{max}: the minimum must be at least 1 (an elastic pool keeps one worker)"
            ));
        }
        if max < min {
            return Err(format!("{min}..{max}: the maximum is below the minimum"));
        }
        Ok(Processes { min, max })
    }
}

impl fmt::Display for Processes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}..{}", self.min, self.max)
        }
    }
}

/// A trusted proxy: an IP address (`127.0.0.1`, `::1`), a CIDR range (`10.0.0.0/8`), or
/// `unix`, every peer on a UNIX socket (`--bind unix:PATH`), which has no address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TrustedProxy {
    /// Peers in this range.
    Net(IpNet),
    /// Peers on a UNIX socket.
    Unix,
}

impl FromStr for TrustedProxy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("unix") {
            return Ok(TrustedProxy::Unix);
        }
        text.parse::<IpNet>()
            .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
            .map(TrustedProxy::Net)
            .map_err(|_| {
                "expected an IP address (10.0.0.1), a CIDR range (10.0.0.0/8) or `unix` (the \
                 peers on a UNIX socket)"
                    .to_owned()
            })
    }
}

impl fmt::Display for TrustedProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrustedProxy::Net(net) => net.fmt(f),
            TrustedProxy::Unix => f.write_str("unix"),
        }
    }
}

/// A mount prefix, normalised as the engine does (a leading slash, no trailing one);
/// empty for the root.
pub(crate) fn mount(text: &str) -> Result<String, String> {
    if text.contains(['?', '#']) {
        return Err("a mount is a path: no `?` or `#`".into());
    }
    Ok(wsgi_core::ConnInfo::default().with_mount(text).mount)
}

/// A log filter: a level (`info`) or `tracing` directives (`info,wsgi_core=debug`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogFilter(String);

impl LogFilter {
    /// The filter, which [`FromStr`] has already checked.
    pub(crate) fn to_filter(&self) -> tracing_subscriber::EnvFilter {
        tracing_subscriber::EnvFilter::new(&self.0)
    }
}

impl FromStr for LogFilter {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        tracing_subscriber::EnvFilter::try_new(text)
            .map(|_| LogFilter(text.to_owned()))
            .map_err(|e| e.to_string())
    }
}

impl fmt::Display for LogFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_read_plain_numbers_and_units_and_print_back() {
        let read = |s: &str| s.parse::<Secs>().map(|s| s.0);
        assert_eq!(read("30"), Ok(Duration::from_secs(30)));
        assert_eq!(read("0.3"), Ok(Duration::from_millis(300)));
        assert_eq!(read("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(read("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(read("1h"), Ok(Duration::from_secs(3600)));
        assert!(read("").is_err());
        assert!(read("-1").is_err());
        assert!(read("5 days").is_err());
        assert!(read("1e400").is_err());
        for text in ["30s", "250ms", "0.0005s", "0s"] {
            assert_eq!(text.parse::<Secs>().unwrap().to_string(), text);
        }
        assert!(positive_secs("0").is_err());
        assert!(positive_secs("0.001").is_ok());
    }

    #[test]
    fn bytes_read_binary_units_and_print_the_largest_exact_one() {
        let read = |s: &str| s.parse::<Bytes>().map(|b| b.0);
        assert_eq!(read("65536"), Ok(65536));
        assert_eq!(read("64K"), Ok(65536));
        assert_eq!(read("64kib"), Ok(65536));
        assert_eq!(read("1M"), Ok(1 << 20));
        assert_eq!(read("2GiB"), Ok(2 << 30));
        assert_eq!(read("0"), Ok(0));
        assert!(read("64KB").is_err());
        assert!(read("-1").is_err());
        assert!(read("99999999999G").is_err());
        assert_eq!(Bytes(65536).to_string(), "64KiB");
        assert_eq!(Bytes(1000).to_string(), "1000");
        assert_eq!(Bytes(0).to_string(), "0");
    }

    #[test]
    fn mounts_are_normalised_as_the_engine_does() {
        assert_eq!(mount("py/").unwrap(), "/py");
        assert_eq!(mount("/a/b//").unwrap(), "/a/b");
        assert_eq!(mount("/").unwrap(), "");
        assert!(mount("/py?x").is_err());
    }

    #[test]
    fn processes_are_a_count_or_a_range_and_print_back() {
        let read = |s: &str| s.parse::<Processes>().map(|p| (p.min, p.max));
        assert_eq!(read("0"), Ok((0, 0)));
        assert_eq!(read("4"), Ok((4, 4)));
        assert_eq!(read("1..4"), Ok((1, 4)));
        assert_eq!(read(" 2 .. 8 "), Ok((2, 8)));
        assert_eq!(read("3..3"), Ok((3, 3)));
        for bad in ["0..4", "4..2", "1..", "..4", "1-4", "many", "-1"] {
            assert!(read(bad).is_err(), "{bad} accepted");
        }
        for text in ["0", "4", "1..4"] {
            assert_eq!(text.parse::<Processes>().unwrap().to_string(), text);
        }
        assert_eq!("2..2".parse::<Processes>().unwrap().to_string(), "2");
    }

    #[test]
    fn other_values_are_checked() {
        assert!(at_least_one("0").is_err());
        assert_eq!(at_least_one("4").map(NonZeroUsize::get), Ok(4));
        let proxy = |text: &str| text.parse::<TrustedProxy>().map(|p| p.to_string());
        assert_eq!(proxy("10.0.0.1").unwrap(), "10.0.0.1/32");
        assert_eq!(proxy(" UNIX ").unwrap(), "unix");
        assert!(proxy("10.0.0.0/33").is_err());
        assert!(proxy("unix:/run/app.sock").is_err());
        assert!("127.0.0.1:8000".parse::<ListenAddr>().is_ok());
        assert!("127.0.0.1".parse::<ListenAddr>().is_err());
        assert!("info,wsgi_core=debug".parse::<LogFilter>().is_ok());
        assert!("wsgi_core=loud".parse::<LogFilter>().is_err());
    }
}
