//! `GET /metrics` over HTTP for Prometheus while the run goes on: the Prometheus text format,
//! or OpenMetrics when the scraper's `Accept` prefers it (Prometheus itself asks for it first).
//! tiny_http (a small blocking HTTP/1.1 server, no async runtime) parses the requests; one
//! thread of pgstress answers them, one at a time, each scrape a snapshot of the atomics.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tiny_http::{Header, Method, Request, Response, Server};

use super::{OPENMETRICS_CONTENT_TYPE, RunMetrics, TEXT_CONTENT_TYPE};

/// The metrics a scrape reads; None until the run's first step is about to start.
type Shared = Arc<Mutex<Option<Arc<RunMetrics>>>>;

/// A listening endpoint; dropping it stops the listener.
pub struct MetricsEndpoint {
    address: SocketAddr,
    shared: Shared,
    server: Arc<Server>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsEndpoint {
    /// Listens at `address` and answers at once: before the run's metrics are there, with
    /// none (an empty exposition is a valid one).
    pub fn bind(address: SocketAddr) -> io::Result<Self> {
        let server = Server::from_listener(listener(address)?, None).map_err(io::Error::other)?;
        let server = Arc::new(server);
        let address = server.server_addr().to_ip().unwrap_or(address);
        let shared: Shared = Arc::default();
        let thread = {
            let (server, shared) = (Arc::clone(&server), Arc::clone(&shared));
            std::thread::Builder::new()
                .name("pgstress-metrics".into())
                .spawn(move || {
                    // Ends when `unblock` is called (the endpoint dropped).
                    for request in server.incoming_requests() {
                        let metrics = shared.lock().unwrap_or_else(|e| e.into_inner()).clone();
                        answer(request, metrics.as_deref());
                    }
                })?
        };
        Ok(MetricsEndpoint {
            address,
            shared,
            server,
            thread: Some(thread),
        })
    }

    /// The address it listens at (the port the system chose, for port 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// From now on scrapes read these metrics.
    pub fn serve(&self, metrics: Arc<RunMetrics>) {
        *self.shared.lock().unwrap_or_else(|e| e.into_inner()) = Some(metrics);
    }
}

impl Drop for MetricsEndpoint {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The listening socket, with Nagle's algorithm off for the connections it accepts (Linux
/// hands the option down): tiny_http writes a response's head and body apart, and on a
/// connection kept open for the next scrape the body would wait for the head's delayed
/// acknowledgement, some 40 ms a scrape.
fn listener(address: SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(address), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&address.into())?;
    socket.listen(128)?;
    Ok(socket.into())
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("an ASCII header")
}

fn answer(request: Request, metrics: Option<&RunMetrics>) {
    let path = request.url().split('?').next().unwrap_or("");
    let readable = matches!(request.method(), Method::Get | Method::Head);
    let response = match (readable, path) {
        (false, _) => Response::from_string("only GET and HEAD\n")
            .with_status_code(405)
            .with_header(header("Allow", "GET, HEAD")),
        (true, "/metrics") => {
            let accept = request
                .headers()
                .iter()
                .find(|h| h.field.equiv("Accept"))
                .map(|h| h.value.as_str().to_owned())
                .unwrap_or_default();
            let (body, content_type) = exposition(metrics, &accept);
            Response::from_string(body).with_header(header("Content-Type", content_type))
        }
        (true, "/") => Response::from_string("pgstress: the run's metrics are at /metrics\n"),
        (true, _) => {
            Response::from_string("not found: the metrics are at /metrics\n").with_status_code(404)
        }
    };
    // A scraper that went away is no concern of the run's.
    let _ = request.respond(response);
}

/// The body and its content type for a scraper that accepts `accept`.
pub fn exposition(metrics: Option<&RunMetrics>, accept: &str) -> (String, &'static str) {
    match (prefers_openmetrics(accept), metrics) {
        (true, Some(metrics)) => (metrics.openmetrics(), OPENMETRICS_CONTENT_TYPE),
        (true, None) => ("# EOF\n".to_owned(), OPENMETRICS_CONTENT_TYPE),
        (false, Some(metrics)) => (metrics.text(), TEXT_CONTENT_TYPE),
        (false, None) => (String::new(), TEXT_CONTENT_TYPE),
    }
}

/// Whether an `Accept` header ranks OpenMetrics at least as high as plain text: Prometheus
/// sends `application/openmetrics-text;version=1.0.0,…,text/plain;version=0.0.4;q=0.5,…`;
/// curl sends `*/*`, which gets the plain text.
pub fn prefers_openmetrics(accept: &str) -> bool {
    let mut openmetrics: f64 = 0.0;
    let mut plain: f64 = 0.0;
    for entry in accept.split(',') {
        let mut parts = entry.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let quality = parts
            .filter_map(|p| p.strip_prefix("q="))
            .find_map(|q| q.parse::<f64>().ok())
            .unwrap_or(1.0);
        match media.as_str() {
            "application/openmetrics-text" => openmetrics = openmetrics.max(quality),
            "text/plain" | "text/*" | "*/*" => plain = plain.max(quality),
            _ => {}
        }
    }
    openmetrics > 0.0 && openmetrics >= plain
}
