//! weir's domain vocabulary shared across floors, and the ports between them.
//!
//! - [`DeliveryOptions`]: what a configuration set asks of delivery.
//! - [`Senders`]: what the delivery engine needs to know of the accounts it sends for (their
//!   names, options, signing keys, return paths, event destinations, the cluster's shared lane
//!   waits) and what it tells them back (an address to suppress). The submission service
//!   implements it; the binary wires it to the engine. Delivery never depends on the service
//!   itself.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub use weir_mail::dkim::Signer;
pub use weir_store::model::SuppressionReason;

/// What a configuration set asks of delivery (the defaults: none of it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryOptions {
    /// TLS policy `REQUIRE`: never delivered in clear text.
    pub require_tls: bool,
    /// `MaxDeliverySeconds`: the retry window, when shorter than the engine's.
    pub max_delivery_ms: Option<i64>,
    /// Suppression options: the reasons that add addresses to the account's suppression list,
    /// instead of the account's own setting.
    pub suppressed_reasons: Option<Vec<SuppressionReason>>,
}

/// A boxed future, for the port's asynchronous operations.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The delivery engine's port to the accounts it sends for.
pub trait Senders: Send + Sync + 'static {
    /// The time, Unix milliseconds (the service's clock: a simulation's virtual one).
    fn now_ms(&self) -> i64;
    /// An account's name.
    fn account_name(&self, account_id: i64) -> Option<String>;
    /// The options of a message's configuration set.
    fn delivery_options(&self, account_id: i64, region: &str, configuration_set: Option<&str>) -> DeliveryOptions;
    /// The reasons that add addresses to the account's suppression list in `region`.
    fn suppressed_reasons(&self, account_id: i64, region: &str) -> Vec<SuppressionReason>;
    /// Whether any identity signs with DKIM (else no message needs looking at).
    fn dkim_in_use(&self) -> bool;
    /// The signer of mail from `from_domain`, if its identity signs.
    fn dkim_signer(&self, account_id: i64, region: &str, from_domain: &str) -> Option<Arc<Signer>>;
    /// The return-path domain of mail from `mail_from`, if one is configured.
    fn return_path_domain(&self, account_id: i64, region: &str, mail_from: &str) -> Option<String>;
    /// The envelope sender naming recipient `idx` of `message_id`, if return paths are
    /// configured for `mail_from`.
    fn return_path_for(
        &self,
        account_id: i64,
        region: &str,
        mail_from: &str,
        message_id: &str,
        idx: i64,
    ) -> Option<String>;
    /// The topics of the enabled event destinations of a configuration set that take
    /// `event_type`.
    fn event_topics_for(&self, account: &str, region: &str, set: &str, event_type: &str) -> Vec<String>;
    /// How long to wait before the next message of `lane` (whose cluster-wide limit is
    /// `per_minute`); no wait outside a cluster.
    fn shared_lane_wait<'a>(&'a self, lane: &'a str, per_minute: u32) -> BoxFuture<'a, Duration>;
    /// Put `address` on the account's suppression list after its message bounced.
    fn suppress_after_bounce<'a>(
        &'a self,
        account_id: i64,
        region: &'a str,
        address: &'a str,
        message_id: &'a str,
    ) -> BoxFuture<'a, Result<(), String>>;
}
