//! Settings that parse but cannot work are refused at start, each with what to change.

use super::{Config, parse_mx};

impl Config {
    /// Reject settings that cannot work.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.check_limits()?;
        self.check_http()?;
        self.check_regions()?;
        self.check_events()?;
        self.check_feedback()?;
        self.check_delivery()?;
        self.check_smtp()
    }

    /// Quotas, the spool and the reputation thresholds.
    fn check_limits(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.defaults.max_24h >= -1, "defaults.max_24h must be -1 or at least 0");
        anyhow::ensure!(
            self.defaults.max_rate == -1.0 || self.defaults.max_rate > 0.0,
            "defaults.max_rate must be -1 or positive"
        );
        anyhow::ensure!(self.spool.max_batch > 0, "spool.max_batch must be at least 1");
        let r = &self.reputation;
        for (name, review, pause) in
            [("bounce", r.bounce_review, r.bounce_pause), ("complaint", r.complaint_review, r.complaint_pause)]
        {
            anyhow::ensure!(
                0.0 < review && review <= pause && pause <= 1.0,
                "reputation.{name}_review and {name}_pause must be rates with 0 < review <= pause <= 1"
            );
        }
        Ok(())
    }

    fn check_http(&self) -> anyhow::Result<()> {
        let h = &self.http;
        anyhow::ensure!(
            h.max_connections > 0 && h.max_connections_per_ip > 0,
            "http.max_connections[_per_ip] must be at least 1"
        );
        anyhow::ensure!(
            h.header_timeout_seconds > 0 && h.body_timeout_seconds > 0 && h.stall_timeout_seconds > 0,
            "http.header_timeout_seconds, body_timeout_seconds and stall_timeout_seconds must be at least 1"
        );
        anyhow::ensure!(
            h.max_inflight_body_bytes >= h.max_body_bytes,
            "http.max_inflight_body_bytes must be at least http.max_body_bytes"
        );
        anyhow::ensure!(
            ["LimitExceededException", "TooManyRequestsException", "ThrottlingException"]
                .contains(&h.v2_daily_quota_error.as_str()),
            "http.v2_daily_quota_error must be LimitExceededException, TooManyRequestsException or ThrottlingException"
        );
        Ok(())
    }

    /// The regions, and the cluster that shares them.
    fn check_regions(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.cluster.redis.is_none() || self.cluster.key_file.is_some(),
            "cluster.redis needs cluster.key_file: the cluster key every node shares (make one with `weir cluster keygen`)"
        );
        anyhow::ensure!(!self.regions.is_empty(), "regions: name at least one region");
        for r in &self.regions {
            anyhow::ensure!(weir_api::auth::is_region(r), "regions: '{r}' is not a region name such as us-east-1");
        }
        anyhow::ensure!(
            self.regions.contains(&self.smtp.region),
            "smtp.region '{}' is not one of the regions weir answers for (regions)",
            self.smtp.region
        );
        Ok(())
    }

    /// SNS-style topics.
    fn check_events(&self) -> anyhow::Result<()> {
        for (i, t) in self.events.topics.iter().enumerate() {
            anyhow::ensure!(
                !t.accounts.is_empty(),
                "events.topics {}: name the accounts that may publish to it (accounts = [\"name\", …], or [\"*\"] \
                 for any): its endpoint receives their events",
                t.arn
            );
            anyhow::ensure!(
                t.url.starts_with("http://") || t.url.starts_with("https://"),
                "events.topics[{i}].url: '{}' must be an http:// or https:// URL",
                t.url
            );
            anyhow::ensure!(
                t.arn.starts_with("arn:") && t.arn.split(':').count() == 6,
                "events.topics[{i}].arn: '{}' is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)",
                t.arn
            );
            anyhow::ensure!(
                self.events.topics.iter().filter(|o| o.arn == t.arn).count() == 1,
                "events.topics: '{}' is declared twice",
                t.arn
            );
        }
        Ok(())
    }

    fn check_feedback(&self) -> anyhow::Result<()> {
        for n in &self.feedback.loop_sources {
            n.parse::<ipnet::IpNet>()
                .map_err(|e| anyhow::anyhow!("feedback.loop_sources: '{n}' is not a CIDR network: {e}"))?;
        }
        anyhow::ensure!(self.feedback.reports_per_minute > 0, "feedback.reports_per_minute must be at least 1");
        Ok(())
    }

    /// Timeouts, pacing, routes, webhooks, the smarthost and static MX records.
    fn check_delivery(&self) -> anyhow::Result<()> {
        let d = &self.delivery;
        anyhow::ensure!(
            d.connect_timeout_seconds > 0
                && d.greeting_timeout_seconds > 0
                && d.command_timeout_seconds > 0
                && d.greylist_retry_seconds > 0,
            "delivery.connect_timeout_seconds, greeting_timeout_seconds, command_timeout_seconds and greylist_retry_seconds must be at least 1"
        );
        let p = &d.pacing;
        anyhow::ensure!(
            p.climb_factor > 1.0 && p.climb_factor.is_finite(),
            "delivery.pacing.climb_factor must be a number above 1"
        );
        anyhow::ensure!(p.measure_window_ms >= 1000, "delivery.pacing.measure_window_ms must be at least 1000");
        anyhow::ensure!(
            p.pause_ms > 0 && p.max_lockout_ms >= p.pause_ms && p.block_pause_ms > 0,
            "delivery.pacing.pause_ms and block_pause_ms must be above 0, and max_lockout_ms at least pause_ms"
        );
        for (dom, t) in &d.routes {
            anyhow::ensure!(
                weir_delivery::route::parse_target(t).is_some(),
                "delivery.routes.{dom}: '{t}' is not host:port"
            );
        }
        for u in &d.webhooks {
            anyhow::ensure!(
                u.starts_with("http://") || u.starts_with("https://"),
                "delivery.webhooks: '{u}' must be an http:// or https:// URL"
            );
        }
        if let Some(t) = &d.smarthost {
            anyhow::ensure!(
                weir_delivery::route::parse_target(t).is_some(),
                "delivery.smarthost: '{t}' is not host:port"
            );
        }
        for (dom, records) in &d.mx {
            for r in records {
                anyhow::ensure!(parse_mx(r).is_some(), "delivery.mx.{dom}: '{r}' is not 'PREFERENCE HOST'");
            }
        }
        Ok(())
    }

    fn check_smtp(&self) -> anyhow::Result<()> {
        for n in &self.smtp.trusted_networks {
            n.parse::<ipnet::IpNet>()
                .map_err(|e| anyhow::anyhow!("smtp.trusted_networks: '{n}' is not a CIDR network: {e}"))?;
        }
        anyhow::ensure!(
            self.smtp.trusted_networks.is_empty() || self.smtp.trusted_account.is_some(),
            "smtp.trusted_networks needs smtp.trusted_account (the account those hosts send as)"
        );
        anyhow::ensure!(
            self.smtp.tls_cert.is_some() == self.smtp.tls_key.is_some(),
            "smtp.tls_cert and smtp.tls_key go together"
        );
        Ok(())
    }
}
