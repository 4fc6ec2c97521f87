//! The time budget for receiving an HTTP request body, for `/mcp` and `/api` alike.
//!
//! A client that opens a request and then sends its body a byte at a time would otherwise
//! hold a connection, a task and a partial buffer for as long as it likes. Every request
//! body is wrapped, before any route sees it, in a [`TimedBody`] that ends with
//! [`BodyTimedOut`] once the deadline (`COMFYUI_MCP_HTTP_BODY_TIMEOUT_MS`, counted from
//! when the request's headers were read) passes before the body's last byte.
//!
//! Invariants: the deadline is enforced here only; readers recognise it by type
//! ([`timed_out`]), never by message text, and answer `408 Request Timeout` naming the
//! limit and the setting. A body that is complete in time is passed through unchanged,
//! byte for byte. Response bodies are not bounded (streams of progress may last long).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Body as HttpBody, Frame, SizeHint};

/// Default of `COMFYUI_MCP_HTTP_BODY_TIMEOUT_MS`: 30 s to receive a whole request body.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// The setting that sets the deadline, named in the error.
pub const SETTING: &str = "COMFYUI_MCP_HTTP_BODY_TIMEOUT_MS";

/// A request body did not arrive within its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the request body did not arrive within {} ms ({SETTING}); send the whole body at once",
    .after.as_millis()
)]
pub struct BodyTimedOut {
    /// The deadline that passed.
    pub after: Duration,
}

/// Whether a body-reading error is (or was caused by) the deadline passing.
pub fn timed_out(error: &(dyn std::error::Error + 'static)) -> Option<BodyTimedOut> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(t) = e.downcast_ref::<BodyTimedOut>() {
            return Some(*t);
        }
        current = e.source();
    }
    None
}

/// Middleware: wraps every request body in a [`TimedBody`] with the configured deadline.
pub async fn bound_bodies(
    State(deadline): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let timed = Body::new(TimedBody::new(body, deadline));
    next.run(Request::from_parts(parts, timed)).await
}

/// A request body that fails with [`BodyTimedOut`] when its deadline passes first.
pub struct TimedBody {
    inner: Body,
    after: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
    done: bool,
}

impl TimedBody {
    /// `inner`, which must end within `after` from now.
    pub fn new(inner: Body, after: Duration) -> Self {
        Self {
            inner,
            after,
            sleep: Box::pin(tokio::time::sleep(after)),
            done: false,
        }
    }
}

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            if frame.is_none() {
                self.done = true;
            }
            return Poll::Ready(frame);
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.done = true;
                Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut {
                    after: self.after,
                }))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt as _;

    /// A body whose chunks come `gap` apart.
    fn trickle(chunks: usize, gap: Duration) -> Body {
        let stream = futures_util::stream::iter(0..chunks).then(move |_| async move {
            tokio::time::sleep(gap).await;
            Ok::<_, std::io::Error>(Bytes::from_static(b"x"))
        });
        Body::from_stream(stream)
    }

    #[tokio::test]
    async fn a_body_complete_within_the_deadline_passes_unchanged() {
        let body = Body::new(TimedBody::new(
            trickle(5, Duration::from_millis(2)),
            Duration::from_secs(30),
        ));
        let bytes = axum::body::to_bytes(body, 1024).await.unwrap();
        assert_eq!(&bytes[..], b"xxxxx");
    }

    #[tokio::test]
    async fn a_body_still_arriving_at_the_deadline_fails_with_the_typed_error() {
        let body = Body::new(TimedBody::new(
            trickle(3, Duration::from_secs(20)),
            Duration::from_millis(50),
        ));
        let err = axum::body::to_bytes(body, 1024).await.unwrap_err();
        let found = timed_out(&err).expect("recognised by type");
        assert_eq!(found.after, Duration::from_millis(50));
        assert!(found.to_string().contains(SETTING), "{found}");
        // Nothing more comes out of a body that timed out.
        let mut stream = Body::new(TimedBody::new(
            trickle(10, Duration::from_secs(20)),
            Duration::from_millis(1),
        ))
        .into_data_stream();
        assert!(stream.next().await.unwrap().is_err());
        assert!(stream.next().await.is_none());
    }
}
