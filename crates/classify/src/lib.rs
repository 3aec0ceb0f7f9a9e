//! Delivery policy with no I/O: who is limiting us, what a reply means, when to try again.
//!
//! # Layout
//! - [`provider`]: mailbox providers recognised from MX host names.
//! - [`reply`]: an SMTP reply (code, enhanced code, text) parsed once.
//! - [`classify`]: the data-driven rule table mapping a reply to a [`classify::Category`] and the
//!   [`classify::Action`] the delivery engine takes.
//! - [`backoff`]: the retry schedule (15, 30, 60 min … with jitter, inside a retry window).

pub mod backoff;
pub mod classify;
pub mod provider;
pub mod reply;
