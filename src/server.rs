//! Wiring: configuration -> store -> HTTP API, and an orderly shutdown.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use rand::RngCore;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::{self, AppState};
use crate::config::Config;
use crate::store::Store;

/// A running vca-sip: its bound addresses, and the handle that stops it.
pub struct Server {
    pub http_addr: SocketAddr,
    pub store: Store,
    shutdown: watch::Sender<bool>,
    http: JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Opens the store, applies pending migrations and starts serving.
    pub async fn start(config: &Config) -> anyhow::Result<Server> {
        let admin_token = admin_token(config)?;
        let store = Store::connect(&config.database)
            .await
            .with_context(|| format!("cannot open the {} database", backend_name(config)))?;
        store
            .migrate()
            .await
            .context("cannot apply database migrations")?;
        let state = AppState {
            store: store.clone(),
            admin_token: Arc::from(admin_token),
            metrics: metrics_handle(),
        };
        let listener = TcpListener::bind(config.http)
            .await
            .with_context(|| format!("cannot listen for HTTP on {}", config.http))?;
        let http_addr = listener.local_addr()?;
        let (shutdown, mut stop) = watch::channel(false);
        let app = api::router(state);
        let http = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|stop| *stop).await;
                })
                .await
        });
        tracing::info!(%http_addr, backend = store.backend(), "vca-sip serving");
        Ok(Server {
            http_addr,
            store,
            shutdown,
            http,
        })
    }

    /// Stops accepting work, lets in-flight requests finish, and closes the store.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.http.await.context("HTTP task failed")??;
        self.store.close().await;
        Ok(())
    }
}

fn backend_name(config: &Config) -> &'static str {
    match config.database {
        crate::store::DatabaseUrl::Sqlite(_) => "SQLite",
        crate::store::DatabaseUrl::Postgres(_) => "PostgreSQL",
    }
}

/// The process-wide Prometheus recorder (one per process, however many servers run in it).
fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (e.g. by an embedding program);
            // then this handle still renders, just without the global counters.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// The admin token: `VCA_ADMIN_TOKEN`, or the one kept in the token file beside the
/// database, generated (mode 0600) on the first start.
fn admin_token(config: &Config) -> anyhow::Result<String> {
    if let Some(token) = &config.admin_token {
        return Ok(token.trim().to_owned());
    }
    let path = config.admin_token_file();
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let token = text.trim().to_owned();
            anyhow::ensure!(
                token.len() >= 16,
                "the admin token file {} is damaged: delete it to generate a new token",
                path.display()
            );
            Ok(token)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = generate_token();
            write_private(&path, &token)
                .with_context(|| format!("cannot write the admin token to {}", path.display()))?;
            eprintln!(
                "vca-sip: generated the platform admin token in {} (set VCA_ADMIN_TOKEN to use your own)",
                path.display()
            );
            Ok(token)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Creates `path` readable by its owner only, refusing to overwrite an existing file.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    writeln!(file, "{contents}")?;
    file.sync_all()
}
