//! The connection under a WebSocket: plain TCP, or whatever else hyper
//! upgraded (TLS).
//!
//! A plain TCP stream is shared (`Arc`): while its session waits with
//! nothing to write, the room's write pass writes the room's frames to it
//! directly (see `ring`), with no wake-up of the session's task. Reads and
//! writes go through tokio's readiness and `try_*` calls, which take
//! `&TcpStream`.

use std::io;
use std::net::Shutdown;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use socket2::SockRef;
use tokio::io::Interest;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The connection under a WebSocket: the TCP stream itself when the
/// connection is plain TCP (taken back from hyper, so that no boxed
/// `dyn` stream and no hyper read-ahead wrapper stay with every
/// connection), else hyper's upgraded connection (TLS).
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP, shared with the room's write pass.
    Tcp(Arc<TcpStream>),
    /// Anything else hyper upgraded. Boxed: it is twice the size of a
    /// `TcpStream`, and would widen every plain connection's session past
    /// the allocator's 256-byte bin.
    Upgraded(Box<TokioIo<Upgraded>>),
}

/// One `send` on `tcp`, without waiting: a full socket is `WouldBlock`.
/// `send` rather than `write`: the socket call skips the file layer
/// (measured: `writev` spent a few percent there), and a raw system call
/// skips libc's cancellation bookkeeping.
pub(crate) fn send_now(tcp: &TcpStream, buf: &[u8]) -> io::Result<usize> {
    #[cfg(unix)]
    {
        rustix::net::send(tcp, buf, rustix::net::SendFlags::NOSIGNAL).map_err(io::Error::from)
    }
    #[cfg(not(unix))]
    {
        SockRef::from(tcp).send(buf)
    }
}

/// One `recv` on `tcp`, without waiting: an empty socket is `WouldBlock`.
fn recv_now(tcp: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    #[cfg(unix)]
    {
        let (received, _) = rustix::net::recv(tcp, buf, rustix::net::RecvFlags::empty())?;
        Ok(received)
    }
    #[cfg(not(unix))]
    {
        std::io::Read::read(&mut &*SockRef::from(tcp), buf)
    }
}

impl Stream {
    /// The TCP stream, when the connection is plain TCP: what the room's
    /// write pass may write to.
    pub fn shared_tcp(&self) -> Option<&Arc<TcpStream>> {
        match self {
            Self::Tcp(tcp) => Some(tcp),
            Self::Upgraded(_) => None,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(tcp) => loop {
                ready!(tcp.poll_read_ready(cx))?;
                let unfilled = buf.initialize_unfilled();
                let room = unfilled.len();
                let mut drained = 0;
                let read = tcp.try_io(Interest::READABLE, || {
                    let n = recv_now(tcp, unfilled)?;
                    if n > 0 && n < room {
                        // A short read emptied the socket: have tokio clear
                        // its readiness (as its own `poll_read` does), so
                        // that the next read waits for epoll instead of
                        // costing a `recv` that would only say "empty".
                        drained = n;
                        return Err(io::ErrorKind::WouldBlock.into());
                    }
                    Ok(n)
                });
                let n = match read {
                    Ok(n) => n,
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock && drained > 0 => drained,
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(err) => return Poll::Ready(Err(err)),
                };
                buf.advance(n);
                return Poll::Ready(Ok(()));
            },
            Self::Upgraded(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(tcp) => loop {
                ready!(tcp.poll_write_ready(cx))?;
                let sent = tcp.try_io(Interest::WRITABLE, || send_now(tcp, buf));
                match sent {
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                    result => return Poll::Ready(result),
                }
            },
            Self::Upgraded(io) => Pin::new(io).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(tcp) => loop {
                ready!(tcp.poll_write_ready(cx))?;
                match tcp.try_write_vectored(bufs) {
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                    result => return Poll::Ready(result),
                }
            },
            Self::Upgraded(io) => Pin::new(io).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Tcp(_) => true,
            Self::Upgraded(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(_) => Poll::Ready(Ok(())),
            Self::Upgraded(io) => Pin::new(io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(tcp) => Poll::Ready(SockRef::from(tcp.as_ref()).shutdown(Shutdown::Write)),
            Self::Upgraded(io) => Pin::new(io).poll_shutdown(cx),
        }
    }
}
