//! The delivery engine's port to the accounts it sends for: each operation is one of the
//! service's parts, forwarded.

use std::sync::Arc;
use std::time::Duration;

use weir_model::{BoxFuture, DeliveryOptions, Senders, Signer, SuppressionReason};

use super::core::Core;
use super::directory::Directory;
use super::dkim::DkimKeys;
use super::mail_from::MailFromDomains;
use super::quota_gate::QuotaGate;
use super::resources::Resources;

/// The delivery engine's port to the accounts it sends for.
pub struct DeliveryPort {
    pub(super) core: Arc<Core>,
    pub(super) directory: Arc<Directory>,
    pub(super) quotas: Arc<QuotaGate>,
    pub(super) resources: Arc<Resources>,
    pub(super) dkim: Arc<DkimKeys>,
    pub(super) mail_from: Arc<MailFromDomains>,
}

impl Senders for DeliveryPort {
    fn now_ms(&self) -> i64 {
        self.core.now_ms()
    }

    fn account_name(&self, account_id: i64) -> Option<String> {
        self.directory.account_by_id(account_id).map(|a| a.name.clone())
    }

    fn delivery_options(&self, account_id: i64, region: &str, configuration_set: Option<&str>) -> DeliveryOptions {
        self.resources.delivery_options(account_id, region, configuration_set)
    }

    fn suppressed_reasons(&self, account_id: i64, region: &str) -> Vec<SuppressionReason> {
        self.directory.region_settings(account_id, region).suppressed_reasons
    }

    fn dkim_in_use(&self) -> bool {
        self.dkim.dkim_in_use()
    }

    fn dkim_signer(&self, account_id: i64, region: &str, from_domain: &str) -> Option<Arc<Signer>> {
        self.dkim.dkim_signer(account_id, region, from_domain)
    }

    fn return_path_domain(&self, account_id: i64, region: &str, mail_from: &str) -> Option<String> {
        self.mail_from.return_path_domain(account_id, region, mail_from)
    }

    fn return_path_for(
        &self,
        account_id: i64,
        region: &str,
        mail_from: &str,
        message_id: &str,
        idx: i64,
    ) -> Option<String> {
        self.mail_from.return_path_for(account_id, region, mail_from, message_id, idx)
    }

    fn event_topics_for(&self, account: &str, region: &str, set: &str, event_type: &str) -> Vec<String> {
        self.resources.event_topics_for(account, region, set, event_type)
    }

    fn shared_lane_wait<'a>(&'a self, lane: &'a str, per_minute: u32) -> BoxFuture<'a, Duration> {
        Box::pin(self.quotas.shared_lane_wait(lane, per_minute))
    }

    fn suppress_after_bounce<'a>(
        &'a self,
        account_id: i64,
        region: &'a str,
        address: &'a str,
        message_id: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.directory
                .put_suppressed(account_id, region, address, SuppressionReason::Bounce, Some(message_id.to_string()))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}
