//! Delivery: from the spool to the recipients' mail servers.
//!
//! # Layout
//! - [`client`]: a thin SMTP client (EHLO, opportunistic STARTTLS, PIPELINING, one reply per
//!   recipient, RSET for connection reuse).
//! - [`route`]: where a domain's mail goes — static routes and a smarthost from config, or MX
//!   records (RFC 5321 §5) through the [`route::Resolver`] trait (hickory in production).
//! - [`lane`]: per (provider or MX group) limits: connections, messages per minute, messages per
//!   connection, recipients per transaction.
//! - [`simulator`]: the SES mailbox simulator, without the network.
//! - [`webhooks`]: events POSTed to configured URLs, retried, never blocking delivery.
//! - [`engine`]: the engine's state and entry points; its rooms are `scheduler` (due
//!   recipients out of the spool, into lanes, connection tasks started within each lane's
//!   allowance), `connection` (one SMTP session at a time, obeying the lane) and `outcome`
//!   (what the classifier, `weir-classify`, decides for each reply, recorded durably, then
//!   events and suppression). Receivers are reached through [`client::Connector`]: TCP, or the
//!   simulator's in-memory pipes.

pub mod client;
mod connection;
pub mod engine;
pub mod lane;
pub mod mailbox;
mod outcome;
pub mod route;
mod scheduler;
pub mod simulator;
pub mod webhooks;

pub use engine::{DeliveryConfig, Engine};
