//! Ports of 127.0.0.1 that a test holds without listening on them.
//!
//! A port found by binding port 0 and closing the listener is free only until someone
//! else takes it: a parallel test's listener, or the local end of any outgoing
//! connection. A socket that is bound but does not listen keeps the port: connections to
//! it are refused (nothing listens), and the kernel gives it to no one else while the
//! socket lives.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};

use tokio::net::TcpSocket;

/// A port of 127.0.0.1 where nothing listens, held for as long as the value lives:
/// connecting to it is refused, and no other socket can take it meanwhile.
#[derive(Debug)]
pub struct ClosedPort {
    _socket: TcpSocket,
    addr: SocketAddr,
}

impl ClosedPort {
    /// A new port, picked by the kernel.
    ///
    /// Panics when no socket can be bound: this is test support, a failure must be loud.
    pub fn new() -> ClosedPort {
        // Without SO_REUSEADDR: nothing else can bind the port, listening or not.
        let (socket, addr) =
            bind(0, false).unwrap_or_else(|err| panic!("cannot bind a port of 127.0.0.1: {err}"));
        ClosedPort {
            _socket: socket,
            addr,
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Default for ClosedPort {
    fn default() -> Self {
        ClosedPort::new()
    }
}

/// A socket bound to `port` of 127.0.0.1 (0: one the kernel picks) that does not listen.
/// With `reuse` (SO_REUSEADDR) a server that sets it too (Go's and Rust's listeners do)
/// may still bind and listen on the port, while the kernel keeps it from everyone else:
/// no listener on port 0 and no outgoing connection is given it.
pub(crate) fn bind(port: u16, reuse: bool) -> io::Result<(TcpSocket, SocketAddr)> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(reuse)?;
    socket.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))?;
    let addr = socket.local_addr()?;
    Ok((socket, addr))
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};

    use super::*;

    #[test]
    fn a_closed_port_refuses_connections_and_cannot_be_taken() {
        let closed = ClosedPort::new();
        assert_ne!(closed.port(), 0);
        let err = TcpStream::connect(closed.addr()).expect_err("nothing listens");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        // Neither a listener (std sets SO_REUSEADDR) nor a plain bind gets it.
        assert!(TcpListener::bind(closed.addr()).is_err());
        assert!(bind(closed.port(), false).is_err());
        assert!(bind(closed.port(), true).is_err());
    }

    #[test]
    fn a_port_held_with_reuse_is_still_open_to_a_listener_that_reuses_too() {
        let (_held, addr) = bind(0, true).expect("bind");
        let listener = TcpListener::bind(addr).expect("the listener gets the held port");
        assert!(TcpStream::connect(addr).is_ok());
        drop(listener);
        // A socket without SO_REUSEADDR does not get it.
        assert!(bind(addr.port(), false).is_err());
    }
}
