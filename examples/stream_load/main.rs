//! Load generators for calls streamed to AI agents, each its own process so that its CPU
//! is counted apart from vca-sip's (`sip-fixtures/sipp/stream_load.sh` runs them):
//!
//! ```text
//!   stream_load agent   --streams N ...   WebSocket server speaking Twilio Media Streams
//!   stream_load carrier --calls N ...     SIP UAC + RTP for N calls; prints the summary
//!
//!   carrier ──SIP/RTP──> vca-sip ──WebSocket──> agent
//!   carrier <──RTP────── vca-sip <──media, mark, clear── agent
//! ```
//!
//! The agent writes its report (JSON) when its streams have ended; the carrier waits for
//! it, joins the agent's clear times to the silences it heard, and prints the figures.

mod agent;
mod carrier;
mod procstat;
mod summary;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Load generators for vca-sip's agent streams")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The agent simulator: serves N streams, then writes its report.
    Agent {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
        /// Written with the port listened on, once listening.
        #[arg(long)]
        port_file: Option<PathBuf>,
        #[arg(long)]
        report: PathBuf,
        #[arg(long, default_value_t = 500)]
        streams: usize,
        /// Seconds from a stream's start to its clear sequence.
        #[arg(long, default_value_t = 20.0)]
        clear_after: f64,
        /// Longest run, seconds.
        #[arg(long, default_value_t = 600.0)]
        deadline: f64,
    },
    /// The carrier generator: places the calls, measures, prints the summary.
    Carrier {
        #[arg(long, default_value_t = 500)]
        calls: usize,
        /// Calls placed and hung up per second.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        #[arg(long, default_value = "127.0.0.1:5060")]
        server: SocketAddr,
        #[arg(long, default_value = "07000000000")]
        did: String,
        /// Seconds after every call is up before the measured window.
        #[arg(long, default_value_t = 5.0)]
        settle: f64,
        /// Seconds of the measured window.
        #[arg(long, default_value_t = 60.0)]
        steady: f64,
        #[arg(long)]
        server_pid: Option<u32>,
        #[arg(long)]
        agent_pid: Option<u32>,
        /// vca-sip's HTTP address, for /metrics.
        #[arg(long)]
        http: Option<String>,
        /// The agent's report, waited for after the calls end.
        #[arg(long)]
        agent_report: Option<PathBuf>,
        /// Where to write the summary and both reports as JSON.
        #[arg(long)]
        report: Option<PathBuf>,
        #[arg(long, default_value_t = 30.0)]
        answer_timeout: f64,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Agent {
            listen,
            port_file,
            report,
            streams,
            clear_after,
            deadline,
        } => {
            let listener = agent::bind(&listen)?;
            let port = listener.local_addr()?.port();
            if let Some(file) = port_file {
                std::fs::write(file, port.to_string())?;
            }
            eprintln!("stream_load agent: listening on {}", listener.local_addr()?);
            let config = agent::AgentConfig {
                streams,
                clear_after: Duration::from_secs_f64(clear_after),
                deadline: Duration::from_secs_f64(deadline),
            };
            let out = agent::run(listener, config)?;
            let tmp = report.with_extension("tmp");
            std::fs::write(&tmp, serde_json::to_vec(&out)?)?;
            std::fs::rename(&tmp, &report)?;
            eprintln!(
                "stream_load agent: {} streams, {} frames, {} lost chunks, marks {:?}, CPU {:.1} s",
                out.streams.len(),
                out.media_frames(),
                out.lost_chunks(),
                out.marks(),
                out.cpu_seconds
            );
        }
        Command::Carrier {
            calls,
            rate,
            server,
            did,
            settle,
            steady,
            server_pid,
            agent_pid,
            http,
            agent_report,
            report,
            answer_timeout,
        } => {
            let config = carrier::CarrierConfig {
                calls,
                rate,
                server,
                did,
                settle: Duration::from_secs_f64(settle),
                steady: Duration::from_secs_f64(steady),
                server_pid,
                agent_pid,
                http,
                answer_timeout: Duration::from_secs_f64(answer_timeout),
            };
            let out = carrier::run(&config)?;
            let agent = match &agent_report {
                Some(path) => Some(wait_for_report(path)?),
                None => None,
            };
            let summary = summary::summarize(&out, agent.as_ref());
            print!("{}", summary::render(&summary));
            if let Some(path) = report {
                let all = serde_json::json!({
                    "summary": summary,
                    "carrier": out,
                    "agent": agent,
                });
                std::fs::write(path, serde_json::to_vec_pretty(&all)?)?;
            }
        }
    }
    Ok(())
}

/// The agent's report, once it has written it (at most 30 s after the calls ended).
fn wait_for_report(path: &std::path::Path) -> anyhow::Result<agent::AgentReport> {
    for _ in 0..300 {
        if let Ok(bytes) = std::fs::read(path) {
            return Ok(serde_json::from_slice(&bytes)?);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    anyhow::bail!("the agent wrote no report to {}", path.display())
}
