//! Modelled receiving servers, for the simulator and the real-time tests alike.
//!
//! - [`model`]: one provider's hidden limits and state (rate, connections, reputation,
//!   escalation when pushed, warm-up of a new source, per-recipient limits) and the reply it
//!   gives to each step of a session, in the words and at the stage the real provider uses.
//! - [`server`]: that model served as SMTP over any byte stream (an in-memory pipe in virtual
//!   time, or loopback TCP in real time), replies after a modelled round-trip delay.
//! - [`scripted`]: a receiver answering each command from a test's script (refuse, close or
//!   stall at any stage).

pub mod model;
pub mod scripted;
pub mod server;

pub use model::{Model, Spec, Style};
pub use server::{Receiver, serve};
