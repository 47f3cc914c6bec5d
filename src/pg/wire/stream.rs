//! One blocking socket (TCP, Unix, or TLS over TCP) whose every read and write ends by a
//! deadline: before each call the socket's timeout is set to the time left, so no call can
//! block past it, however the server dribbles its bytes.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use openssl::ssl::SslStream;

/// The transport under a connection.
pub enum Transport {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<SslStream<TcpStream>>),
}

/// A transport and the deadline its reads and writes must end by.
pub struct Stream {
    pub transport: Transport,
    deadline: Instant,
    /// When the socket's read and write timeouts were last set to the time left (Tcp and
    /// Unix): a call within `rearm_after` of that can end at most that late past the deadline,
    /// so the timeout is not set again (a system call per read and write otherwise).
    armed: [Option<Instant>; 2],
    rearm_after: Duration,
}

/// How stale an armed socket timeout may be: a blocking call ends at most this long after the
/// deadline. A hundredth of the time the stream was given, between these bounds: a request
/// on loopback that the server answers at once sets each timeout once, and one that waits
/// its turn on a loaded server (hundreds of milliseconds) sets it again every 50 ms at most,
/// not at every read.
const REARM_AFTER: (Duration, Duration) = (Duration::from_millis(5), Duration::from_millis(50));

fn rearm_after(deadline: Instant) -> Duration {
    (deadline.saturating_duration_since(Instant::now()) / 100).clamp(REARM_AFTER.0, REARM_AFTER.1)
}

impl Stream {
    /// `armed_at`: when both of the socket's timeouts were last set to the time left before
    /// `deadline`, if they were (a TCP connect sets them).
    pub fn new(transport: Transport, deadline: Instant, armed_at: Option<Instant>) -> Self {
        Stream {
            transport,
            deadline,
            armed: [armed_at; 2],
            rearm_after: rearm_after(deadline),
        }
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// A new deadline: the socket's timeouts are set again before the next call.
    pub fn set_deadline(&mut self, deadline: Instant) {
        self.deadline = deadline;
        self.armed = [None; 2];
        self.rearm_after = rearm_after(deadline);
    }
}

/// The time left before `deadline`, or a `TimedOut` error once it passed (a zero socket
/// timeout would mean "wait forever", so it is never set).
pub fn time_left(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
    }
    Ok(left)
}

/// Sets both socket timeouts of a TCP socket to the time left.
pub fn arm_tcp(socket: &TcpStream, deadline: Instant) -> io::Result<()> {
    let left = time_left(deadline)?;
    socket.set_read_timeout(Some(left))?;
    socket.set_write_timeout(Some(left))
}

impl Stream {
    /// Sets the socket's timeout for this direction to the time left, unless it was set within
    /// `rearm_after`: called before every blocking call.
    fn arm(&mut self, reading: bool) -> io::Result<()> {
        let left = Some(time_left(self.deadline)?);
        let direction = usize::from(!reading);
        let now = Instant::now();
        let fresh =
            self.armed[direction].is_some_and(|at| now.duration_since(at) < self.rearm_after);
        match &self.transport {
            // TLS reads may write (and writes read) during renegotiation: arm both ways, always.
            Transport::Tls(tls) => return arm_tcp(tls.get_ref(), self.deadline),
            _ if fresh => return Ok(()),
            Transport::Tcp(socket) if reading => socket.set_read_timeout(left)?,
            Transport::Tcp(socket) => socket.set_write_timeout(left)?,
            Transport::Unix(socket) if reading => socket.set_read_timeout(left)?,
            Transport::Unix(socket) => socket.set_write_timeout(left)?,
        }
        self.armed[direction] = Some(now);
        Ok(())
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.arm(true)?;
        match &mut self.transport {
            Transport::Tcp(socket) => socket.read(buf),
            Transport::Unix(socket) => socket.read(buf),
            Transport::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.arm(false)?;
        match &mut self.transport {
            Transport::Tcp(socket) => socket.write(buf),
            Transport::Unix(socket) => socket.write(buf),
            Transport::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.transport {
            Transport::Tls(tls) => {
                arm_tcp(tls.get_ref(), self.deadline)?;
                tls.flush()
            }
            _ => Ok(()),
        }
    }
}
