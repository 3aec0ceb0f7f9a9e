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

/// The regions weir answers for unless the operator lists others: AWS's regions (SES's and the
/// rest, so that a client configured for any real region works). A request signed for any other
/// region is refused, so made-up names cannot multiply an account's quotas and sandboxes.
pub const DEFAULT_REGIONS: &[&str] = &[
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-south-1",
    "ap-south-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "eu-central-1",
    "eu-central-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "il-central-1",
    "me-south-1",
    "me-central-1",
    "mx-central-1",
    "sa-east-1",
    "us-gov-east-1",
    "us-gov-west-1",
];
