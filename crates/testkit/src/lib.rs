//! Test support shared by weir's test suites and fuzz targets.
//!
//! - `client` (default): an SES client whose requests are signed by the official `aws-sigv4`
//!   signer (an implementation we did not write), so that a signature weir accepts is one AWS's
//!   own code made.
//! - `service`: a submission service over a real store, and an account that may send.

#[cfg(feature = "client")]
mod client;
#[cfg(feature = "client")]
pub use client::*;

#[cfg(feature = "service")]
pub mod service;
