//! Adaptive pacing: how fast and over how many connections to send to each lane, found from
//! the replies alone.
//!
//! # Layout
//! - [`controller`]: the lane controller — a pure state machine fed with every classified
//!   reply and a clock value; it decides the allowed connections and message rate, pauses and
//!   resumes, ramps (warm-up and recovery) and records an incident timeline.
//!
//! The delivery engine's lanes run it; `weir-sim` runs that engine against modelled receivers.

pub mod controller;

/// Milliseconds (virtual or wall clock) — the controller never reads a clock itself.
pub type Millis = u64;
