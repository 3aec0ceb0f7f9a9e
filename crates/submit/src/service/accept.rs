//! Accepting a send: credentials, quotas, the sender's and recipients' checks, and the spool;
//! and the statistics of what was sent.

use weir_mail::address::Mailbox;
use weir_quota::Refusal;
use weir_store::model::*;

use super::send::Sending;
use super::*;

impl Sending {
    /// Could a one-recipient message from `source` be accepted now? Charges nothing; SMTP asks
    /// at MAIL FROM so that a client does not upload a body only to be refused.
    pub async fn precheck(&self, account: &Account, region: &str, source: &Mailbox) -> Result<(), SubmitError> {
        let key: RegionKey = (account.id, region.to_string());
        let settings = self.directory.region_settings(account.id, region);
        if !settings.sending_enabled {
            return Err(self.quotas.refused(&key, Refusal::SendingPaused));
        }
        if !self.directory.read().is_verified(&key, &source.addr) {
            return Err(SubmitError::MessageRejected(format!(
                "Email address is not verified. The following identities failed the check in region {}: {}",
                region_upper(region),
                display(source)
            )));
        }
        self.quotas.would_pass(&key, &limits_of(&settings), 1).await
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
            sub.configuration_set =
                self.identity_settings.default_configuration_set(account.id, &sub.region, &sub.source.addr);
        }
        if let Some(name) = &sub.configuration_set {
            self.resources.require_configuration_set(account.id, &sub.region, name)?;
        }
        let key: RegionKey = (account.id, sub.region.clone());
        let settings = self.directory.region_settings(account.id, &sub.region);
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
        let states = match self.check_identities(&key, &sub, settings.production, &distinct) {
            Ok(states) => states,
            Err(failed) => return Err(self.reject(account, &sub, &failed).await),
        };
        self.mail_from.check_mail_from(account.id, &sub.region, &sub.source.addr)?;

        let charge = self.quotas.decide(&key, &limits_of(&settings), distinct.len() as u32, &sub.message_id).await?;
        let now = self.core.now_ns();
        let tags_json = serde_json::Value::Array(
            sub.tags.iter().map(|(n, v)| serde_json::json!({"Name": n, "Value": v})).collect(),
        )
        .to_string();
        let bulk = sub.tags.iter().any(|(k, v)| k == "weir-class" && v == "bulk")
            || sub.configuration_set.as_ref().is_some_and(|c| self.bulk_configuration_sets.contains(c));
        let priority = if bulk { Priority::Bulk } else { Priority::Transactional };
        let info = self
            .core
            .events
            .as_ref()
            .map(|_| (self.mail_info(account, &sub, (now / 1_000_000) as i64), sub.tags.clone()));
        let sub_size = sub.mime.len();
        let suppressed: Vec<String> =
            states.iter().filter(|(_, st)| *st == RecipientState::Suppressed).map(|(r, _)| r.clone()).collect();
        let unsubscribed_list = std::mem::take(&mut sub.unsubscribed);
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
        match self.core.spool.enqueue(vec![entry]).await {
            Ok(()) => {
                tracing::info!(
                    message_id = %sub.message_id, account = %account.name, region = %sub.region,
                    origin = %sub.origin, recipients = distinct.len(), size = sub_size, "accepted"
                );
                self.announce_accepted(info.as_ref(), &sub.message_id, &distinct, &suppressed, &unsubscribed_list);
                Ok(sub.message_id)
            }
            Err(e) => {
                self.quotas.give_back(&key, &charge).await;
                tracing::error!(error = %e, "spool write failed; refunded the quota charge");
                Err(SubmitError::Storage(e))
            }
        }
    }

    fn mail_info(&self, account: &Account, sub: &Submission, now_ms: i64) -> weir_store::events::MailInfo {
        weir_store::events::MailInfo {
            message_id: sub.message_id.clone(),
            source: sub.source.addr.clone(),
            timestamp_ms: now_ms,
            account: account.name.clone(),
            region: sub.region.clone(),
            configuration_set: sub.configuration_set.clone(),
        }
    }

    /// Check the sender, the other header senders and (in the sandbox) the recipients against
    /// the verified identities: each recipient's first state (suppressed or queued), or the
    /// addresses that failed. The catalog is read in one go (its guard must not live across an
    /// await).
    fn check_identities(
        &self,
        key: &RegionKey,
        sub: &Submission,
        production: bool,
        distinct: &[String],
    ) -> Result<Vec<(String, RecipientState)>, Vec<String>> {
        let cat = self.directory.read();
        let mut failed: Vec<String> = Vec::new();
        if !cat.is_verified(key, &sub.source.addr) {
            failed.push(display(&sub.source));
        }
        for f in &sub.header_senders {
            if !f.addr.eq_ignore_ascii_case(&sub.source.addr) && !cat.is_verified(key, &f.addr) {
                failed.push(display(f));
            }
        }
        if !production {
            failed.extend(distinct.iter().filter(|r| !is_simulator(r) && !cat.is_verified(key, r)).cloned());
        }
        if !failed.is_empty() {
            return Err(failed);
        }
        let unsubscribed = |r: &str| sub.unsubscribed.iter().any(|u| u.eq_ignore_ascii_case(r));
        Ok(distinct
            .iter()
            .map(|r| {
                let suppressed = cat.is_suppressed(key, r) || unsubscribed(r);
                (r.clone(), if suppressed { RecipientState::Suppressed } else { RecipientState::Queued })
            })
            .collect())
    }

    /// Refuse a send whose identities failed the check: counted in the statistics and announced
    /// as a Reject event before the answer.
    async fn reject(&self, account: &Account, sub: &Submission, failed: &[String]) -> SubmitError {
        let (id, region, now) = (account.id, sub.region.clone(), self.core.now_ms());
        // Recorded before the answer, so GetSendStatistics right after it counts it.
        if let Err(e) = self.core.ledger.record_reject(id, region, now).await {
            tracing::error!(error = %e, "a rejection was not counted in the sending statistics");
        }
        let msg = format!(
            "Email address is not verified. The following identities failed the check in region {}: {}",
            region_upper(&sub.region),
            failed.join(", ")
        );
        if let Some(ev) = &self.core.events {
            ev.reject(&self.mail_info(account, sub, now), &msg);
        }
        SubmitError::MessageRejected(msg)
    }

    /// The Send event of an accepted message and, as SES does, a Bounce event for each recipient
    /// on the account's suppression list (accepted, not sent); a log line for every recipient
    /// not sent.
    fn announce_accepted(
        &self,
        info: Option<&(weir_store::events::MailInfo, Vec<(String, String)>)>,
        message_id: &str,
        distinct: &[String],
        suppressed: &[String],
        unsubscribed: &[String],
    ) {
        let unsubscribed = |r: &str| unsubscribed.iter().any(|u| u.eq_ignore_ascii_case(r));
        if let (Some(ev), Some((mail, tags))) = (&self.core.events, info) {
            ev.send(mail, distinct, tags);
            for rcpt in suppressed.iter().filter(|r| !unsubscribed(r)) {
                ev.bounce(mail, mail.timestamp_ms, rcpt, &SUPPRESSED_BOUNCE);
            }
        }
        for rcpt in suppressed {
            if unsubscribed(rcpt) {
                tracing::info!(%message_id, recipient = %rcpt, "not sent: the contact unsubscribed");
            } else {
                tracing::info!(%message_id, recipient = %rcpt, "not sent: the address is on the account's suppression list");
            }
        }
    }
}
