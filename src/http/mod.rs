//! The HTTP listener, off unless `http_listen` is set, and what secures it.
//! Connections are bounded in number and time; no request can make it panic.
//!
//! - `routes.rs`: the endpoints (`/metrics`, `/livez`, `/readyz`, `/healthz`, `/status`).
//! - `web_config.rs`: `http_web_config`, exporter-toolkit's web configuration file.
//! - `tls.rs`: its TLS part as a rustls `ServerConfig`.
//! - `auth.rs`: basic auth against bcrypt hashes, with a cache of outcomes.
//! - `guard.rs`: the settings in force, and their reload (SIGHUP, changed files).
//! - `client.rs`: the client side, for `pgqd --healthcheck`.

mod auth;
pub mod client;
mod guard;
mod routes;
mod tls;
pub mod web_config;

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{AUTHORIZATION, HeaderName, HeaderValue, WWW_AUTHENTICATE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::stats::Stats;
use guard::{Guard, Keeper};

/// At most this many connections are served at once; more wait in the backlog.
const MAX_CONNECTIONS: usize = 64;
/// A client must finish the TLS handshake, and then send its request headers, each
/// within this time.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// No connection is kept longer than this.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);
/// The first byte of a TLS handshake record; anything else on a TLS port is plain
/// HTTP (or noise) and gets Go's answer for it.
const TLS_HANDSHAKE: u8 = 0x16;
const PLAIN_TO_TLS: &[u8] = b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

/// What the handlers read.
pub(crate) struct Shared {
    stats: Arc<Stats>,
    registry: Registry,
    settings: watch::Receiver<Arc<Config>>,
}

/// The listener task.
pub struct HttpServer {
    listener: TcpListener,
    shared: Arc<Shared>,
    keeper: Keeper,
    shutdown: CancellationToken,
}

impl HttpServer {
    /// Binds `address` (`host:port`) and reads `http_web_config`; the error names the
    /// address or the file.
    pub async fn bind(
        address: &str,
        stats: Arc<Stats>,
        settings: watch::Receiver<Arc<Config>>,
        shutdown: CancellationToken,
    ) -> Result<HttpServer, String> {
        let web_config = settings.borrow().http_web_config.clone();
        let keeper = Keeper::start(web_config.as_deref()).map_err(|e| e.to_string())?;
        let listener = TcpListener::bind(address)
            .await
            .map_err(|e| format!("http_listen {address:?}: cannot listen: {e}"))?;
        if let Ok(local) = listener.local_addr() {
            let scheme = if keeper.current().tls.is_some() {
                "https"
            } else {
                "http"
            };
            info!("HTTP listener on {local} ({scheme}): /metrics /livez /readyz /healthz /status");
        }
        let registry = crate::metrics::registry(stats.clone());
        Ok(HttpServer {
            listener,
            shared: Arc::new(Shared {
                stats,
                registry,
                settings,
            }),
            keeper,
            shutdown,
        })
    }

    /// Accepts connections until shutdown; a reload reads the web config again.
    pub async fn run(mut self) {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let mut reloads = self.shared.settings.clone();
        loop {
            let permit = tokio::select! {
                permit = slots.clone().acquire_owned() => permit,
                _ = self.shutdown.cancelled() => return,
            };
            let Ok(permit) = permit else { return };
            let (stream, peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        warn!("HTTP accept failed: {e}");
                        continue;
                    }
                },
                changed = reloads.changed() => {
                    // The supervisor, which owns the settings, has ended: so does pgqd.
                    if changed.is_err() {
                        return;
                    }
                    let path = reloads.borrow_and_update().http_web_config.clone();
                    self.keeper.reload(path.as_deref());
                    continue;
                }
                _ = self.shutdown.cancelled() => return,
            };
            self.keeper.refresh();
            let guard = self.keeper.current();
            let shared = self.shared.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(CONNECTION_TIMEOUT, connection(stream, guard, shared))
                    .await
                {
                    Ok(Err(e)) => debug!("HTTP connection from {peer}: {e}"),
                    Err(_) => {
                        debug!("HTTP connection from {peer} closed after {CONNECTION_TIMEOUT:?}")
                    }
                    Ok(Ok(())) => {}
                }
                drop(permit);
            });
        }
    }
}

/// One connection: the TLS handshake when the guard has TLS, then HTTP/1.1.
async fn connection(
    stream: TcpStream,
    guard: Arc<Guard>,
    shared: Arc<Shared>,
) -> Result<(), String> {
    let Some(acceptor) = guard.tls.clone() else {
        return serve(stream, guard, shared).await;
    };
    let mut first = [0u8; 1];
    let peeked = tokio::time::timeout(HEADER_TIMEOUT, stream.peek(&mut first)).await;
    if !matches!(peeked, Ok(Ok(1))) {
        return Err("nothing sent".into());
    }
    if first[0] != TLS_HANDSHAKE {
        let mut stream = stream;
        let _ = stream.write_all(PLAIN_TO_TLS).await;
        let _ = stream.shutdown().await;
        return Err("plain HTTP on the TLS listener, answered 400".into());
    }
    let tls = tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream))
        .await
        .map_err(|_| "TLS handshake timed out".to_string())?
        .map_err(|e| format!("TLS handshake failed: {e}"))?;
    serve(tls, guard, shared).await
}

async fn serve<S>(io: S, guard: Arc<Guard>, shared: Arc<Shared>) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let (guard, shared) = (guard.clone(), shared.clone());
        async move { Ok::<_, Infallible>(handle(&guard, &shared, request).await) }
    });
    http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(io), service)
        .await
        .map_err(|e| e.to_string())
}

/// Basic auth first (when users are configured), then the route; the configured
/// headers on every answer, refusals included.
async fn handle(
    guard: &Guard,
    shared: &Shared,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let allowed = match &guard.users {
        None => true,
        Some(users) => users.allows(request.headers().get(AUTHORIZATION)).await,
    };
    let mut response = if allowed {
        routes::respond(shared, &request)
    } else {
        let mut refused = routes::Answer::error(StatusCode::UNAUTHORIZED, "unauthorized")
            .into_response(request.method() == hyper::Method::HEAD);
        refused
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
        refused
    };
    for (name, value) in &guard.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// `--check`: the web config at `path` and the files it names, built as start-up
/// would; the summary line, or the error.
pub fn check_web_config(path: &Path) -> Result<String, String> {
    Guard::load(path)
        .map(|guard| guard.config.map(|c| c.summary()).unwrap_or_default())
        .map_err(|e| e.to_string())
}
