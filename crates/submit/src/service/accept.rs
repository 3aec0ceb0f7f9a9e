//! Accepting a send: credentials, quotas, the sender's and recipients' checks, and the spool;
//! and the statistics of what was sent.

use std::sync::Arc;

use weir_mail::address::Mailbox;
use weir_quota::Refusal;
use weir_store::model::*;
use weir_store::{StoreError, ledger};

use super::*;

impl Service {
    // ---------------------------------------------------------------- statistics

    /// GetSendStatistics data points: in a cluster, every node's (this node's alone, logged, while
    /// Redis is away).
    pub async fn send_statistics(&self, account_id: i64, region: &str) -> Result<Vec<SendDataPoint>, StoreError> {
        let now_s = (self.now_ns() / 1_000_000_000) as i64;
        if let Some(points) = self.cluster_statistics(account_id, region, now_s - ledger::STATS_RETENTION_SECS).await? {
            return Ok(points);
        }
        self.ledger.send_statistics(account_id, region, now_s)
    }

    // ---------------------------------------------------------------- sending

    /// The account whose SES SMTP credentials for `region` these are (constant-time compare).
    pub fn smtp_login(&self, username: &str, password: &str, region: &str) -> Option<Arc<Account>> {
        let account = self.account_by_key(username)?;
        let expected = weir_sigv4::smtp_password(&account.secret, region);
        weir_sigv4::constant_time_eq(expected.as_bytes(), password.as_bytes()).then_some(account)
    }

    /// Count a quota refusal and turn it into the error the front doors answer with.
    pub(super) fn refused(&self, key: &RegionKey, r: Refusal) -> SubmitError {
        let (reason, err) = match r {
            Refusal::SendingPaused => ("sending_paused", SubmitError::SendingPaused),
            Refusal::DailyQuotaExceeded { retry_after } => {
                ("daily_quota", SubmitError::DailyQuotaExceeded { retry_after })
            }
            Refusal::MaxSendRateExceeded { retry_after } => {
                ("max_send_rate", SubmitError::MaxSendRateExceeded { retry_after })
            }
        };
        *self.refusals.lock().entry((key.clone(), reason)).or_default() += 1;
        err
    }

    /// Quota refusals since start: (account id, region, reason, count).
    pub fn quota_refusals(&self) -> Vec<(i64, String, &'static str, u64)> {
        self.refusals.lock().iter().map(|((k, reason), n)| (k.0, k.1.clone(), *reason, *n)).collect()
    }

    /// Could a one-recipient message from `source` be accepted now? Charges nothing; SMTP asks
    /// at MAIL FROM so that a client does not upload a body only to be refused.
    pub async fn precheck(&self, account: &Account, region: &str, source: &Mailbox) -> Result<(), SubmitError> {
        let key: RegionKey = (account.id, region.to_string());
        let settings = self.region_settings(account.id, region);
        if !settings.sending_enabled {
            return Err(self.refused(&key, Refusal::SendingPaused));
        }
        if !self.catalog.read().is_verified(&key, &source.addr) {
            return Err(SubmitError::MessageRejected(format!(
                "Email address is not verified. The following identities failed the check in region {}: {}",
                region_upper(region),
                display(source)
            )));
        }
        self.would_pass(&key, &limits_of(&settings), 1).await
    }

    /// Admit and spool one message. Returns the MessageId once the message, its recipients and
    /// its quota charge are durable.
    pub async fn submit(&self, account: &Account, mut sub: Submission) -> Result<String, SubmitError> {
        if sub.recipients.is_empty() {
            return Err(SubmitError::InvalidParameter("Missing required header 'To'.".into()));
        }
        if sub.recipients.len() > MAX_RECIPIENTS {
            return Err(SubmitError::InvalidParameter("Recipient count exceeds 50.".into()));
        }
        if sub.configuration_set.is_none() {
            sub.configuration_set = self.default_configuration_set(account.id, &sub.region, &sub.source.addr);
        }
        if let Some(name) = &sub.configuration_set {
            self.require_configuration_set(account.id, &sub.region, name)?;
        }
        let key: RegionKey = (account.id, sub.region.clone());
        let settings = self.region_settings(account.id, &sub.region);
        if !settings.sending_enabled {
            return Err(SubmitError::SendingPaused);
        }
        // Distinct recipients are the unit of the quota.
        let mut distinct: Vec<String> = Vec::with_capacity(sub.recipients.len());
        for r in &sub.recipients {
            if !distinct.iter().any(|d| d.eq_ignore_ascii_case(r)) {
                distinct.push(r.clone());
            }
        }
        // The catalog is read in one go (its guard must not live across an await).
        let checked: Result<Vec<(String, RecipientState)>, Vec<String>> = {
            let cat = self.catalog.read();
            let mut failed: Vec<String> = Vec::new();
            if !cat.is_verified(&key, &sub.source.addr) {
                failed.push(display(&sub.source));
            }
            for f in &sub.header_senders {
                if !f.addr.eq_ignore_ascii_case(&sub.source.addr) && !cat.is_verified(&key, &f.addr) {
                    failed.push(display(f));
                }
            }
            if !settings.production {
                for r in &distinct {
                    if !is_simulator(r) && !cat.is_verified(&key, r) {
                        failed.push(r.clone());
                    }
                }
            }
            if failed.is_empty() {
                Ok(distinct
                    .iter()
                    .map(|r| {
                        let st = if cat.is_suppressed(&key, r)
                            || sub.unsubscribed.iter().any(|u| u.eq_ignore_ascii_case(r))
                        {
                            RecipientState::Suppressed
                        } else {
                            RecipientState::Queued
                        };
                        (r.clone(), st)
                    })
                    .collect())
            } else {
                Err(failed)
            }
        };
        let states = match checked {
            Ok(states) => states,
            Err(failed) => {
                let (id, region, now) = (account.id, sub.region.clone(), self.now_ms());
                // Recorded before the answer, so GetSendStatistics right after it counts it.
                if let Err(e) = self.ledger.record_reject(id, region, now).await {
                    tracing::error!(error = %e, "a rejection was not counted in the sending statistics");
                }
                let msg = format!(
                    "Email address is not verified. The following identities failed the check in region {}: {}",
                    region_upper(&sub.region),
                    failed.join(", ")
                );
                if let Some(ev) = &self.events {
                    ev.reject(&self.mail_info(account, &sub, now), &msg);
                }
                return Err(SubmitError::MessageRejected(msg));
            }
        };
        self.check_mail_from(account.id, &sub.region, &sub.source.addr)?;

        let charge = self.decide(&key, &limits_of(&settings), distinct.len() as u32, &sub.message_id).await?;
        let now = self.now_ns();
        let tags_json = serde_json::Value::Array(
            sub.tags.iter().map(|(n, v)| serde_json::json!({"Name": n, "Value": v})).collect(),
        )
        .to_string();
        let bulk = sub.tags.iter().any(|(k, v)| k == "weir-class" && v == "bulk")
            || sub.configuration_set.as_ref().is_some_and(|c| self.config.bulk_configuration_sets.contains(c));
        let priority = if bulk { Priority::Bulk } else { Priority::Transactional };
        let info =
            self.events.as_ref().map(|_| (self.mail_info(account, &sub, (now / 1_000_000) as i64), sub.tags.clone()));
        let sub_size = sub.mime.len();
        let suppressed: Vec<String> =
            states.iter().filter(|(_, st)| *st == RecipientState::Suppressed).map(|(r, _)| r.clone()).collect();
        let unsubscribed_list = std::mem::take(&mut sub.unsubscribed);
        let unsubscribed = |r: &str| unsubscribed_list.iter().any(|u| u.eq_ignore_ascii_case(r));
        let entry = SpoolEntry {
            id: sub.message_id.clone(),
            account_id: account.id,
            region: sub.region.clone(),
            created_ms: (now / 1_000_000) as i64,
            mail_from: sub.source.addr.clone(),
            configuration_set: sub.configuration_set,
            tags_json,
            source: sub.origin.to_string(),
            body: sub.mime,
            recipients: states,
            quota_second: charge.second,
            quota_count: charge.count,
            quota_tat: charge.tat_after,
            priority,
        };
        match self.spool.enqueue(vec![entry]).await {
            Ok(()) => {
                if let (Some(ev), Some((mail, tags))) = (&self.events, info) {
                    ev.send(&mail, &distinct, &tags);
                    // As SES: accepted, not sent to addresses on the account's suppression
                    // list, and a Bounce event says so.
                    for rcpt in suppressed.iter().filter(|r| !unsubscribed(r)) {
                        ev.bounce(&mail, mail.timestamp_ms, rcpt, &SUPPRESSED_BOUNCE);
                    }
                }
                tracing::info!(
                    message_id = %sub.message_id, account = %account.name, region = %sub.region,
                    origin = %sub.origin, recipients = distinct.len(), size = sub_size, "accepted"
                );
                for rcpt in &suppressed {
                    if unsubscribed(rcpt) {
                        tracing::info!(message_id = %sub.message_id, recipient = %rcpt, "not sent: the contact unsubscribed");
                    } else {
                        tracing::info!(message_id = %sub.message_id, recipient = %rcpt, "not sent: the address is on the account's suppression list");
                    }
                }
                Ok(sub.message_id)
            }
            Err(e) => {
                self.give_back(&key, &charge).await;
                tracing::error!(error = %e, "spool write failed; refunded the quota charge");
                Err(SubmitError::Storage(e))
            }
        }
    }
}
