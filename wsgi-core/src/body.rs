//! The response body handed to the host.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::access::{AccessLine, Outcome};
use crate::input::InputPump;
use crate::pipe::{Msg, PipeRx};

/// The body of a response produced by a WSGI application.
///
/// Chunks arrive as the application yields them; while the host is slow to take them the
/// application's iterable is paused. An error from [`Body::poll_frame`] means the response
/// cannot be completed (the app raised mid-stream, or sent fewer bytes than its
/// `Content-Length`): the host must then cut the connection rather than end the body
/// cleanly, which is what hyper, axum and actix-web do.
///
/// Dropping the body before its end (the client went away) makes the engine stop the
/// application's iterable and call its `close()`.
///
/// The response's headers carry a `Content-Length` only when the application declared one;
/// a body known in full (a list the application returned) reports its exact size in
/// [`Body::size_hint`], from which the host frames it, as hyper and actix-web do. That way
/// no length is made up for a response that may not carry one (to HEAD, 1xx, 204, 304),
/// which only the host knows.
#[derive(Debug)]
pub struct WsgiBody {
    kind: Kind,
    access: Option<Box<AccessLine>>,
}

#[derive(Debug)]
enum Kind {
    Empty,
    Full(Option<Bytes>),
    Stream {
        rx: PipeRx,
        /// The application may still read its request body while it streams its response.
        input: Option<InputPump>,
        remaining: Option<u64>,
        /// Data went to the host since it last found the body pending.
        unflushed: bool,
    },
    /// The body failed after data the host may still hold unwritten: the error waits one
    /// turn (see `fail`).
    Failing(BodyError),
}

/// Why a response body stopped before its end.
#[derive(Debug, thiserror::Error)]
#[error("WSGI response aborted: {0}")]
pub struct BodyError(String);

impl WsgiBody {
    fn new(kind: Kind) -> Self {
        WsgiBody { kind, access: None }
    }

    pub(crate) fn empty() -> Self {
        Self::new(Kind::Empty)
    }

    pub(crate) fn full(bytes: Bytes) -> Self {
        if bytes.is_empty() {
            Self::empty()
        } else {
            Self::new(Kind::Full(Some(bytes)))
        }
    }

    pub(crate) fn stream(rx: PipeRx, input: Option<InputPump>, length: Option<u64>) -> Self {
        Self::new(Kind::Stream {
            rx,
            input,
            remaining: length,
            unflushed: false,
        })
    }

    /// Attaches the request's access-log line, written when the body ends or is dropped.
    pub(crate) fn with_access(mut self, access: Option<Box<AccessLine>>) -> Self {
        self.access = access;
        self
    }

    fn log(&mut self, outcome: Outcome) {
        if let Some(line) = self.access.take() {
            line.emit(outcome);
        }
    }
}

impl Body for WsgiBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let polled = self.poll_kind(cx);
        if self.access.is_some() {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    if let (Some(data), Some(line)) = (frame.data_ref(), self.access.as_mut()) {
                        line.bytes += data.len() as u64;
                    }
                }
                Poll::Ready(Some(Err(_))) => self.log(Outcome::Aborted),
                Poll::Ready(None) => self.log(Outcome::Complete),
                Poll::Pending => {}
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Full(b) => b.is_none(),
            Kind::Stream { .. } | Kind::Failing(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Stream {
                remaining: Some(n), ..
            } => SizeHint::with_exact(*n),
            Kind::Stream { .. } | Kind::Failing(_) => SizeHint::default(),
        }
    }
}

impl Drop for WsgiBody {
    fn drop(&mut self) {
        if self.access.is_some() {
            // Hosts stop polling a body that reports its end, and hyper one whose declared
            // length it has written (without asking for the end); any other early drop is
            // a client that left or a server that cut the response.
            let delivered = matches!(
                self.kind,
                Kind::Stream {
                    remaining: Some(0),
                    ..
                }
            );
            let outcome = if matches!(self.kind, Kind::Failing(_)) {
                Outcome::Aborted
            } else if delivered || self.is_end_stream() {
                Outcome::Complete
            } else {
                Outcome::CutShort
            };
            self.log(outcome);
        }
    }
}

impl WsgiBody {
    fn poll_kind(&mut self, cx: &mut Context<'_>) -> FramePoll {
        match &mut self.kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Failing(_) => {
                let Kind::Failing(error) = std::mem::replace(&mut self.kind, Kind::Empty) else {
                    unreachable!("matched just above")
                };
                Poll::Ready(Some(Err(error)))
            }
            Kind::Stream {
                rx,
                input,
                remaining,
                unflushed,
            } => {
                if let Some(pump) = input {
                    pump.poll(cx);
                }
                loop {
                    return match rx.poll_recv(cx) {
                        Poll::Pending => {
                            *unflushed = false;
                            Poll::Pending
                        }
                        Poll::Ready(Some(Msg::Data(bytes))) => {
                            if let Some(left) = remaining {
                                *left = left.saturating_sub(bytes.len() as u64);
                            }
                            *unflushed = true;
                            Poll::Ready(Some(Ok(Frame::data(bytes))))
                        }
                        Poll::Ready(Some(Msg::End)) => {
                            self.kind = Kind::Empty;
                            Poll::Ready(None)
                        }
                        Poll::Ready(Some(Msg::Abort(why))) => self.fail(cx, why),
                        Poll::Ready(Some(Msg::Short(why))) => {
                            tracing::error!(target: "wsgi_core::app", "{why}; response aborted");
                            self.fail(cx, why)
                        }
                        // A second head cannot happen; skip it rather than corrupt the body.
                        Poll::Ready(Some(Msg::Head(_))) => continue,
                        Poll::Ready(None) => {
                            self.fail(cx, "the Python worker stopped mid-response".into())
                        }
                    };
                }
            }
        }
    }

    /// Ends a streamed body with an error, after everything the application produced.
    ///
    /// hyper and actix-web buffer what they are given and write it out when the body is
    /// pending; an error makes them drop the connection with that buffer unwritten. So if
    /// data went to the host since it last found the body pending, the body is pending once
    /// more (waking itself at once) before the error, and the host writes the data first, as
    /// gunicorn and mod_wsgi do: the client sees what the application sent, then a response
    /// that never ends cleanly. A client too slow to take the buffer then may lose its tail.
    fn fail(&mut self, cx: &mut Context<'_>, why: String) -> FramePoll {
        let unflushed = matches!(
            self.kind,
            Kind::Stream {
                unflushed: true,
                ..
            }
        );
        let error = BodyError(why);
        if unflushed {
            self.kind = Kind::Failing(error);
            cx.waker().wake_by_ref();
            Poll::Pending
        } else {
            self.kind = Kind::Empty;
            Poll::Ready(Some(Err(error)))
        }
    }
}

/// What `poll_frame` returns.
type FramePoll = Poll<Option<Result<Frame<Bytes>, BodyError>>>;
