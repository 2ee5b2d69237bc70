//! Telling without a round trip, and without reading anything, whether a connection left idle
//! is still open: a peek at its socket. Used on idle control connections before reuse, and on
//! data connections opened ahead before a transfer command is sent for them.

use std::io;
use std::net::TcpStream;

/// What an idle connection has received since it was last used.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Idle {
    /// Nothing: as far as we can tell without asking, the session is alive.
    Quiet,
    /// The server closed it (end of stream or an error): unusable.
    Closed,
    /// Bytes nobody asked for, such as a 421 before the server closes an idle session (or a
    /// late TLS record): only a `NOOP` tells whether it still works.
    Talking,
}

/// Looks at an idle connection's socket without reading from it or waiting.
pub(super) fn idle_state(socket: &TcpStream) -> Idle {
    if socket.set_nonblocking(true).is_err() {
        return Idle::Closed;
    }
    let mut byte = [0u8; 1];
    let state = match socket.peek(&mut byte) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Idle::Quiet,
        Ok(0) | Err(_) => Idle::Closed,
        Ok(_) => Idle::Talking,
    };
    if socket.set_nonblocking(false).is_err() {
        return Idle::Closed;
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;
    use std::time::{Duration, Instant};

    #[test]
    fn socket_state_tells_quiet_talking_and_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut theirs, _) = listener.accept().unwrap();
        assert_eq!(idle_state(&ours), Idle::Quiet);
        theirs.write_all(b"421 Timeout.\r\n").unwrap();
        let wait = Instant::now();
        while idle_state(&ours) == Idle::Quiet && wait.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(idle_state(&ours), Idle::Talking);
        // The check consumed nothing.
        let mut line = [0u8; 14];
        io::Read::read_exact(&mut &ours, &mut line).unwrap();
        assert_eq!(&line, b"421 Timeout.\r\n");
        drop(theirs);
        let wait = Instant::now();
        while idle_state(&ours) == Idle::Quiet && wait.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(idle_state(&ours), Idle::Closed);
    }
}
