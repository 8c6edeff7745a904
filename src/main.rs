//! The `vca-sip` binary: flags -> configuration -> run.

use std::process::ExitCode;

/// Call setup allocates small objects on every core at a high rate; glibc's allocator
/// serialises them on arena locks.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use vca_sip::config::{Cli, Command, Config};
use vca_sip::server::Server;
use vca_sip::store::Store;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours for a terminal only: a log file or journal keeps plain text to search.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let (settings, serve) = match &cli.command {
        Command::Serve(settings) => (settings, true),
        Command::Migrate(settings) => (settings, false),
    };
    let admin_token = std::env::var("VCA_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    let config = match Config::load(settings, admin_token) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("vca-sip: {err}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("vca-sip: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        if serve {
            serve_until_signal(&config).await
        } else {
            migrate(&config).await
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("vca-sip: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn migrate(config: &Config) -> anyhow::Result<()> {
    let store = Store::connect(&config.database).await?;
    store.migrate().await?;
    eprintln!("vca-sip: the {} database is up to date", store.backend());
    store.close().await;
    Ok(())
}

/// How long a SIGTERM waits for live calls to end before the server stops anyway.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(30);

async fn serve_until_signal(config: &Config) -> anyhow::Result<()> {
    let server = Server::start(config).await?;
    // Before the lines that say the server is up: a SIGTERM sent once they are read drains.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    eprintln!(
        "vca-sip: SIP on udp/{} and tcp/{}",
        server.sip_udp_addr, server.sip_tcp_addr
    );
    if let Some(addr) = server.sip_tls_addr {
        eprintln!("vca-sip: SIP over TLS on tls/{addr} (SIGHUP reloads its certificate)");
    }
    eprintln!("vca-sip: HTTP API on http://{}", server.http_addr);
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down: new calls get 503 while live calls end");
    server.stop(DRAIN).await
}
