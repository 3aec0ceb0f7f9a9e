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
//! - [`engine`]: the scheduler: picks due recipients, hands them to lanes, applies what the
//!   classifier (`weir-classify`) decides for each reply.

pub mod client;
pub mod engine;
pub mod lane;
pub mod route;
pub mod simulator;
pub mod webhooks;

pub use engine::{DeliveryConfig, Engine};
