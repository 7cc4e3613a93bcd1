//! How the edge ends a connection: the close handshake of RFC 6455, then an orderly TCP
//! shutdown.
//!
//! Dropping a socket while the client's input is still unread makes the kernel answer with
//! a reset, and a reset destroys what the client had not read yet: the close frame, and
//! the errors sent before it (a client flooding without reading lost its `RATE_LIMITED`
//! errors and its 1008 that way). So the edge sends its close frame, then reads and drops
//! whatever the client still sends until the client's own close frame arrives, then shuts
//! its side of the TCP connection down and reads on until the client closes its side, all
//! within [`CLOSE_LINGER`].
//!
//! The WebSocket layer (axum over tungstenite) owns the socket and does not give it back,
//! so every connection is accepted through [`Listener`], whose [`Stream`] leaves its TCP
//! socket with the connection's [`Handle`] when the WebSocket drops it.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::serve::IncomingStream;
use futures_util::{Sink, Stream as _};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tracing::debug;

/// How long the edge waits, once it has decided to close a connection, for the close
/// handshake and the client's end of the TCP connection. Long enough for any client that
/// reads to answer (and for a flood already in flight to be read and dropped); short
/// enough that a client that never answers holds its place on the edge (it still counts
/// as an open connection meanwhile) for two seconds at most.
pub(crate) const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// The edge's WebSocket listener: each accepted connection gets `TCP_NODELAY` (small
/// frames, the welcome and acknowledgements, go out at once, not after the client's
/// delayed ACK) and a [`Handle`], passed to requests as their `ConnectInfo`.
#[derive(Debug)]
pub(crate) struct Listener(TcpListener);

impl Listener {
    pub(crate) fn new(listener: TcpListener) -> Self {
        Self(listener)
    }
}

impl axum::serve::Listener for Listener {
    type Io = Stream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Stream, SocketAddr) {
        // axum's own accept: it retries, and waits when out of file descriptors.
        let (tcp, address) = axum::serve::Listener::accept(&mut self.0).await;
        if let Err(e) = tcp.set_nodelay(true) {
            debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let stream = Stream {
            tcp: Some(tcp),
            handle: Handle::default(),
        };
        (stream, address)
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// One accepted TCP connection. When dropped (by hyper, or by the WebSocket that took
/// it over), it leaves its socket with its [`Handle`]; without a holder, the socket is
/// closed there and then, as a plain drop would.
#[derive(Debug)]
pub(crate) struct Stream {
    /// Always there until the stream is dropped.
    tcp: Option<TcpStream>,
    handle: Handle,
}

impl Stream {
    fn tcp(&mut self) -> std::io::Result<Pin<&mut TcpStream>> {
        self.tcp
            .as_mut()
            .map(Pin::new)
            .ok_or_else(|| std::io::ErrorKind::NotConnected.into())
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if let Some(tcp) = self.tcp.take() {
            self.handle.park(tcp);
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.tcp()?.poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.tcp()?.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.tcp()?.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.as_ref().is_some_and(TcpStream::is_write_vectored)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.tcp()?.poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.tcp()?.poll_shutdown(cx)
    }
}

/// Where a connection's TCP socket waits, once its [`Stream`] is dropped, for the
/// connection to shut it down. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct Handle(Arc<Mutex<Option<TcpStream>>>);

impl Handle {
    fn park(&self, tcp: TcpStream) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(tcp);
    }

    /// The socket, once the stream that owned it is gone.
    fn take(&self) -> Option<TcpStream> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

impl Connected<IncomingStream<'_, Listener>> for Handle {
    fn connect_info(stream: IncomingStream<'_, Listener>) -> Self {
        stream.io().handle.clone()
    }
}

/// Where the WebSocket stands when the edge ends a connection.
#[derive(Debug)]
pub(crate) enum Last {
    /// The edge closes it: this close frame goes out first.
    Close(CloseFrame),
    /// The client's close frame arrived (and is being answered).
    ClientClosed,
    /// It failed without a close frame: the client went away, or a read or write failed
    /// (a message over the size limit, whose rest may still be on its way).
    Lost,
}

/// Ends a connection within [`CLOSE_LINGER`]: sends the close frame (for [`Last::Close`]),
/// writes what is still unwritten, and reads and drops what the client sends until its
/// close frame ends the WebSocket; then shuts the TCP connection down (`tcp`: the
/// connection's handle). Without the client's close frame, it reads on until the client
/// closes its side too: input left unread would turn the close into a reset. Whatever is
/// left when the linger runs out is dropped.
pub(crate) async fn close(mut socket: WebSocket, last: Last, tcp: Option<Handle>) {
    let deadline = Instant::now() + CLOSE_LINGER;
    let (frame, mut answered) = match last {
        Last::Close(frame) => (Some(frame), false),
        Last::ClientClosed => (None, true),
        Last::Lost => (None, false),
    };
    match tokio::time::timeout_at(deadline, handshake(&mut socket, frame)).await {
        Ok(closed) => answered |= closed,
        Err(_) => debug!("the client did not finish the close handshake in time"),
    }
    // Gives the socket back to the handle.
    drop(socket);
    let Some(mut tcp) = tcp.as_ref().and_then(Handle::take) else {
        return;
    };
    if tcp.shutdown().await.is_err() || answered {
        return;
    }
    let mut dropped = tokio::io::sink();
    let rest = tokio::io::copy(&mut tcp, &mut dropped);
    if tokio::time::timeout_at(deadline, rest).await.is_err() {
        debug!("the client did not close its side of the connection in time");
    }
}

/// Sends `frame` and writes everything out, while reading and dropping what arrives, until
/// both are done: the client's close frame (or an error) ends the reading. Whether the
/// client's close frame came.
async fn handshake(socket: &mut WebSocket, frame: Option<CloseFrame>) -> bool {
    let mut frame = frame;
    let (mut written, mut read, mut answered) = (false, false, false);
    poll_fn(|cx| {
        let mut socket = Pin::new(&mut *socket);
        if !written {
            // The close frame may wait for room behind frames a slow client has not taken.
            if frame.is_some() {
                match socket.as_mut().poll_ready(cx) {
                    Poll::Ready(Ok(())) => {
                        let close = Message::Close(frame.take());
                        if socket.as_mut().start_send(close).is_err() {
                            written = true;
                        }
                    }
                    Poll::Ready(Err(_)) => written = true,
                    Poll::Pending => {}
                }
            }
            if frame.is_none() && !written {
                written = socket.as_mut().poll_flush(cx).is_ready();
            }
        }
        while !read {
            match socket.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(Message::Close(_)))) => answered = true,
                // Dropped: the client's frames sent before it saw the close.
                Poll::Ready(Some(Ok(_))) => {}
                Poll::Ready(Some(Err(_)) | None) => read = true,
                Poll::Pending => break,
            }
        }
        // Reading to the end may have queued the answer to a close of the client's.
        if read && !written {
            written = socket.as_mut().poll_flush(cx).is_ready();
        }
        if written && read {
            Poll::Ready(answered)
        } else {
            Poll::Pending
        }
    })
    .await
}
