//! The media runtime: the node's media shards (one event loop per core, see
//! [`super::shard`]), the RTP port pool they share (RFC 3264 §5.1 ports), and the way a
//! call starts a session on one of them.
//!
//! A call allocates its ports first ([`MediaRuntime::allocate`]), because the port goes in
//! the SDP answer before the call is answered; the pool picks the shard then (the least
//! loaded one that has a pair) and the pair's sockets are registered with that shard's loop.
//! Once answered, [`MediaRuntime::start`] hands the ports to that shard, which runs the
//! session to its end and reports it through the returned [`MediaSession`].
//!
//! [`MediaRuntime::shutdown`] stops every shard (sessions still up end with
//! [`super::session::MediaEnd::Shutdown`]); dropping the last handle does too.

use std::io;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use mio::Poll;
use tokio::sync::{mpsc, oneshot};

use super::agent::{AgentNotice, AgentStart};
use super::ports::{PortError, PortPool, RtpPorts};
use super::session::{MediaConfig, MediaError, MediaReport, MediaSession};
use super::shard::{Command, Shard, ShardLink};

/// Notices a stream session's channel holds: a call reads them as they come, and a burst of
/// digits or clears is the most there can be at once.
pub const NOTICE_QUEUE: usize = 32;

/// Commands a shard's queue holds per port pair of the pool: more than a pair can have in
/// flight (its call's start and hangup, and a late hangup of its previous call).
const QUEUE_PER_PAIR: usize = 4;

/// The node's media shards and port pool. Cloning shares them.
#[derive(Debug, Clone)]
pub struct MediaRuntime {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: PortPool,
    links: Vec<Arc<ShardLink>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for link in &self.links {
            link.stop();
        }
    }
}

/// Puts the calling media thread under `SCHED_FIFO` at `priority`, or says why not.
fn run_in_real_time(shard: usize, priority: u8) {
    use thread_priority::{
        RealtimeThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
        set_thread_priority_and_policy, thread_native_id,
    };
    let set = ThreadPriority::try_from(priority)
        .map_err(|e| e.to_owned())
        .and_then(|priority| {
            set_thread_priority_and_policy(
                thread_native_id(),
                priority,
                ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo),
            )
            .map_err(|e| e.to_string())
        });
    match set {
        Ok(()) => tracing::info!(shard, priority, "media shard runs under SCHED_FIFO"),
        Err(error) => tracing::warn!(
            shard,
            priority,
            %error,
            "media shard stays on normal scheduling (SCHED_FIFO needs root or CAP_SYS_NICE)"
        ),
    }
}

/// One shard per core the process may use, and at least one.
pub fn default_shards() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

impl MediaRuntime {
    /// Starts `shards` media threads (at least one) and a pool of the RTP pairs of `range`
    /// on `ip` shared by them, on normal scheduling.
    pub fn spawn(ip: IpAddr, range: RangeInclusive<u16>, shards: usize) -> io::Result<Self> {
        Self::spawn_with_priority(ip, range, shards, None)
    }

    /// [`MediaRuntime::spawn`], the threads under the real-time FIFO scheduler at
    /// `realtime` (1-99) when it is set and the process may: otherwise each thread warns
    /// and stays on normal scheduling.
    pub fn spawn_with_priority(
        ip: IpAddr,
        range: RangeInclusive<u16>,
        shards: usize,
        realtime: Option<u8>,
    ) -> io::Result<Self> {
        let polls = (0..shards.max(1))
            .map(|_| Poll::new())
            .collect::<io::Result<Vec<Poll>>>()?;
        let registries = polls
            .iter()
            .map(|p| p.registry().try_clone())
            .collect::<io::Result<Vec<_>>>()?;
        let pool = PortPool::new(ip, range, registries, crate::clock::monotonic());
        let queue = pool.capacity().saturating_mul(QUEUE_PER_PAIR).max(64);
        let mut links: Vec<Arc<ShardLink>> = Vec::with_capacity(polls.len());
        let mut threads = Vec::with_capacity(polls.len());
        for (index, poll) in polls.into_iter().enumerate() {
            let (shard, link) = Shard::new(index, poll, pool.clone(), queue)?;
            let thread = std::thread::Builder::new()
                .name(format!("vca-media-{index}"))
                .spawn(move || {
                    if let Some(priority) = realtime {
                        run_in_real_time(index, priority);
                    }
                    shard.run()
                });
            match thread {
                Ok(thread) => threads.push(thread),
                Err(e) => {
                    link.stop();
                    for link in &links {
                        link.stop();
                    }
                    return Err(e);
                }
            }
            links.push(link);
        }
        Ok(MediaRuntime {
            inner: Arc::new(Inner {
                pool,
                links,
                threads: Mutex::new(threads),
            }),
        })
    }

    /// How many shards run.
    pub fn shards(&self) -> usize {
        self.inner.links.len()
    }

    /// The RTP port pool of the shards.
    pub fn pool(&self) -> &PortPool {
        &self.inner.pool
    }

    /// Takes an RTP/RTCP pair for a new call, on the shard that will run its media.
    pub fn allocate(&self) -> Result<RtpPorts, PortError> {
        self.inner.pool.allocate()
    }

    /// Starts the media of an answered call on the shard of its ports. A full queue or a
    /// stopped runtime is an error at once (the ports then go back to the pool).
    pub fn start(&self, ports: RtpPorts, config: MediaConfig) -> Result<MediaSession, MediaError> {
        self.launch(ports, |ports, report| Command::Start {
            ports,
            config,
            report,
        })
    }

    /// Starts a session bridging the carrier's RTP leg to an agent stream, on the shard of
    /// its ports. It starts at once, before the call is answered: the agent's WebSocket is
    /// opened (within `agent.connect_timeout`), and until the agent is connected and sends
    /// audio the caller gets 20 ms silence frames, so that it also serves as a 183's early
    /// media. The receiver gets the session's [`AgentNotice`]s; a connect that fails is
    /// [`AgentNotice::Unreachable`] and then the end
    /// [`super::session::MediaEnd::AgentUnreachable`]. A full queue or a stopped runtime is
    /// an error at once (the ports then go back to the pool).
    pub fn start_stream(
        &self,
        ports: RtpPorts,
        config: MediaConfig,
        agent: AgentStart,
    ) -> Result<(MediaSession, mpsc::Receiver<AgentNotice>), MediaError> {
        let (notices, notices_rx) = mpsc::channel(NOTICE_QUEUE);
        let session = self.launch(ports, |ports, report| Command::StartStream {
            ports,
            config,
            agent: Box::new(agent),
            notices,
            report,
        })?;
        Ok((session, notices_rx))
    }

    /// Starts a browser's call answered by the echo: the WebRTC `leg` (made for the RTP port
    /// of `ports` by [`super::webrtc::WebRtcLeg::answer`]) on the shard of its ports.
    pub fn start_webrtc(
        &self,
        ports: RtpPorts,
        leg: super::webrtc::WebRtcLeg,
    ) -> Result<MediaSession, MediaError> {
        self.launch(ports, |ports, report| Command::StartWebRtc {
            ports,
            leg: Box::new(leg),
            report,
        })
    }

    /// Starts a browser's call streamed to an agent: the WebRTC `leg` bridged to the agent's
    /// stream as [`MediaRuntime::start_stream`] does for a carrier's RTP.
    pub fn start_webrtc_stream(
        &self,
        ports: RtpPorts,
        leg: super::webrtc::WebRtcLeg,
        config: MediaConfig,
        agent: AgentStart,
    ) -> Result<(MediaSession, mpsc::Receiver<AgentNotice>), MediaError> {
        let (notices, notices_rx) = mpsc::channel(NOTICE_QUEUE);
        let session = self.launch(ports, |ports, report| Command::StartWebRtcStream {
            ports,
            leg: Box::new(leg),
            config,
            agent: Box::new(agent),
            notices,
            report,
        })?;
        Ok((session, notices_rx))
    }

    /// Sends the start `command` made for `ports` to their shard and hands back the
    /// session's handle.
    fn launch(
        &self,
        ports: RtpPorts,
        command: impl FnOnce(RtpPorts, oneshot::Sender<MediaReport>) -> Command,
    ) -> Result<MediaSession, MediaError> {
        let link = self
            .inner
            .links
            .get(ports.shard())
            .ok_or(MediaError::Stopped)?;
        let (port, lease) = (ports.rtp_port(), ports.lease());
        let (tx, rx) = oneshot::channel();
        link.send(command(ports, tx))?;
        Ok(MediaSession::new(Arc::clone(link), port, lease, rx))
    }

    /// Tells every shard to end its sessions and stop; returns at once.
    pub fn shutdown(&self) {
        for link in &self.inner.links {
            link.stop();
        }
    }

    /// Waits until every shard thread has returned (after [`MediaRuntime::shutdown`]).
    pub fn join(&self) {
        let threads = std::mem::take(
            &mut *self
                .inner
                .threads
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for thread in threads {
            if thread.join().is_err() {
                tracing::error!("a media shard panicked");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rtp::{Pt, RtpHeader, RtpPacket, Ssrc, build};
    use crate::media::session::{MediaEnd, MediaReport};
    use std::net::{Ipv4Addr, SocketAddr};
    use std::time::{Duration, Instant};
    use tokio::net::UdpSocket;

    const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn packet(seq: u16, ssrc: u32, payload: &[u8]) -> Vec<u8> {
        let h = RtpHeader {
            marker: seq == 0,
            payload_type: Pt::PCMU,
            sequence_number: seq,
            timestamp: 8000 + u32::from(seq) * 160,
            ssrc: Ssrc(ssrc),
        };
        let mut out = vec![0u8; 1500];
        let n = build(&h, payload, &mut out).unwrap();
        out.truncate(n);
        out
    }

    fn config(remote: SocketAddr, media_timeout: Duration) -> MediaConfig {
        MediaConfig {
            remote,
            audio_pt: Pt::PCMU,
            event_pt: Pt::new(101),
            media_timeout,
        }
    }

    async fn ended(session: &mut MediaSession) -> MediaReport {
        tokio::time::timeout(Duration::from_secs(10), session.ended())
            .await
            .expect("the session ended")
    }

    /// The scheduling policy and real-time priority of each of this process's threads named
    /// `name` (other tests run media threads of the same names), from `/proc` (fields 41 and
    /// 40 of their `stat`).
    fn thread_scheduling(name: &str) -> Vec<(u32, u32)> {
        let mut found = Vec::new();
        for task in std::fs::read_dir("/proc/self/task")
            .into_iter()
            .flatten()
            .flatten()
        {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                continue;
            };
            // Fields after the command's closing parenthesis start at the third.
            let Some((_, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u32>().ok());
            if comm.trim() == name
                && let (Some(policy), Some(priority)) = (field(41), field(40))
            {
                found.push((policy, priority));
            }
        }
        found
    }

    #[test]
    fn media_threads_run_under_sched_fifo_when_asked_and_allowed() {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let root = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|uids| uids.split_whitespace().nth(1))
            == Some("0");
        let media = MediaRuntime::spawn_with_priority(LOOPBACK, 31460..=31461, 1, Some(7)).unwrap();
        // The thread sets its own policy as it starts. SCHED_FIFO is policy 1.
        let fifo = |seen: &[(u32, u32)]| seen.contains(&(1, 7));
        let mut seen = thread_scheduling("vca-media-0");
        for _ in 0..200 {
            if fifo(&seen) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
            seen = thread_scheduling("vca-media-0");
        }
        // Without the privilege every media thread stays on SCHED_OTHER.
        assert_eq!(fifo(&seen), root, "root: {root}, threads: {seen:?}");
        media.shutdown();
        media.join();
    }

    #[tokio::test]
    async fn echoes_fifty_packets_as_its_own_stream_to_the_latched_source_only() {
        let media = MediaRuntime::spawn(LOOPBACK, 31200..=31203, 2).unwrap();
        assert_eq!(media.shards(), 2);
        let caller = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
        let stranger = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
        let ports = media.allocate().unwrap();
        let echo = SocketAddr::new(LOOPBACK, ports.rtp_port());
        // The offer names the caller's IP with another port, as behind a NAT.
        let offered = SocketAddr::new(LOOPBACK, 9);
        let mut session = media
            .start(ports, config(offered, Duration::from_secs(30)))
            .unwrap();

        let mut buf = [0u8; 1500];
        let mut echoed = Vec::new();
        for seq in 0..50u16 {
            let payload = [seq as u8; 160];
            caller
                .send_to(&packet(seq, 0x1234, &payload), echo)
                .await
                .unwrap();
            if seq == 10 || seq == 20 {
                stranger
                    .send_to(&packet(seq, 0x1234, &payload), echo)
                    .await
                    .unwrap();
            }
            let (n, from) = caller.recv_from(&mut buf).await.unwrap();
            assert_eq!(from, echo);
            let p = RtpPacket::parse(&buf[..n]).unwrap();
            assert_eq!(p.payload(), &payload);
            assert_eq!(p.header.payload_type, Pt::PCMU);
            echoed.push(p.header);
        }
        let ssrc = echoed[0].ssrc;
        assert_ne!(ssrc, Ssrc(0x1234));
        for (i, h) in echoed.iter().enumerate() {
            assert_eq!(h.ssrc, ssrc);
            assert_eq!(
                h.sequence_number,
                echoed[0].sequence_number.wrapping_add(i as u16)
            );
            assert_eq!(
                h.timestamp,
                echoed[0].timestamp.wrapping_add(160 * i as u32)
            );
        }

        session.hangup().unwrap();
        let report = ended(&mut session).await;
        assert_eq!(report.end, MediaEnd::Hangup);
        assert_eq!(report.latched, Some(caller.local_addr().unwrap()));
        assert_eq!(report.stats.packets_in, 50);
        assert_eq!(report.stats.packets_out, 50);
        assert_eq!(report.stats.latch.dropped_not_latched_source, 2);
        assert_eq!(report.stats.latch.dropped_total(), 2);
        assert_eq!(report.stats.send_errors, 0);
        let mut nothing = [0u8; 16];
        assert!(stranger.try_recv_from(&mut nothing).is_err());
        // The same report again, and a second hangup is a no-op.
        assert_eq!(session.ended().await, report);
        session.hangup().unwrap();
        media.shutdown();
        media.join();
    }

    #[tokio::test]
    async fn drops_non_negotiated_and_malformed_and_discards_rtcp() {
        let media = MediaRuntime::spawn(LOOPBACK, 31210..=31211, 1).unwrap();
        let caller = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
        let ports = media.allocate().unwrap();
        let echo = SocketAddr::new(LOOPBACK, ports.rtp_port());
        let rtcp_port = SocketAddr::new(LOOPBACK, ports.rtp_port() + 1);
        let offered = caller.local_addr().unwrap();
        let mut session = media.start(ports, config(offered, Duration::ZERO)).unwrap();

        let mut pcma = packet(0, 1, b"x");
        pcma[1] = 8;
        caller.send_to(&pcma, echo).await.unwrap();
        caller
            .send_to(&[0x8f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0], echo)
            .await
            .unwrap();
        caller
            .send_to(&[0x80, 201, 0, 1, 0, 0, 0, 1], echo)
            .await
            .unwrap();
        caller
            .send_to(&[0x80, 201, 0, 1, 0, 0, 0, 1], rtcp_port)
            .await
            .unwrap();
        // A telephone-event is echoed like audio.
        let mut dtmf = packet(1, 1, &[5, 0x8a, 0, 160]);
        dtmf[1] = 101;
        caller.send_to(&dtmf, echo).await.unwrap();
        let mut buf = [0u8; 64];
        let (n, _) = caller.recv_from(&mut buf).await.unwrap();
        let p = RtpPacket::parse(&buf[..n]).unwrap();
        assert_eq!(p.header.payload_type, Pt::new(101).unwrap());
        assert_eq!(p.payload(), &[5, 0x8a, 0, 160]);

        // Loopback delivered the RTCP before the echo was sent: the shard saw it readable in
        // the same wake-up or an earlier one, and reads before it runs the hangup.
        drop(session.hangup());
        let report = ended(&mut session).await;
        assert_eq!(report.end, MediaEnd::Hangup);
        assert_eq!(report.stats.latch.dropped_not_negotiated, 1);
        assert_eq!(report.stats.latch.dropped_malformed, 1);
        assert_eq!(report.stats.packets_in, 1);
        assert_eq!(report.stats.packets_out, 1);
        assert_eq!(report.stats.rtcp_in, 2);
        assert_eq!(report.stats.latch.rtcp, 1);
    }

    #[tokio::test]
    #[allow(clippy::disallowed_methods)] // measures the real shard thread's timeout in real time
    async fn media_timeout_ends_the_session_when_no_rtp_arrives() {
        let media = MediaRuntime::spawn(LOOPBACK, 31230..=31231, 1).unwrap();
        let ports = media.allocate().unwrap();
        let started = Instant::now();
        let offered = SocketAddr::new(LOOPBACK, 9);
        let timeout = Duration::from_millis(200);
        let mut session = media.start(ports, config(offered, timeout)).unwrap();
        let report = ended(&mut session).await;
        assert_eq!(report.end, MediaEnd::MediaTimeout);
        assert!(started.elapsed() >= timeout, "{:?}", started.elapsed());
        assert_eq!(report.latched, None);
        // The ports went back to the pool with the session.
        assert_eq!(media.pool().available(), 1);
        assert_eq!(media.pool().held(0), 0);
    }

    #[tokio::test]
    async fn a_dropped_handle_hangs_up_and_shutdown_ends_the_rest() {
        let media = MediaRuntime::spawn(LOOPBACK, 31240..=31243, 1).unwrap();
        let offered = SocketAddr::new(LOOPBACK, 9);
        let dropped = media
            .start(media.allocate().unwrap(), config(offered, Duration::ZERO))
            .unwrap();
        let mut kept = media
            .start(media.allocate().unwrap(), config(offered, Duration::ZERO))
            .unwrap();
        drop(dropped);
        let freed = async {
            while media.pool().available() != 1 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), freed).await;
        assert_eq!(media.pool().available(), 1);

        media.shutdown();
        assert_eq!(ended(&mut kept).await.end, MediaEnd::Shutdown);
        media.join();
        assert_eq!(media.pool().available(), 2);
        let late = media.start(media.allocate().unwrap(), config(offered, Duration::ZERO));
        assert!(matches!(late, Err(MediaError::Stopped)), "{late:?}");
    }
}
