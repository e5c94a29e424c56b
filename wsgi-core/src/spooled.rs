//! A request body the host received whole into an unlinked temporary file
//! ([`crate::spool`]), read back by `wsgi.input`.

use std::fs::File;
use std::io::{self, Read, Seek};

use bytes::Bytes;

use crate::chunk::Chunk;

/// Most bytes one read of a spooled body returns, whatever the reader asked for.
const READ_MAX: u64 = 1024 * 1024;

/// Fewest bytes one read of a spooled body asks the file for, so that `read(1)` in a loop
/// costs a system call per 64 KiB, not per byte.
const READ_MIN: u64 = 64 * 1024;

/// A complete request body in an unlinked temporary file, read by `wsgi.input`.
#[derive(Debug)]
pub(crate) struct SpooledBody {
    /// Closed (and so freed) as soon as the body has been read to its end.
    file: Option<File>,
    len: u64,
    read: u64,
}

impl SpooledBody {
    /// The `len` bytes the writer left in `file`.
    pub(crate) fn new(file: File, len: u64) -> Self {
        SpooledBody {
            file: Some(file),
            len,
            read: 0,
        }
    }

    /// The next piece of the body, of about `want` bytes (`u64::MAX`: as much as suits).
    /// Reads the file: call without the GIL.
    pub(crate) fn next_chunk(&mut self, want: u64) -> Chunk {
        let Some(file) = &mut self.file else {
            return Chunk::Eof;
        };
        let size = want.clamp(READ_MIN, READ_MAX).min(self.len - self.read);
        let result = (|| {
            if self.read == 0 {
                // The writer left the file at its end.
                file.rewind()?;
            }
            let size = usize::try_from(size).unwrap_or(usize::MAX);
            // `read_to_end` reads into the spare capacity as it is; a zeroed buffer would
            // cost one more pass over every byte.
            let mut buf = Vec::with_capacity(size);
            file.take(size as u64).read_to_end(&mut buf)?;
            if buf.len() < size {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            Ok::<_, io::Error>(Bytes::from(buf))
        })();
        match result {
            Ok(bytes) => {
                self.read += bytes.len() as u64;
                if self.read == self.len {
                    self.file = None;
                }
                if bytes.is_empty() {
                    Chunk::Eof
                } else {
                    Chunk::Data(bytes)
                }
            }
            Err(e) => {
                self.file = None;
                Chunk::Failed(format!("cannot read the spooled request body: {e}"))
            }
        }
    }
}
