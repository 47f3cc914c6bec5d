//! What to connect to, and the connection itself: the socket, TLS as `sslmode` says, and the
//! startup and authentication exchange (in `auth`).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Instant;

use bytes::BytesMut;
use openssl::ssl::{HandshakeError, SslConnector};
use postgres_protocol::message::frontend;

use super::error::WireError;
use super::query::InBand;
use super::reader::{MessageReader, io_error};
use super::route::{self, Endpoint, Hosts, NodeKind};
use super::stream::{Stream, Transport, arm_tcp, time_left};
use crate::pg::target::tls::{SslMode, TlsError, TlsOptions};

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Tcp {
        host: String,
        port: u16,
    },
    /// The socket file itself (`<dir>/.s.PGSQL.<port>`).
    Unix(PathBuf),
}

/// TLS as `sslmode` asks: the connector carries the verification (chain and root
/// certificate), the mode whether TLS is required and whether the host name is checked.
#[derive(Clone)]
pub struct WireTls {
    pub connector: SslConnector,
    pub mode: SslMode,
}

impl WireTls {
    /// The same settings as the `postgres` crate's connector built by `tls::Connector::build`;
    /// None for `disable`.
    pub fn from_options(options: &TlsOptions) -> Result<Option<WireTls>, TlsError> {
        Ok(
            crate::pg::target::tls::ssl_connector(options)?.map(|connector| WireTls {
                connector,
                mode: options.mode,
            }),
        )
    }
}

/// libpq's `channel_binding`: whether SCRAM binds the login to the TLS channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ChannelBinding {
    /// Never bind, even when the server offers SCRAM-SHA-256-PLUS.
    Disable,
    /// Bind when the server offers it over TLS.
    #[default]
    Prefer,
    /// Refuse any login that is not SCRAM bound to the TLS channel: the setting exists to
    /// refuse a downgrade.
    Require,
}

/// Everything a connection needs but its deadline.
#[derive(Clone)]
pub struct ConnectParams {
    /// The servers to try and how to choose among them.
    pub hosts: Hosts,
    pub user: String,
    pub password: Option<String>,
    pub database: Option<String>,
    pub application_name: Option<String>,
    /// More startup parameters, e.g. `("options", "-c statement_timeout=1000")`.
    pub extra: Vec<(String, String)>,
    /// None: plain text (`sslmode=disable`; TLS is never tried over a Unix socket, as in libpq).
    pub tls: Option<WireTls>,
    /// Derive SCRAM's salted password on every connection, as a libpq client does, instead of
    /// once per run.
    pub scram_per_connection: bool,
    /// Settings sent in each request's transaction rather than in `extra` (through a pooler).
    pub in_band: Option<InBand>,
    /// The local addresses TCP connections leave from, in turn; empty: the system's choice.
    /// Each source address has its own ephemeral ports (~28k each).
    pub source: super::SourceAddresses,
    pub channel_binding: ChannelBinding,
    /// TCP keepalives on the socket (libpq's `keepalives`), with their idle time
    /// (`keepalives_idle`; None: the system's). Off unless asked: a request's connection lives
    /// shorter than any idle time, and each option is a system call per connection.
    pub keepalives: Option<Option<std::time::Duration>>,
}

impl ConnectParams {
    /// The hosts of a `postgres` crate configuration, tried in order, any kind of server.
    pub fn from_config(config: &postgres::Config, tls: &TlsOptions) -> Result<Self, TlsError> {
        let hosts = Hosts::from_config(config);
        let mut extra = Vec::new();
        if let Some(options) = config.get_options() {
            extra.push(("options".to_owned(), options.to_owned()));
        }
        Ok(ConnectParams {
            hosts,
            user: config.get_user().unwrap_or("postgres").to_owned(),
            password: config
                .get_password()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            database: config.get_dbname().map(str::to_owned),
            application_name: config.get_application_name().map(str::to_owned),
            extra,
            tls: WireTls::from_options(tls)?,
            scram_per_connection: false,
            in_band: None,
            source: Default::default(),
            channel_binding: ChannelBinding::default(),
            keepalives: None,
        })
    }
}

/// An open, authenticated connection, ready for queries.
pub struct Connection {
    pub(super) stream: Stream,
    pub(super) reader: MessageReader,
    /// Reused for every message written.
    pub(super) out: BytesMut,
    /// Whether the connection is TLS, for SCRAM's GS2 header.
    pub(super) tls: bool,
    /// Whether SCRAM bound the login to the TLS channel (SCRAM-SHA-256-PLUS).
    pub(super) bound: bool,
    /// The last ReadyForQuery said a transaction is open (or failed).
    pub(super) in_transaction: bool,
    /// Which endpoint of the host list this connection reached.
    pub(super) node: usize,
    /// The server's `in_hot_standby` and `default_transaction_read_only` as it reported them at
    /// startup (PostgreSQL 14 and later).
    pub(super) in_hot_standby: Option<bool>,
    pub(super) default_read_only: Option<bool>,
    /// The target has answered on this connection: a timeout from here on is no longer one
    /// before its first answer.
    pub(super) heard: bool,
    terminated: bool,
}

impl Connection {
    /// Opens a connection and logs in, all before `deadline`.
    pub fn connect(params: &ConnectParams, deadline: Instant) -> Result<Connection, WireError> {
        Connection::connect_from(params, None, deadline)
    }

    /// As `connect`, on a socket made ahead (`ReadySocket`) when there is one.
    pub fn connect_from(
        params: &ConnectParams,
        ready: Option<ReadySocket>,
        deadline: Instant,
    ) -> Result<Connection, WireError> {
        let (Some(ready), Some(endpoint)) = (ready, params.hosts.single()) else {
            return route::connect(params, deadline);
        };
        // Nothing was heard from the target yet: a connect that times out is unanswered.
        let (transport, armed_at) = ready
            .connect(deadline)
            .map_err(|err| io_error(err, "connecting").unanswered())?;
        Connection::start(params, endpoint, transport, armed_at, deadline)
    }

    /// Connects to one address of `endpoint` and logs in, by `deadline`.
    pub(super) fn open(
        params: &ConnectParams,
        endpoint: &Endpoint,
        address: &Address,
        deadline: Instant,
    ) -> Result<Connection, WireError> {
        let (transport, armed_at) =
            open_socket(params, address, deadline).map_err(WireError::unanswered)?;
        Connection::start(params, endpoint, transport, armed_at, deadline)
    }

    fn start(
        params: &ConnectParams,
        endpoint: &Endpoint,
        transport: Transport,
        armed_at: Option<Instant>,
        deadline: Instant,
    ) -> Result<Connection, WireError> {
        let mut conn = Connection {
            stream: Stream::new(transport, deadline, armed_at),
            reader: MessageReader::new(),
            out: BytesMut::with_capacity(256),
            tls: false,
            bound: false,
            in_transaction: false,
            node: 0,
            in_hot_standby: None,
            default_read_only: None,
            heard: false,
            terminated: false,
        };
        if let (Some(tls), Address::Tcp { .. }) = (&params.tls, &endpoint.address) {
            conn.negotiate_tls(tls, &endpoint.name)?;
        }
        conn.startup(params)?;
        Ok(conn)
    }

    /// Which endpoint of the host list (from 0) this connection reached.
    pub fn node(&self) -> usize {
        self.node
    }

    /// What kind of server this is: from what it reported at startup, else asked (servers
    /// before PostgreSQL 14 do not report `in_hot_standby`).
    pub(super) fn kind(&mut self, params: &ConnectParams) -> Result<NodeKind, WireError> {
        let in_hot_standby = match self.in_hot_standby {
            Some(standby) => standby,
            None => {
                let row = self.first_row("SELECT pg_catalog.pg_is_in_recovery()", None)?;
                row.and_then(|values| values.into_iter().next().flatten())
                    .is_some_and(|value| value == "t")
            }
        };
        // pgstress sets the session read-only itself unless writes are allowed: the session's
        // value then says nothing of the server's.
        let ours = params.extra.iter().any(|(key, value)| {
            key == "options" && value.contains("default_transaction_read_only")
        });
        Ok(NodeKind {
            in_hot_standby,
            default_read_only: self.default_read_only.filter(|_| !ours),
        })
    }

    /// Whether the login was SCRAM-SHA-256-PLUS, bound to this TLS channel.
    pub fn channel_bound(&self) -> bool {
        self.bound
    }

    /// Sets the deadline of the reads and writes to come (for a session's next request).
    pub fn set_deadline(&mut self, deadline: Instant) {
        self.stream.set_deadline(deadline);
    }

    /// Writes what is in `out`, then empties it.
    pub(super) fn send(&mut self, step: &'static str) -> Result<(), WireError> {
        let result = self
            .stream
            .write_all(&self.out)
            .and_then(|()| self.stream.flush());
        self.out.clear();
        result.map_err(|err| io_error(err, step))
    }

    /// SSLRequest, then the TLS handshake if the server agrees.
    fn negotiate_tls(&mut self, tls: &WireTls, host: &str) -> Result<(), WireError> {
        frontend::ssl_request(&mut self.out);
        self.send("asking for TLS")?;
        let mut answer = [0u8; 1];
        self.stream
            .read_exact(&mut answer)
            .map_err(|err| io_error(err, "waiting for the answer to TLS").unanswered())?;
        self.heard = true;
        match (answer[0], tls.mode) {
            (b'S', _) => self.handshake(tls, host),
            (b'N', SslMode::Prefer) => Ok(()),
            (b'N', _) => Err(WireError::Tls("the server does not support TLS".into())),
            (other, _) => Err(WireError::protocol(format!(
                "answer {} to SSLRequest",
                other.escape_ascii()
            ))),
        }
    }

    fn handshake(&mut self, tls: &WireTls, host: &str) -> Result<(), WireError> {
        let Transport::Tcp(socket) = &self.stream.transport else {
            return Err(WireError::Tls("TLS only runs over TCP".into()));
        };
        let socket = socket.try_clone().map_err(WireError::Io)?;
        arm_tcp(&socket, self.stream.deadline())
            .map_err(|err| io_error(err, "the TLS handshake"))?;
        let mut config = tls
            .connector
            .configure()
            .map_err(|err| WireError::Tls(err.to_string()))?;
        if tls.mode != SslMode::VerifyFull {
            config.set_verify_hostname(false);
        }
        let ssl = match config.connect(host, socket) {
            Ok(ssl) => ssl,
            // A socket timeout mid-handshake: the deadline passed.
            Err(HandshakeError::WouldBlock(_)) => {
                return Err(WireError::Timeout("the TLS handshake"));
            }
            Err(HandshakeError::Failure(mid)) => return Err(handshake_error(mid.into_error())),
            Err(HandshakeError::SetupFailure(err)) => return Err(WireError::Tls(err.to_string())),
        };
        self.stream.transport = Transport::Tls(Box::new(ssl));
        self.tls = true;
        Ok(())
    }

    /// Terminate, written without waiting for an answer; the socket closes as it drops.
    pub fn close(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        if self.terminated {
            return;
        }
        self.terminated = true;
        // A short deadline of its own: the request's may have passed, and a Terminate that
        // cannot leave at once is not worth waiting for.
        self.stream
            .set_deadline(Instant::now() + std::time::Duration::from_millis(100));
        frontend::terminate(&mut self.out);
        let _ = self.send("closing");
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// An I/O error underneath a failed handshake keeps its class (reset, timeout); otherwise the
/// failure is TLS's own (a certificate that does not verify).
fn handshake_error(err: openssl::ssl::Error) -> WireError {
    match err.io_error().map(|io| io.kind()) {
        Some(kind) => io_error(
            std::io::Error::new(kind, err.to_string()),
            "the TLS handshake",
        ),
        None => WireError::Tls(err.to_string()),
    }
}

/// Connects to one address (a name is resolved by the route, an address at a time). With
/// the transport comes when its socket timeouts were set to the time left (TCP), if they were.
fn open_socket(
    params: &ConnectParams,
    address: &Address,
    deadline: Instant,
) -> Result<(Transport, Option<Instant>), WireError> {
    let timeout = |err| io_error(err, "connecting");
    match address {
        Address::Unix(path) => {
            // A Unix connect does not wait on the network: it fails or succeeds at once.
            time_left(deadline).map_err(timeout)?;
            UnixStream::connect(path)
                .map(|socket| (Transport::Unix(socket), None))
                .map_err(WireError::Io)
        }
        Address::Tcp { host, port } => {
            let ip = host
                .parse::<std::net::IpAddr>()
                .map_err(|_| WireError::protocol(format!("{host} is not an address")))?;
            let addr = std::net::SocketAddr::new(ip, *port);
            let socket = new_socket(params, &addr).map_err(WireError::Io)?;
            ReadySocket { socket, addr }
                .connect(deadline)
                .map_err(timeout)
        }
    }
}

/// A TCP socket made before its request is released. The descriptor and the kernel's socket
/// cost the server nothing, and making them is a tenth of what a released thread does before
/// its first wait (`socket` and its descriptor-table growth, 10,000 threads at once): a burst
/// thread makes its socket before the gate, and its release starts with the connect itself.
pub struct ReadySocket {
    socket: socket2::Socket,
    addr: std::net::SocketAddr,
}

impl ReadySocket {
    /// A socket for the target's address, when it is TCP to a host given as an IP address
    /// (a name may resolve to several, tried in turn at connect time); None otherwise, or
    /// when the system will not make one now: the request then makes its own, and meets the
    /// error itself.
    pub fn new(params: &ConnectParams) -> Option<ReadySocket> {
        let Address::Tcp { host, port } = &params.hosts.single()?.address else {
            return None;
        };
        let ip = host.parse::<std::net::IpAddr>().ok()?;
        let addr = std::net::SocketAddr::new(ip, *port);
        let socket = new_socket(params, &addr).ok()?;
        Some(ReadySocket { socket, addr })
    }

    /// Its descriptor's number.
    pub fn descriptor(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.socket)
    }

    /// Connects by `deadline`; with the transport comes when its socket timeouts were set to
    /// the time left.
    fn connect(self, deadline: Instant) -> std::io::Result<(Transport, Option<Instant>)> {
        let armed_at = Instant::now();
        connect_within(&self.socket, &self.addr, time_left(deadline)?)?;
        Ok((Transport::Tcp(self.socket.into()), Some(armed_at)))
    }
}

/// A TCP socket for `addr` with Nagle off, bound to the source address when one is given
/// (which the standard library cannot do), with keepalives when asked.
fn new_socket(
    params: &ConnectParams,
    addr: &std::net::SocketAddr,
) -> std::io::Result<socket2::Socket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(*addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    // Requests are single writes: send each at once, never wait on Nagle.
    socket.set_tcp_nodelay(true)?;
    if let Some(source) = params.source.next() {
        socket.bind(&std::net::SocketAddr::new(source, 0).into())?;
    }
    match params.keepalives {
        Some(Some(idle)) => {
            socket.set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(idle))?
        }
        Some(None) => socket.set_keepalive(true)?,
        None => {}
    }
    Ok(socket)
}

/// Connects within `timeout`, with both socket timeouts set to it: the reads and writes to come
/// need them anyway.
///
/// On Linux the connect itself blocks, bounded by the send timeout (the kernel bounds a
/// blocking connect by SO_SNDTIMEO): three system calls fewer per request than a
/// non-blocking connect and a poll.
fn connect_within(
    socket: &socket2::Socket,
    addr: &std::net::SocketAddr,
    timeout: std::time::Duration,
) -> std::io::Result<()> {
    socket.set_read_timeout(Some(timeout))?;
    socket.set_write_timeout(Some(timeout))?;
    connect_bounded(socket, addr, timeout)
}

#[cfg(target_os = "linux")]
fn connect_bounded(
    socket: &socket2::Socket,
    addr: &std::net::SocketAddr,
    _timeout: std::time::Duration,
) -> std::io::Result<()> {
    match socket.connect(&(*addr).into()) {
        // The send timeout ran out while the handshake was still in progress.
        Err(err) if err.raw_os_error() == Some(libc::EINPROGRESS) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connection timed out",
        )),
        other => other,
    }
}

#[cfg(not(target_os = "linux"))]
fn connect_bounded(
    socket: &socket2::Socket,
    addr: &std::net::SocketAddr,
    timeout: std::time::Duration,
) -> std::io::Result<()> {
    socket.connect_timeout(&(*addr).into(), timeout)
}
