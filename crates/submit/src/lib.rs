//! The submission pipeline: everything between "who is asking" and "it is on disk".
//!
//! # Layout
//! - [`catalog`]: the in-memory mirror of accounts, region settings, identities and the
//!   suppression list (loaded from the store at start, written through on every change).
//! - [`Service`]: admin operations, identity and suppression operations, and
//!   [`Service::submit`]: sandbox and identity checks → quota admission → durable spool.
//!
//! Both front doors (the SES HTTP APIs and, later, SMTP) call the same [`Service`].

pub mod catalog;
pub mod render_pool;
pub mod reputation;
mod service;
pub mod template;

pub use service::*;

/// Lower-case region names are what AWS uses; SES error texts upper-case them.
pub fn region_upper(region: &str) -> String {
    region.to_ascii_uppercase()
}
