//! Wiring: configuration -> store -> HTTP API, and an orderly shutdown.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use rand::RngCore;
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::{self, AppState};
use crate::call::uac::OutboundCall;
use crate::call::{CallContext, CallSettings, LiveCalls, Throttle};
use crate::config::Config;
use crate::endpoint::{CoreHandle, Driver, PlaceError};
use crate::gate::{Gate, Shield};
use crate::ids::{CallId, NodeId};
use crate::media::lateness;
use crate::media::recorder::{self, Recorder};
use crate::media::runtime::{self, MediaRuntime};
use crate::routing::admission::Admission;
use crate::routing::directory::Directory;
use crate::routing::trunks::TrunkBook;
use crate::sip::auth::NonceKey;
use crate::store::{AttemptLog, CallWriter, Store};
use crate::transport;
use crate::transport::tls::TlsCerts;

/// A running vca-sip: its bound addresses, and the handle that stops it.
pub struct Server {
    pub http_addr: SocketAddr,
    pub sip_udp_addr: SocketAddr,
    pub sip_tcp_addr: SocketAddr,
    /// `None` when TLS is off.
    pub sip_tls_addr: Option<SocketAddr>,
    pub store: Store,
    pub directory: Directory,
    context: Arc<CallContext>,
    core: CoreHandle,
    /// The SIP UDP socket, which calls placed over UDP go out (and are answered) on.
    udp: Arc<tokio::net::UdpSocket>,
    shutdown: watch::Sender<bool>,
    http: JoinHandle<std::io::Result<()>>,
    background: Vec<JoinHandle<()>>,
}

/// How often the DID table is reloaded whole, for changes made through other nodes.
const DIRECTORY_RELOAD: Duration = Duration::from_secs(30);
/// How often rejected attempts are written.
const ATTEMPTS_FLUSH: Duration = Duration::from_secs(5);
/// Call-record changes that may wait for the writer before new calls get 503.
const WRITER_QUEUE: usize = 65_536;

/// Forgets idle sources of the flood guard now and then.
async fn evict_idle_sources(shield: Arc<Shield>) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        // The tick's own instant: when it was due, near enough for forgetting idle sources.
        let now = tick.tick().await.into_std();
        shield.evict(now);
    }
}

/// How often the recorder's histogram samples are folded into their buckets when nothing
/// scrapes `/metrics`.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

/// Folds the histograms' raw samples into their buckets now and then: the recorder keeps
/// every sample until it renders or runs its upkeep, and the media shards flush thousands of
/// send-lateness samples a second.
async fn metrics_upkeep(handle: PrometheusHandle) {
    let mut tick = tokio::time::interval(METRICS_UPKEEP);
    loop {
        tick.tick().await;
        handle.run_upkeep();
    }
}

impl Server {
    /// Opens the store, applies pending migrations, and starts serving SIP and HTTP.
    pub async fn start(config: &Config) -> anyhow::Result<Server> {
        // First: the parts that keep metric handles get live ones only once it is installed.
        let metrics = metrics_handle();
        let admin_token = admin_token(config)?;
        let store = Store::connect(&config.database)
            .await
            .with_context(|| format!("cannot open the {} database", backend_name(config)))?;
        store
            .migrate()
            .await
            .context("cannot apply database migrations")?;
        let clock = crate::clock::system();
        close_calls_left_live(&store, &config.node_id, clock.now()).await?;
        let directory = Directory::load(&store)
            .await
            .context("cannot load the DID directory")?;
        let trunks = TrunkBook::load(&store)
            .await
            .context("cannot load the trunks")?;
        if trunks.snapshot().dev_loopback() {
            tracing::warn!(
                "no trunk configured: loopback sources (127.0.0.0/8, ::1) are admitted as a \
                 development trunk until one is added"
            );
        }
        let nonce_key = store
            .node_secret("digest_nonce_key", clock.now())
            .await
            .context("cannot read the digest nonce key")?;
        let nonce_key =
            NonceKey::new(&nonce_key).context("the stored digest nonce key is unusable")?;
        let shield = Shield::new(trunks.clone(), config.flood);
        let gate = Gate::new(shield.clone(), nonce_key, config.gate.clone());

        let udp = transport::udp::bind(config.sip_udp)
            .with_context(|| format!("cannot listen for SIP on udp/{}", config.sip_udp))?;
        let sip_udp_addr = udp.local_addr()?;
        let tcp = TcpListener::bind(config.sip_tcp)
            .await
            .with_context(|| format!("cannot listen for SIP on tcp/{}", config.sip_tcp))?;
        let sip_tcp_addr = tcp.local_addr()?;
        let tls = match &config.tls {
            Some(settings) => {
                let certs = TlsCerts::load(settings.files.clone()).with_context(|| {
                    format!("cannot load the TLS certificate for tls/{}", settings.addr)
                })?;
                let listener = TcpListener::bind(settings.addr)
                    .await
                    .with_context(|| format!("cannot listen for SIP on tls/{}", settings.addr))?;
                // Registered before the start returns: from then on a SIGHUP reloads the
                // certificate instead of ending the process.
                let hangup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
                Some((listener, Arc::new(certs), hangup))
            }
            None => None,
        };
        let sip_tls_addr = match &tls {
            Some((listener, ..)) => Some(listener.local_addr()?),
            None => None,
        };

        let media = MediaRuntime::spawn_with_priority(
            config.sip_udp.ip(),
            config.rtp_ports.clone(),
            runtime::default_shards(),
            config.media_realtime_priority,
        )
        .context("cannot start the media shards")?;
        let (writer, writer_task) =
            CallWriter::start(store.clone(), WRITER_QUEUE, config.node_id.clone());
        let attempts = AttemptLog::default();
        let live = LiveCalls::default();
        let recorder = Recorder::spawn(config.recordings_dir.clone(), recorder::QUEUE)
            .context("cannot start the recording writer")?;
        let context = Arc::new(CallContext {
            writer,
            directory: directory.clone(),
            admission: Admission::default(),
            media,
            attempts: attempts.clone(),
            settings: CallSettings {
                public_ip: config.public_ip,
                udp_port: sip_udp_addr.port(),
                tcp_port: sip_tcp_addr.port(),
                tls_port: sip_tls_addr.map_or(0, |addr| addr.port()),
                ring: config.ring,
                media_timeout: config.media_timeout,
                max_call_duration: config.max_call_duration,
                country: config.default_country_code.clone(),
            },
            clock: clock.clone(),
            port_warnings: Throttle::new(Duration::from_secs(1)),
            targets: config.target_policy,
            live: live.clone(),
            recorder: recorder.clone(),
        });
        let (core, handle) = Driver::new(context.clone(), gate);
        let mut background = vec![
            tokio::spawn(core.run()),
            tokio::spawn(transport::udp::run(
                udp.clone(),
                handle.inbound.clone(),
                shield.clone(),
            )),
            tokio::spawn(transport::tcp::run(
                tcp,
                handle.inbound.clone(),
                config.tcp_limits,
                shield.clone(),
            )),
            tokio::spawn(trunks.clone().run(store.clone(), DIRECTORY_RELOAD)),
            tokio::spawn(evict_idle_sources(shield.clone())),
            tokio::spawn(metrics_upkeep(metrics.clone())),
            tokio::spawn(directory.clone().run(store.clone(), DIRECTORY_RELOAD)),
            tokio::spawn(attempts.clone().run(store.clone(), ATTEMPTS_FLUSH)),
            writer_task,
        ];
        if let Some((listener, certs, hangup)) = tls {
            background.push(tokio::spawn(transport::tls::run(
                listener,
                handle.inbound.clone(),
                config.tcp_limits,
                shield.clone(),
                certs.clone(),
            )));
            background.push(tokio::spawn(reload_on_hangup(certs, hangup)));
        }

        let state = AppState {
            store: store.clone(),
            admin_token: Arc::from(admin_token),
            directory: directory.clone(),
            trunks: trunks.clone(),
            metrics,
            clock,
            live,
            calls: Arc::clone(&context),
            recordings: config.recordings_dir.clone(),
        };
        let listener = TcpListener::bind(config.http)
            .await
            .with_context(|| format!("cannot listen for HTTP on {}", config.http))?;
        let http_addr = listener.local_addr()?;
        let (shutdown, mut stop) = watch::channel(false);
        let app = api::router(state);
        let http = tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|stop| *stop).await;
            })
            .await
        });
        tracing::info!(%http_addr, %sip_udp_addr, %sip_tcp_addr, ?sip_tls_addr, backend = store.backend(), node_id = %config.node_id, "vca-sip serving");
        Ok(Server {
            http_addr,
            sip_udp_addr,
            sip_tcp_addr,
            sip_tls_addr,
            store,
            directory,
            context,
            core: handle,
            udp,
            shutdown,
            http,
            background,
        })
    }

    /// Places `call` over UDP to `to`, from the SIP UDP socket (so that responses and the
    /// far end's requests come back the way inbound calls' do), and returns the id of its
    /// record.
    pub fn place_call(&self, to: SocketAddr, call: OutboundCall) -> Result<CallId, PlaceError> {
        let peer = transport::Peer::Udp {
            socket: self.udp.clone(),
            addr: to,
        };
        self.core.place_call(peer, call)
    }

    /// Calls up on this node now.
    pub fn live_calls(&self) -> u32 {
        self.context.admission.total()
    }

    /// Stops taking new calls (they get 503), waits up to `drain` for live calls to end,
    /// writes every pending call record, and closes the store.
    pub async fn stop(self, drain: Duration) -> anyhow::Result<()> {
        self.core.draining.store(true, Ordering::Relaxed);
        let drained = async {
            while self.live_calls() > 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        let _ = tokio::time::timeout(drain, drained).await;
        // Calls that ended just now may still be handing their last change to the writer.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let flushed = self.context.writer.flush().await;
        if let Err(e) = self.context.attempts.flush(&self.store).await {
            tracing::warn!(error = %e, "rejected attempts not written at shutdown");
        }
        let _ = self.shutdown.send(true);
        self.http.await.context("HTTP task failed")??;
        for task in &self.background {
            task.abort();
        }
        self.store.close().await;
        // Last: calls still up past the drain lose their media now.
        self.context.media.shutdown();
        let media = self.context.media.clone();
        let _ = tokio::task::spawn_blocking(move || media.join()).await;
        flushed.context("call records not written at shutdown")?;
        Ok(())
    }
}

/// Closes the calls that this node's last run left live (it crashed), before this run
/// takes any call of its own; says in one line how many there were.
async fn close_calls_left_live(
    store: &Store,
    node: &NodeId,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let closed = store
        .close_calls_left_by(node, crate::store::stamp(now))
        .await
        .context("cannot close the calls left live by this node's last run")?;
    if closed > 0 {
        tracing::warn!(node_id = %node, closed, "closed the calls this node left live when it stopped last (hangup_cause node_restart)");
    } else {
        tracing::info!(node_id = %node, closed, "no calls left live by this node's last run");
    }
    Ok(())
}

/// Re-reads the TLS files on every SIGHUP. New connections get the new certificate;
/// connections already up, and their calls, keep theirs. A reload that fails says so in
/// one line and leaves the current certificate in place.
async fn reload_on_hangup(certs: Arc<TlsCerts>, mut hangup: Signal) {
    while hangup.recv().await.is_some() {
        match certs.reload() {
            Ok(()) => tracing::info!(
                cert = %certs.files().cert.display(),
                "TLS certificate reloaded: new connections use it"
            ),
            Err(e) => tracing::error!(
                setting = e.setting(),
                "TLS certificate not reloaded, the current one stays: {e}"
            ),
        }
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
            // The send lateness is a true histogram, with buckets fine enough below 2 ms;
            // the other histograms stay summaries.
            // (It refuses only an empty list of buckets.)
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(lateness::SEND_LATENESS.to_owned()),
                    &lateness::bucket_bounds_seconds(),
                )
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
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
