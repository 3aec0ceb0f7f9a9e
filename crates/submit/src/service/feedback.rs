//! Mail coming back to the return path: delivery status notifications become SES Bounce events
//! (and hard bounces go to the suppression list), ARF reports become Complaint events.

use weir_mail::feedback::{Report, parse_report, parse_return_path};
use weir_store::events::{Failure, MailInfo};
use weir_store::{ops, queue};

use super::{AdminError, Service};

/// SES's bounceSubType for an enhanced status code.
fn bounce_subtype(status: &str) -> &'static str {
    match status {
        s if s.starts_with("5.1.") => "NoEmail",
        "5.2.2" | "4.2.2" => "MailboxFull",
        "5.3.4" | "5.2.3" => "MessageTooLarge",
        s if s.starts_with("5.7.") => "ContentRejected",
        _ => "General",
    }
}

impl Service {
    /// Send mail with per-message return paths (tags keyed with `secret`): at `default_domain`,
    /// and at the MAIL FROM domains of identities that have one.
    pub fn with_return_path(mut self, default_domain: Option<String>, secret: Vec<u8>) -> Self {
        self.return_path = Some((default_domain, secret));
        self
    }

    /// The message (and recipient index) a return-path address stands for; `None` for any
    /// other address, which the feedback listener refuses.
    pub fn feedback_target(&self, address: &str) -> Option<(String, Option<i64>)> {
        let (_, secret) = self.return_path.as_ref()?;
        parse_return_path(address, &self.return_path_domains(), secret)
    }

    /// Act on a message that came back to these return paths: returns how many events it made.
    pub async fn ingest_feedback(
        &self,
        targets: &[(String, Option<i64>)],
        message: &[u8],
    ) -> Result<usize, AdminError> {
        let Some(report) = parse_report(message) else {
            tracing::info!("feedback: a message that is neither a DSN nor an ARF report, ignored");
            return Ok(0);
        };
        let now = self.now_ms();
        let mut made = 0;
        for (message_id, idx) in targets {
            let filter = queue::QueueFilter { message_id: Some(message_id.clone()), ..Default::default() };
            let rows = self.queue_rows(&filter, 100)?;
            let Some(first) = rows.first() else {
                tracing::info!(%message_id, "feedback for a message no longer in the spool, ignored");
                continue;
            };
            let account = self.account_by_name(&first.account)?;
            let mail = MailInfo {
                message_id: message_id.clone(),
                source: first.mail_from.clone(),
                timestamp_ms: first.created_ms,
                account: first.account.clone(),
                region: first.region.clone(),
            };
            let reasons = self.region_settings(account.id, &first.region).suppressed_reasons;
            match &report {
                Report::Dsn(recipients) => {
                    for d in recipients.iter().filter(|d| d.action == "failed") {
                        // The return path names the recipient when the transaction had one;
                        // otherwise the DSN's recipient is matched against the message's.
                        let row = match idx {
                            Some(i) => rows.iter().find(|r| r.idx == *i),
                            None => rows.iter().find(|r| r.address.eq_ignore_ascii_case(&d.recipient)),
                        };
                        let Some(row) = row else { continue };
                        let permanent = d.status.starts_with('5');
                        let diagnostic = d.diagnostic.clone().unwrap_or_else(|| format!("smtp; {}", d.status));
                        if let Some(ev) = &self.events {
                            let kind = if permanent { "Permanent" } else { "Transient" };
                            let f = Failure {
                                kind,
                                subtype: bounce_subtype(&d.status),
                                status: &d.status,
                                diagnostic: &diagnostic,
                            };
                            ev.bounce(&mail, now, &row.address, &f);
                        }
                        let (r, a) = (row.region.clone(), account.id);
                        self.store.write(move |c| ops::record_feedback(c, a, &r, now, 1, 0)).await?;
                        if permanent && reasons.iter().any(|x| x == "BOUNCE") {
                            self.put_suppressed(
                                account.id,
                                &row.region,
                                &row.address,
                                "BOUNCE",
                                Some(message_id.clone()),
                            )
                            .await?;
                        }
                        tracing::info!(%message_id, recipient = %row.address, status = %d.status, "bounce reported after delivery");
                        made += 1;
                    }
                }
                Report::Complaint { feedback_type } => {
                    let row = match idx {
                        Some(i) => rows.iter().find(|r| r.idx == *i),
                        None if rows.len() == 1 => rows.first(),
                        None => None,
                    };
                    let Some(row) = row else {
                        tracing::info!(%message_id, "complaint for a message with several recipients, none named");
                        continue;
                    };
                    if let Some(ev) = &self.events {
                        ev.complaint(&mail, now, &row.address);
                    }
                    let (r, a) = (row.region.clone(), account.id);
                    self.store.write(move |c| ops::record_feedback(c, a, &r, now, 0, 1)).await?;
                    if reasons.iter().any(|x| x == "COMPLAINT") {
                        self.put_suppressed(
                            account.id,
                            &row.region,
                            &row.address,
                            "COMPLAINT",
                            Some(message_id.clone()),
                        )
                        .await?;
                    }
                    tracing::info!(%message_id, recipient = %row.address, %feedback_type, "complaint reported");
                    made += 1;
                }
            }
        }
        Ok(made)
    }
}
