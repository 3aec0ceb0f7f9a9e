//! Mail coming back to the return path: delivery status notifications become SES Bounce events
//! (and hard bounces go to the suppression list), ARF reports become Complaint events.

use weir_mail::feedback::{Report, parse_report, parse_return_path};
use weir_store::events::{Failure, MailInfo};
use weir_store::{ops, queue};

use super::{AdminError, Service};

/// Local part of the address feedback loops send complaint reports to, at every return-path
/// domain (register `fbl@<domain>` with the mailbox providers' feedback loops).
pub const COMPLAINTS_LOCAL_PART: &str = "fbl";

/// What an address at the feedback listener stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedbackTarget {
    /// A return path: the message, and its recipient when the transaction had one.
    Message(String, Option<i64>),
    /// The complaints address.
    Complaints,
}

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

    /// What an address at the feedback listener stands for: a return path (its message and
    /// recipient index), or the complaints address (`fbl@` a return-path domain) that feedback
    /// loops send ARF reports to; `None` for any other address, which the listener refuses.
    pub fn feedback_target(&self, address: &str) -> Option<FeedbackTarget> {
        let (_, secret) = self.return_path.as_ref()?;
        let domains = self.return_path_domains();
        if let Some((local, domain)) = address.rsplit_once('@')
            && local.eq_ignore_ascii_case(COMPLAINTS_LOCAL_PART)
            && domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
        {
            return Some(FeedbackTarget::Complaints);
        }
        parse_return_path(address, &domains, secret).map(|(m, i)| FeedbackTarget::Message(m, i))
    }

    /// Act on a message that came back to these return paths: returns how many events it made.
    pub async fn ingest_feedback(&self, targets: &[FeedbackTarget], message: &[u8]) -> Result<usize, AdminError> {
        let Some(report) = parse_report(message) else {
            tracing::info!("feedback: a message that is neither a DSN nor an ARF report, ignored");
            return Ok(0);
        };
        let now = self.now_ms();
        let mut made = 0;
        // A report to the complaints address names its message inside: by the return path the
        // receiver kept, or by weir's Message-ID; the recipient by Original-Rcpt-To.
        let mut messages: Vec<(String, Option<i64>)> = Vec::new();
        let mut rcpt_hint = None;
        for t in targets {
            match (t, &report) {
                (FeedbackTarget::Message(m, i), _) => messages.push((m.clone(), *i)),
                (FeedbackTarget::Complaints, Report::Complaint { original, .. }) => {
                    rcpt_hint = original.rcpt_to.clone();
                    let secret = self.return_path.as_ref().map(|(_, s)| s.as_slice()).unwrap_or_default();
                    let by_path = original
                        .return_path
                        .as_deref()
                        .and_then(|rp| parse_return_path(rp, &self.return_path_domains(), secret));
                    let by_id = || {
                        original
                            .message_id
                            .clone()
                            .filter(|m| weir_mail::message_id::is_message_id(m))
                            .map(|m| (m, None))
                    };
                    messages.extend(by_path.or_else(by_id));
                }
                (FeedbackTarget::Complaints, Report::Dsn(_)) => {}
            }
        }
        messages.dedup();
        for (message_id, idx) in &messages {
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
                configuration_set: first.configuration_set.clone(),
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
                Report::Complaint { feedback_type, .. } => {
                    let row = match (idx, &rcpt_hint) {
                        (Some(i), _) => rows.iter().find(|r| r.idx == *i),
                        (None, Some(a)) => rows.iter().find(|r| r.address.eq_ignore_ascii_case(a)),
                        (None, None) if rows.len() == 1 => rows.first(),
                        (None, None) => None,
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
