//! The service as the delivery engine's port to the accounts it sends for: each operation is
//! the service's own, forwarded.

use std::sync::Arc;
use std::time::Duration;

use weir_model::{BoxFuture, DeliveryOptions, Senders, Signer};

use super::Service;

impl Senders for Service {
    fn now_ms(&self) -> i64 {
        Service::now_ms(self)
    }

    fn account_name(&self, account_id: i64) -> Option<String> {
        self.account_by_id(account_id).map(|a| a.name.clone())
    }

    fn delivery_options(&self, account_id: i64, region: &str, configuration_set: Option<&str>) -> DeliveryOptions {
        Service::delivery_options(self, account_id, region, configuration_set)
    }

    fn suppressed_reasons(&self, account_id: i64, region: &str) -> Vec<String> {
        self.region_settings(account_id, region).suppressed_reasons
    }

    fn dkim_in_use(&self) -> bool {
        Service::dkim_in_use(self)
    }

    fn dkim_signer(&self, account_id: i64, region: &str, from_domain: &str) -> Option<Arc<Signer>> {
        Service::dkim_signer(self, account_id, region, from_domain)
    }

    fn return_path_domain(&self, account_id: i64, region: &str, mail_from: &str) -> Option<String> {
        Service::return_path_domain(self, account_id, region, mail_from)
    }

    fn return_path_for(
        &self,
        account_id: i64,
        region: &str,
        mail_from: &str,
        message_id: &str,
        idx: i64,
    ) -> Option<String> {
        Service::return_path_for(self, account_id, region, mail_from, message_id, idx)
    }

    fn event_topics_for(&self, account: &str, region: &str, set: &str, event_type: &str) -> Vec<String> {
        Service::event_topics_for(self, account, region, set, event_type)
    }

    fn shared_lane_wait<'a>(&'a self, lane: &'a str, per_minute: u32) -> BoxFuture<'a, Duration> {
        Box::pin(Service::shared_lane_wait(self, lane, per_minute))
    }

    fn suppress_after_bounce<'a>(
        &'a self,
        account_id: i64,
        region: &'a str,
        address: &'a str,
        message_id: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.put_suppressed(account_id, region, address, "BOUNCE", Some(message_id.to_string()))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}
