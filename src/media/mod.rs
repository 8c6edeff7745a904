//! Media: RTP/RTCP packets (RFC 3550), symmetric RTP latching (RFC 4961), the RTP port pool
//! (RFC 3264 §5.1 ports) and the echo leg that an answered call runs until a bridge exists.
//!
//! `rtp` and `latch` do no IO and are driven packet by packet; `ports` and `echo` are the
//! tokio edge. A call allocates an [`ports::RtpPorts`] pair from the node's
//! [`ports::PortPool`] before answering (an empty pool is a 503), puts
//! [`ports::RtpPorts::rtp_port`] in its SDP answer, and hands the pair to
//! [`echo::spawn`] once answered.

pub mod echo;
pub mod latch;
pub mod ports;
pub mod rtp;
