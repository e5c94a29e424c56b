//! What the host and a worker share: [`frame`] frames bytes on a socket; [`messages`] are
//! what the two sides say; [`started`] is the memory they share to say which requests a
//! worker began; [`channels`] names the ends of them all.

pub(crate) mod channels;
pub(crate) mod frame;
#[cfg(target_os = "linux")]
pub(crate) mod handoff;
pub(crate) mod messages;
pub(crate) mod started;
