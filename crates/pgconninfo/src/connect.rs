//! Connecting a [`Target`]: each host in turn (shuffled with `load_balance_hosts=random`),
//! each attempt within `connect_timeout`, TLS as `sslmode` says, then the
//! `target_session_attrs` check, which tokio-postgres only knows for read-write.
//!
//! Per host, as libpq: `allow` tries without TLS first and retries with TLS when the
//! server refuses; `prefer` tries TLS first and retries without it when the TLS
//! handshake or the login over TLS fails. Unix sockets never use TLS.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio_postgres::config::SslMode as PgSslMode;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{CancelToken, Client, NoTls, SimpleQueryMessage};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::dial::{Socket, dial, host_name};
use crate::failure::{ConnectError, Failure, HostFailures, Reason};
use crate::lane::{Lane, Shared};
use crate::target::{Endpoint, Target};
use crate::tls::SslMode;
use crate::typed::SessionAttrs;

/// Whether the session is writable (`on` in a read-only session or on a standby).
const READ_ONLY: &str = "show transaction_read_only";
/// Whether the server is a hot standby.
const IN_RECOVERY: &str = "select pg_catalog.pg_is_in_recovery()";

/// A live connection: the client, the way to cancel its running query, and the lane
/// for a hot statement when the connection is not encrypted.
pub struct Connected {
    /// The session; its connection's I/O runs on a task of its own until it is dropped.
    pub client: Client,
    /// Cancels the query running on `client`.
    pub canceller: Canceller,
    /// Direct use of the socket for one statement at a time (see [`Lane`]); `None`
    /// when the connection uses TLS.
    pub lane: Option<Lane>,
}

/// Cancels the query running on one connection, server-side, over the same kind of
/// transport (TLS or not) as the connection.
#[derive(Clone)]
pub struct Canceller {
    token: CancelToken,
    /// The host's settings, to open the cancel request's own connection.
    config: tokio_postgres::Config,
    tls: Option<MakeRustlsConnect>,
}

impl Canceller {
    /// Asks the server to cancel the running query (a new connection to the same host
    /// for the cancel request, as libpq's `PQcancel`); that query then fails with
    /// SQLSTATE 57014.
    pub async fn cancel(&self) -> std::io::Result<()> {
        let socket = dial(&self.config).await?;
        let sent = match &self.tls {
            Some(tls) => {
                let connect = MakeTlsConnect::<Socket>::make_tls_connect(
                    &mut tls.clone(),
                    host_name(&self.config).unwrap_or(""),
                )
                .map_err(std::io::Error::other)?;
                self.token.cancel_query_raw(socket, connect).await
            }
            None => self.token.cancel_query_raw(socket, NoTls).await,
        };
        sent.map_err(std::io::Error::other)
    }
}

impl Target {
    /// Opens the connection; its I/O runs on a task of its own until the client is dropped.
    pub async fn connect(&self) -> Result<Connected, ConnectError> {
        // prefer-standby is libpq's two passes: a standby anywhere, else any server.
        let passes: &[SessionAttrs] = match self.attrs {
            SessionAttrs::PreferStandby => &[SessionAttrs::Standby, SessionAttrs::Any],
            ref one => std::slice::from_ref(one),
        };
        let mut failures = Vec::new();
        for &want in passes {
            for index in self.order() {
                match self.connect_host(&self.endpoints[index], want).await {
                    Ok(connected) => return Ok(connected),
                    Err(failure) => failures.push(failure),
                }
            }
        }
        Err(ConnectError::Hosts(HostFailures(failures)))
    }

    /// The order in which hosts are tried.
    fn order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.endpoints.len()).collect();
        if self.load_balance {
            shuffle(&mut order);
        }
        order
    }

    /// One host, with its password file read now and libpq's TLS fallbacks.
    async fn connect_host(
        &self,
        endpoint: &Endpoint,
        want: SessionAttrs,
    ) -> Result<Connected, Failure> {
        let mut config = endpoint.config.clone();
        let from_file = (endpoint.passfile.as_ref())
            .and_then(|lookup| Some((lookup.find().password?, lookup.path.clone())));
        let passfile = from_file.map(|(password, path)| {
            config.password(password);
            path
        });
        let failure = |reasons| Failure {
            label: endpoint.label.clone(),
            reasons,
            passfile: passfile.clone(),
            roots: self.roots.clone(),
        };
        let (first, fallback) = match (endpoint.socket, self.sslmode) {
            (true, _) | (_, SslMode::Disable) => (PgSslMode::Disable, None),
            (false, SslMode::Allow) => (PgSslMode::Disable, Some(PgSslMode::Require)),
            (false, SslMode::Prefer) => (PgSslMode::Prefer, Some(PgSslMode::Disable)),
            (false, _) => (PgSslMode::Require, None),
        };
        let used_tls = Arc::new(AtomicBool::new(false));
        let error = match self.attempt(&config, first, want, &used_tls).await {
            Ok(connected) => return Ok(connected),
            Err(error) => error,
        };
        let retry = match (first, &error) {
            (PgSslMode::Disable, Reason::Postgres(e)) => e.as_db_error().is_some(),
            (PgSslMode::Prefer, Reason::Postgres(_)) => used_tls.load(Ordering::Relaxed),
            _ => false,
        };
        let Some(fallback) = fallback.filter(|_| retry) else {
            return Err(failure(vec![error]));
        };
        match self.attempt(&config, fallback, want, &used_tls).await {
            Ok(connected) => Ok(connected),
            Err(second) => Err(failure(vec![error, second])),
        }
    }

    /// One connection attempt, within the connect timeout.
    async fn attempt(
        &self,
        config: &tokio_postgres::Config,
        mode: PgSslMode,
        want: SessionAttrs,
        used_tls: &Arc<AtomicBool>,
    ) -> Result<Connected, Reason> {
        let mut config = config.clone();
        config.ssl_mode(mode);
        let tls = self.tls.clone().filter(|_| mode != PgSslMode::Disable);
        let work = async {
            let socket = dial(&config).await.map_err(Reason::Dial)?;
            let (shared, lane) = Shared::new(socket);
            let client = match &tls {
                Some(tls) => {
                    let connect = TrackedConnect {
                        inner: MakeTlsConnect::<Shared>::make_tls_connect(
                            &mut tls.clone(),
                            host_name(&config).unwrap_or(""),
                        )
                        .map_err(|e| Reason::Dial(std::io::Error::other(e)))?,
                        used: used_tls.clone(),
                    };
                    open(&config, shared, connect).await
                }
                None => open(&config, shared, NoTls).await,
            }
            .map_err(Reason::Postgres)?;
            if let Some(complaint) = session_mismatch(&client, want)
                .await
                .map_err(Reason::Postgres)?
            {
                return Err(Reason::Session(complaint));
            }
            // A connection that started TLS speaks it: no clear-text lane beside it.
            let lane = (tls.is_none() || !used_tls.load(Ordering::Relaxed)).then_some(lane);
            let canceller = Canceller {
                token: client.cancel_token(),
                config: config.clone(),
                tls,
            };
            Ok(Connected {
                client,
                canceller,
                lane,
            })
        };
        match self.timeout {
            Some(limit) => tokio::time::timeout(limit, work)
                .await
                .map_err(|_| Reason::Timeout(limit))?,
            None => work.await,
        }
    }
}

/// Logs in over `socket` and hands the connection's I/O to a task of its own.
async fn open<T>(
    config: &tokio_postgres::Config,
    socket: Shared,
    tls: T,
) -> Result<Client, tokio_postgres::Error>
where
    T: TlsConnect<Shared>,
    T::Stream: Send + 'static,
{
    let (client, connection) = config.connect_raw(socket, tls).await?;
    tokio::spawn(async move {
        // The error, if any, reaches the client's next query as is_closed().
        let _ = connection.await;
    });
    Ok(client)
}

/// What is wrong with the session for `want`, in libpq's words, or `None`.
async fn session_mismatch(
    client: &Client,
    want: SessionAttrs,
) -> Result<Option<&'static str>, tokio_postgres::Error> {
    let (sql, expected, complaint) = match want {
        SessionAttrs::Any | SessionAttrs::PreferStandby => return Ok(None),
        SessionAttrs::ReadWrite => (READ_ONLY, "off", "session is read-only"),
        SessionAttrs::ReadOnly => (READ_ONLY, "on", "session is not read-only"),
        SessionAttrs::Primary => (IN_RECOVERY, "f", "server is in hot standby mode"),
        SessionAttrs::Standby => (IN_RECOVERY, "t", "server is not in hot standby mode"),
    };
    let value = client
        .simple_query(sql)
        .await?
        .into_iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        });
    Ok((value.as_deref() != Some(expected)).then_some(complaint))
}

/// A Fisher-Yates shuffle seeded from the standard library's per-process random keys;
/// spreading load needs no better randomness.
fn shuffle(items: &mut [usize]) {
    use std::hash::{BuildHasher, RandomState};
    let seed = RandomState::new();
    for i in (1..items.len()).rev() {
        let j = (seed.hash_one(i) % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

/// The rustls connector for one host, noting whether a TLS handshake was started (the
/// server accepted the SSL request), which decides `prefer`'s retry without TLS and
/// whether the connection has a lane.
struct TrackedConnect {
    inner: Inner,
    used: Arc<AtomicBool>,
}

type Inner = <MakeRustlsConnect as MakeTlsConnect<Shared>>::TlsConnect;

impl TlsConnect<Shared> for TrackedConnect {
    type Stream = <Inner as TlsConnect<Shared>>::Stream;
    type Error = <Inner as TlsConnect<Shared>>::Error;
    type Future = <Inner as TlsConnect<Shared>>::Future;

    fn connect(self, stream: Shared) -> Self::Future {
        self.used.store(true, Ordering::Relaxed);
        self.inner.connect(stream)
    }
}
