//! A piece of a request body, as every source of `wsgi.input` hands it on: the host's
//! stream ([`crate::input`]), a spooled file ([`crate::spooled`]) and a worker process's
//! pull from the host.

use bytes::Bytes;

/// One answer to a request for body bytes.
#[derive(Debug)]
pub(crate) enum Chunk {
    Data(Bytes),
    Eof,
    /// The body could not be read (client vanished, malformed chunking, ...).
    Failed(String),
    /// The body grew past the configured maximum.
    TooLarge(u64),
}
