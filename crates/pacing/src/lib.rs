//! Adaptive pacing: how fast and over how many connections to send to each lane, found from
//! the replies alone.
//!
//! # Layout
//! - [`controller`]: the lane controller — a pure state machine fed with every classified
//!   reply and a clock value; it decides the allowed connections and message rate, pauses and
//!   resumes, ramps (warm-up and recovery) and records an incident timeline.
//! - [`sim`]: modelled providers with hidden limits and a reputation, the weir controller and
//!   two baselines (fixed rate, Postfix-like static concurrency) run in virtual time.

pub mod controller;
pub mod sim;

/// Milliseconds (virtual or wall clock) — the controller never reads a clock itself.
pub type Millis = u64;
