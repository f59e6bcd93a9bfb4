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
use tokio_postgres::{CancelToken, Client, NoTls, SimpleQueryMessage, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::failure::{ConnectError, Failure, HostFailures, Reason};
use crate::target::{Endpoint, Target};
use crate::tls::SslMode;
use crate::typed::SessionAttrs;

/// Whether the session is writable (`on` in a read-only session or on a standby).
const READ_ONLY: &str = "show transaction_read_only";
/// Whether the server is a hot standby.
const IN_RECOVERY: &str = "select pg_catalog.pg_is_in_recovery()";

/// A live connection: the client and the way to cancel its running query.
pub struct Connected {
    /// The session; its connection's I/O runs on a task of its own until it is dropped.
    pub client: Client,
    /// Cancels the query running on `client`.
    pub canceller: Canceller,
}

/// Cancels the query running on one connection, server-side, over the same kind of
/// transport (TLS or not) as the connection.
#[derive(Clone)]
pub struct Canceller {
    token: CancelToken,
    tls: Option<MakeRustlsConnect>,
}

impl Canceller {
    /// Asks the server to cancel the running query (a new connection to the same host
    /// for the cancel request, as libpq's `PQcancel`); that query then fails with
    /// SQLSTATE 57014.
    pub async fn cancel(&self) -> Result<(), tokio_postgres::Error> {
        match &self.tls {
            Some(tls) => self.token.cancel_query(tls.clone()).await,
            None => self.token.cancel_query(NoTls).await,
        }
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
            let client = match &tls {
                Some(tls) => {
                    open(
                        &config,
                        Tracked {
                            inner: tls.clone(),
                            used: used_tls.clone(),
                        },
                    )
                    .await
                }
                None => open(&config, NoTls).await,
            }
            .map_err(Reason::Postgres)?;
            if let Some(complaint) = session_mismatch(&client, want)
                .await
                .map_err(Reason::Postgres)?
            {
                return Err(Reason::Session(complaint));
            }
            let canceller = Canceller {
                token: client.cancel_token(),
                tls,
            };
            Ok(Connected { client, canceller })
        };
        match self.timeout {
            Some(limit) => tokio::time::timeout(limit, work)
                .await
                .map_err(|_| Reason::Timeout(limit))?,
            None => work.await,
        }
    }
}

/// Connects and hands the connection's I/O to a task of its own.
async fn open<T>(config: &tokio_postgres::Config, tls: T) -> Result<Client, tokio_postgres::Error>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
{
    let (client, connection) = config.connect(tls).await?;
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

/// The rustls connector, noting whether a TLS handshake was started (the server
/// accepted the SSL request), which decides `prefer`'s retry without TLS.
#[derive(Clone)]
struct Tracked {
    inner: MakeRustlsConnect,
    used: Arc<AtomicBool>,
}

type Inner = <MakeRustlsConnect as MakeTlsConnect<Socket>>::TlsConnect;

impl MakeTlsConnect<Socket> for Tracked {
    type Stream = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream;
    type TlsConnect = TrackedConnect;
    type Error = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<TrackedConnect, Self::Error> {
        let inner = MakeTlsConnect::<Socket>::make_tls_connect(&mut self.inner, domain)?;
        Ok(TrackedConnect {
            inner,
            used: self.used.clone(),
        })
    }
}

struct TrackedConnect {
    inner: Inner,
    used: Arc<AtomicBool>,
}

impl TlsConnect<Socket> for TrackedConnect {
    type Stream = <Inner as TlsConnect<Socket>>::Stream;
    type Error = <Inner as TlsConnect<Socket>>::Error;
    type Future = <Inner as TlsConnect<Socket>>::Future;

    fn connect(self, stream: Socket) -> Self::Future {
        self.used.store(true, Ordering::Relaxed);
        self.inner.connect(stream)
    }
}
