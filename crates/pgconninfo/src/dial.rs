//! Opening the socket to one host, as tokio-postgres would: a unix socket in the
//! host's directory, or TCP to `hostaddr` or to each address the host name resolves
//! to in turn, with `TCP_NODELAY`, `tcp_user_timeout` and the keepalive settings.
//!
//! The socket is opened here rather than by tokio-postgres so that the connection's
//! [`Lane`](crate::Lane) can share it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use socket2::{SockRef, TcpKeepalive};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_postgres::config::Host;

/// A connected socket, TCP or unix.
pub(crate) enum Socket {
    /// A TCP connection.
    Tcp(TcpStream),
    /// A unix-domain socket connection.
    Unix(UnixStream),
}

/// The host the config names (its first), and the name to check its certificate
/// against (none for a unix socket).
pub(crate) fn host_name(config: &tokio_postgres::Config) -> Option<&str> {
    match config.get_hosts().first() {
        Some(Host::Tcp(name)) => Some(name),
        _ => None,
    }
}

/// Connects to the config's first host (one host per config: see `target`).
pub(crate) async fn dial(config: &tokio_postgres::Config) -> io::Result<Socket> {
    let port = config.get_ports().first().copied().unwrap_or(5432);
    if let Some(addr) = config.get_hostaddrs().first() {
        return tcp(config, TcpStream::connect((*addr, port)).await?);
    }
    match config.get_hosts().first() {
        Some(Host::Unix(dir)) => {
            let path = dir.join(format!(".s.PGSQL.{port}"));
            Ok(Socket::Unix(UnixStream::connect(path).await?))
        }
        Some(Host::Tcp(name)) => {
            let mut last = None;
            for addr in tokio::net::lookup_host((name.as_str(), port)).await? {
                match TcpStream::connect(addr).await {
                    Ok(stream) => return tcp(config, stream),
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "could not resolve any addresses",
                )
            }))
        }
        None => Err(io::Error::new(io::ErrorKind::InvalidInput, "no host")),
    }
}

/// A TCP connection with the config's socket options.
fn tcp(config: &tokio_postgres::Config, stream: TcpStream) -> io::Result<Socket> {
    stream.set_nodelay(true)?;
    let socket = SockRef::from(&stream);
    #[cfg(target_os = "linux")]
    if let Some(limit) = config.get_tcp_user_timeout() {
        socket.set_tcp_user_timeout(Some(*limit))?;
    }
    if config.get_keepalives() {
        let mut keepalive = TcpKeepalive::new().with_time(config.get_keepalives_idle());
        if let Some(interval) = config.get_keepalives_interval() {
            keepalive = keepalive.with_interval(interval);
        }
        if let Some(retries) = config.get_keepalives_retries() {
            keepalive = keepalive.with_retries(retries);
        }
        socket.set_tcp_keepalive(&keepalive)?;
    }
    Ok(Socket::Tcp(stream))
}

impl Socket {
    /// Registers `cx`'s waker for readability without reading (tokio's
    /// `poll_read_ready`): the socket's one read interest.
    pub(crate) fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Socket::Tcp(s) => s.poll_read_ready(cx),
            Socket::Unix(s) => s.poll_read_ready(cx),
        }
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_flush(cx),
            Socket::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Socket::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
