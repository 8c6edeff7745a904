//! The figures of a run, from the carrier's report and the agent's: vca-sip's CPU per frame,
//! the machine's busy share, the generators' CPU, lost frames, send lateness, clear-to-
//! silence and memory per call.

use std::collections::HashMap;
use std::fmt::Write;

use serde::Serialize;

use crate::agent::AgentReport;
use crate::carrier::CarrierReport;
use crate::procstat::{self, quantile};

#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub calls: usize,
    pub answered: usize,
    pub failed: usize,
    pub ended_by_server: usize,
    pub retransmissions: u64,
    pub window_s: f64,
    pub calls_in_window: usize,
    pub frames_to_agent: u64,
    pub frames_to_caller: u64,
    pub server_cpu_s: Option<f64>,
    pub server_us_per_frame: Option<f64>,
    pub server_us_per_call_slot: Option<f64>,
    pub server_core_share: Option<f64>,
    pub machine_busy_pct: Option<f64>,
    pub agent_cpu_s: Option<f64>,
    pub carrier_cpu_s: f64,
    /// Frames lost on the way to the caller (RTP sequence gaps) and to the agent (chunk gaps).
    pub lost_to_caller: i64,
    pub lost_to_agent: u64,
    pub timestamp_gaps_to_agent: u64,
    pub jitter_ms_mean: f64,
    pub jitter_ms_max: f64,
    pub lateness_samples: f64,
    pub lateness_p50_ms: Option<f64>,
    pub lateness_p99_ms: Option<f64>,
    pub clears: usize,
    pub clears_without_silence: usize,
    pub clear_to_silence_p50_ms: Option<f64>,
    pub clear_to_silence_p99_ms: Option<f64>,
    pub clear_to_silence_max_ms: Option<f64>,
    pub idle_rss_kb: Option<u64>,
    pub rss_kb: Option<u64>,
    pub rss_kb_per_call: Option<f64>,
    pub marks_sent: u64,
    pub marks_echoed: u64,
    pub agent_streams: usize,
    pub agent_cpu_total_s: f64,
    pub carrier_cpu_total_s: f64,
    pub errors: Vec<String>,
}

pub fn summarize(carrier: &CarrierReport, agent: Option<&AgentReport>) -> Summary {
    let mut s = Summary {
        calls: carrier.calls,
        answered: carrier.answered,
        failed: carrier.failed,
        ended_by_server: carrier.ended_by_server,
        retransmissions: carrier.retransmissions,
        carrier_cpu_total_s: carrier.cpu_seconds,
        idle_rss_kb: carrier.idle_rss_kb,
        errors: carrier.errors.clone(),
        ..Summary::default()
    };
    if let (Some(b), Some(a)) = (&carrier.before, &carrier.after) {
        s.window_s = a.at_s - b.at_s;
        s.calls_in_window = b.calls_up.min(a.calls_up);
        s.frames_to_agent = a.rtp_sent - b.rtp_sent;
        s.frames_to_caller = a.rtp_received - b.rtp_received;
        let frames = (s.frames_to_agent + s.frames_to_caller) as f64;
        s.server_cpu_s = a.server_cpu_s.zip(b.server_cpu_s).map(|(a, b)| a - b);
        if let Some(cpu) = s.server_cpu_s {
            s.server_us_per_frame = (frames > 0.0).then(|| cpu * 1e6 / frames);
            let slots = s.calls_in_window as f64 * s.window_s * 50.0;
            s.server_us_per_call_slot = (slots > 0.0).then(|| cpu * 1e6 / slots);
            s.server_core_share = (s.window_s > 0.0).then(|| cpu / s.window_s);
        }
        if let (Some((busy_a, total_a)), Some((busy_b, total_b))) = (a.machine, b.machine) {
            let total = total_a.saturating_sub(total_b);
            s.machine_busy_pct =
                (total > 0).then(|| busy_a.saturating_sub(busy_b) as f64 * 100.0 / total as f64);
        }
        s.agent_cpu_s = a.agent_cpu_s.zip(b.agent_cpu_s).map(|(a, b)| a - b);
        s.carrier_cpu_s = a.own_cpu_s - b.own_cpu_s;
        let lateness = a.lateness.since(&b.lateness);
        s.lateness_samples = lateness.count();
        s.lateness_p50_ms = lateness.quantile(0.5).map(|v| v * 1e3);
        s.lateness_p99_ms = lateness.quantile(0.99).map(|v| v * 1e3);
        // The larger of the window's start and end: the calls' memory may grow while they
        // run (queued audio, buffers), and the worst is the figure.
        s.rss_kb = b.server_rss_kb.max(a.server_rss_kb);
        if let (Some(rss), Some(idle)) = (s.rss_kb, carrier.idle_rss_kb)
            && s.calls_in_window > 0
        {
            s.rss_kb_per_call = Some((rss as f64 - idle as f64) / s.calls_in_window as f64);
        }
    }
    s.lost_to_caller = carrier.per_call.iter().map(|c| c.lost.max(0)).sum();
    let jitters: Vec<f64> = carrier
        .per_call
        .iter()
        .filter(|c| c.received > 1)
        .map(|c| c.jitter_ms)
        .collect();
    if !jitters.is_empty() {
        s.jitter_ms_mean = jitters.iter().sum::<f64>() / jitters.len() as f64;
        s.jitter_ms_max = jitters.iter().copied().fold(0.0, f64::max);
    }
    if let Some(agent) = agent {
        s.agent_streams = agent.streams.len();
        s.agent_cpu_total_s = agent.cpu_seconds;
        s.lost_to_agent = agent.lost_chunks();
        s.timestamp_gaps_to_agent = agent.timestamp_gaps();
        (s.marks_sent, s.marks_echoed) = agent.marks();
        let onsets: HashMap<&str, &[u64]> = carrier
            .per_call
            .iter()
            .map(|c| (c.from.as_str(), c.onsets_us.as_slice()))
            .collect();
        let mut delays = Vec::new();
        for stream in &agent.streams {
            let Some(clear) = stream.clear_us else {
                continue;
            };
            s.clears += 1;
            let first = onsets
                .get(stream.from.as_str())
                .and_then(|o| o.iter().find(|&&t| t >= clear));
            match first {
                Some(&t) => delays.push((t - clear) as f64 / 1e3),
                None => s.clears_without_silence += 1,
            }
        }
        s.clear_to_silence_p50_ms = quantile(&mut delays, 0.5);
        s.clear_to_silence_p99_ms = quantile(&mut delays, 0.99);
        s.clear_to_silence_max_ms = delays.last().copied();
    }
    s
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2} ms"))
}

/// The summary as the lines the load script prints.
pub fn render(s: &Summary) -> String {
    let mut o = String::new();
    let f = |v: Option<f64>, unit: &str| v.map_or("-".into(), |v| format!("{v:.1}{unit}"));
    let _ = writeln!(
        o,
        "calls {}  answered {}  failed {}  ended by vca-sip {}  SIP retransmissions {}",
        s.calls, s.answered, s.failed, s.ended_by_server, s.retransmissions
    );
    let _ = writeln!(
        o,
        "window {:.1} s with {} calls: {} frames to the agent, {} to the caller",
        s.window_s, s.calls_in_window, s.frames_to_agent, s.frames_to_caller
    );
    let _ = writeln!(
        o,
        "vca-sip CPU: {} s ({} of a core), {} per frame carried (either direction), {} per call per 20 ms slot (one frame each way)",
        f(s.server_cpu_s, ""),
        s.server_core_share
            .map_or("-".into(), |c| format!("{:.0}%", c * 100.0)),
        f(s.server_us_per_frame, " us"),
        f(s.server_us_per_call_slot, " us"),
    );
    let _ = writeln!(
        o,
        "machine busy {} ({} cores); generators' CPU in the window: agent {} s, carrier {:.1} s",
        f(s.machine_busy_pct, "%"),
        procstat::cores(),
        f(s.agent_cpu_s, ""),
        s.carrier_cpu_s
    );
    let _ = writeln!(
        o,
        "lost frames: to the caller {}, to the agent {} (timestamp gaps {}); jitter to the caller mean {:.2} ms, max {:.2} ms",
        s.lost_to_caller,
        s.lost_to_agent,
        s.timestamp_gaps_to_agent,
        s.jitter_ms_mean,
        s.jitter_ms_max
    );
    let _ = writeln!(
        o,
        "send lateness ({:.0} packets): p50 {}  p99 {}",
        s.lateness_samples,
        ms(s.lateness_p50_ms),
        ms(s.lateness_p99_ms)
    );
    let _ = writeln!(
        o,
        "clear-to-silence ({} clears, {} without silence seen): p50 {}  p99 {}  max {}",
        s.clears,
        s.clears_without_silence,
        ms(s.clear_to_silence_p50_ms),
        ms(s.clear_to_silence_p99_ms),
        ms(s.clear_to_silence_max_ms)
    );
    let _ = writeln!(
        o,
        "RSS: idle {} kB, with the calls {} kB (the larger of the window's start and end): {} per call",
        s.idle_rss_kb.map_or("-".into(), |v| v.to_string()),
        s.rss_kb.map_or("-".into(), |v| v.to_string()),
        f(s.rss_kb_per_call, " kB"),
    );
    let _ = writeln!(
        o,
        "marks: sent {}, echoed {}; agent streams {}; whole-run CPU: agent {:.1} s, carrier {:.1} s",
        s.marks_sent, s.marks_echoed, s.agent_streams, s.agent_cpu_total_s, s.carrier_cpu_total_s
    );
    for e in &s.errors {
        let _ = writeln!(o, "error: {e}");
    }
    o
}
