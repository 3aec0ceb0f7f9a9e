//! Mail coming back to the return path: delivery status notifications become SES Bounce events
//! (and hard bounces go to the suppression list), ARF reports become Complaint events.

use std::collections::HashMap;
use std::net::IpAddr;

use parking_lot::Mutex;
use weir_mail::feedback::{Report, parse_report, parse_return_path};
use weir_store::events::{Failure, MailInfo};
use weir_store::spool::{self, QueueFilter};

use std::sync::Arc;

use super::AdminError;
use super::core::Core;
use super::directory::Directory;
use super::mail_from::MailFromDomains;
use weir_store::model::SuppressionReason;

/// Local part of the address feedback loops send complaint reports to, at every return-path
/// domain (register `fbl@<domain>` with the mailbox providers' feedback loops).
pub const COMPLAINTS_LOCAL_PART: &str = "fbl";

/// What an address at the feedback listener stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedbackTarget {
    /// A return path: the message and its recipient.
    Message(String, i64),
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

/// Who may send reports, and how many.
pub(crate) struct FeedbackSources {
    /// The feedback loops' networks: trusted to name a recipient without its return path.
    loops: Vec<ipnet::IpNet>,
    per_minute: f64,
    /// Per address: tokens left and when they were counted (ms).
    buckets: Mutex<HashMap<IpAddr, (f64, i64)>>,
}

/// A recipient a report is about, and how it was named.
struct About {
    message_id: String,
    /// By its own return path (exact), or by what a feedback loop's report says.
    idx: Option<i64>,
    rcpt_hint: Option<String>,
}

/// Mail coming back: who may send reports, what an address at the feedback listener stands
/// for, and what a report does.
pub struct Feedback {
    core: Arc<Core>,
    directory: Arc<Directory>,
    mail_from: Arc<MailFromDomains>,
    sources: FeedbackSources,
}

impl Feedback {
    /// Reports from `loops` (the feedback loops' networks) may name a recipient without its
    /// return path; one address may send `per_minute` reports a minute.
    pub(crate) fn new(
        core: Arc<Core>,
        directory: Arc<Directory>,
        mail_from: Arc<MailFromDomains>,
        loops: Vec<ipnet::IpNet>,
        per_minute: u32,
    ) -> Self {
        let sources =
            FeedbackSources { loops, per_minute: f64::from(per_minute.max(1)), buckets: Mutex::new(HashMap::new()) };
        Feedback { core, directory, mail_from, sources }
    }

    /// Whether `peer` may send one more report now (a token bucket per address, a minute deep).
    pub fn feedback_admit(&self, peer: IpAddr) -> bool {
        let now = self.core.now_ms();
        let src = &self.sources;
        let mut buckets = src.buckets.lock();
        if buckets.len() > 10_000 {
            // Forget addresses whose bucket has filled again.
            buckets.retain(|_, (tokens, at)| *tokens + (now - *at) as f64 * src.per_minute / 60_000.0 < src.per_minute);
        }
        let (tokens, at) = buckets.entry(peer).or_insert((src.per_minute, now));
        *tokens = (*tokens + (now - *at).max(0) as f64 * src.per_minute / 60_000.0).min(src.per_minute);
        *at = now;
        if *tokens < 1.0 {
            return false;
        }
        *tokens -= 1.0;
        true
    }

    /// What an address at the feedback listener stands for: a return path (its message and
    /// recipient), or the complaints address (`fbl@` a return-path domain) that feedback loops
    /// send ARF reports to; `None` for any other address, which the listener refuses.
    pub fn feedback_target(&self, address: &str) -> Option<FeedbackTarget> {
        let secret = self.mail_from.return_path_secret()?;
        let domains = self.mail_from.return_path_domains();
        if let Some((local, domain)) = address.rsplit_once('@')
            && local.eq_ignore_ascii_case(COMPLAINTS_LOCAL_PART)
            && domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
        {
            return Some(FeedbackTarget::Complaints);
        }
        parse_return_path(address, &domains, secret).map(|(m, i)| FeedbackTarget::Message(m, i))
    }

    /// Which recipients a report to `targets` from `peer` speaks for. A return path speaks for
    /// its own recipient; a complaint to `fbl@` for the recipient whose return path the enclosed
    /// message carries, or, from a configured feedback loop only, the one it names.
    fn report_subjects(&self, targets: &[FeedbackTarget], report: &Report, peer: IpAddr) -> Vec<About> {
        let mut about = Vec::new();
        for t in targets {
            match (t, report) {
                (FeedbackTarget::Message(m, i), _) => {
                    about.push(About { message_id: m.clone(), idx: Some(*i), rcpt_hint: None })
                }
                (FeedbackTarget::Complaints, Report::Complaint { original, .. }) => {
                    let secret = self.mail_from.return_path_secret().unwrap_or_default();
                    let by_path = original
                        .return_path
                        .as_deref()
                        .and_then(|rp| parse_return_path(rp, &self.mail_from.return_path_domains(), secret));
                    if let Some((m, i)) = by_path {
                        about.push(About { message_id: m, idx: Some(i), rcpt_hint: None });
                    } else if self.sources.loops.iter().any(|n| n.contains(&peer)) {
                        if let Some(m) = original.message_id.clone().filter(|m| weir_mail::message_id::is_message_id(m))
                        {
                            about.push(About { message_id: m, idx: None, rcpt_hint: original.rcpt_to.clone() });
                        }
                    } else {
                        tracing::info!(%peer, "feedback: a complaint without weir's return path from an address that is not a configured feedback loop, ignored");
                    }
                }
                (FeedbackTarget::Complaints, Report::Dsn(_)) => {}
            }
        }
        about.sort_by(|a, b| (&a.message_id, a.idx).cmp(&(&b.message_id, b.idx)));
        about.dedup_by(|a, b| a.message_id == b.message_id && a.idx == b.idx && a.rcpt_hint == b.rcpt_hint);
        about
    }

    /// Act on a message that came back to these return paths from `peer`: returns how many
    /// events it made. At most one Bounce and one Complaint are ever made per recipient, and only
    /// for a recipient weir delivered to; repeats are ignored.
    pub async fn ingest_feedback(
        &self,
        targets: &[FeedbackTarget],
        message: &[u8],
        peer: IpAddr,
    ) -> Result<usize, AdminError> {
        let Some(report) = parse_report(message) else {
            tracing::info!(%peer, "feedback: a message that is neither a DSN nor an ARF report, ignored");
            return Ok(0);
        };
        let now = self.core.now_ms();
        let mut made = 0;
        for about in self.report_subjects(targets, &report, peer) {
            let message_id = about.message_id;
            let filter = QueueFilter { message_id: Some(message_id.clone()), ..Default::default() };
            let rows = self.core.spool.rows(&filter, now, 100)?;
            let Some(first) = rows.first() else {
                tracing::info!(%message_id, "feedback for a message no longer in the spool, ignored");
                continue;
            };
            let row = match (about.idx, &about.rcpt_hint) {
                (Some(i), _) => rows.iter().find(|r| r.idx == i),
                (None, Some(a)) => rows.iter().find(|r| r.address.eq_ignore_ascii_case(a)),
                (None, None) if rows.len() == 1 => rows.first(),
                (None, None) => None,
            };
            let Some(row) = row else {
                tracing::info!(%message_id, "feedback names no recipient of its message, ignored");
                continue;
            };
            let account = self.directory.account_by_name(&first.account)?;
            let mail = MailInfo {
                message_id: message_id.clone(),
                source: first.mail_from.clone(),
                timestamp_ms: first.created_ms,
                account: first.account.clone(),
                region: first.region.clone(),
                configuration_set: first.configuration_set.clone(),
            };
            let reasons = self.directory.region_settings(account.id, &first.region).suppressed_reasons;
            let (kind, status) = match &report {
                // The return path names the recipient: whatever recipient the DSN itself names,
                // it speaks for this one, once.
                Report::Dsn(recipients) => match recipients.iter().find(|d| d.action == "failed") {
                    Some(d) => (spool::Report::Bounce, Some(d)),
                    None => continue,
                },
                Report::Complaint { .. } => (spool::Report::Complaint, None),
            };
            let about = (message_id.clone(), row.idx);
            let new = self.core.spool.record_report(about, kind, account.id, row.region.clone(), now).await?;
            if !new {
                tracing::info!(%message_id, recipient = %row.address, ?kind, "feedback: a repeat, or about a recipient that was not delivered; ignored");
                continue;
            }
            let reason = match (&report, status) {
                (Report::Dsn(_), Some(d)) => {
                    let permanent = d.status.starts_with('5');
                    let diagnostic = d.diagnostic.clone().unwrap_or_else(|| format!("smtp; {}", d.status));
                    if let Some(ev) = &self.core.events {
                        let kind = if permanent { "Permanent" } else { "Transient" };
                        let f = Failure {
                            kind,
                            subtype: bounce_subtype(&d.status),
                            status: &d.status,
                            diagnostic: &diagnostic,
                        };
                        ev.bounce(&mail, now, &row.address, &f);
                    }
                    tracing::info!(%message_id, recipient = %row.address, status = %d.status, "bounce reported after delivery");
                    permanent.then_some(SuppressionReason::Bounce)
                }
                (Report::Complaint { feedback_type, .. }, _) => {
                    if let Some(ev) = &self.core.events {
                        ev.complaint(&mail, now, &row.address);
                    }
                    tracing::info!(%message_id, recipient = %row.address, %feedback_type, "complaint reported");
                    Some(SuppressionReason::Complaint)
                }
                (Report::Dsn(_), None) => None,
            };
            if let Some(reason) = reason.filter(|r| reasons.contains(r)) {
                self.directory
                    .put_suppressed(account.id, &row.region, &row.address, reason, Some(message_id.clone()))
                    .await?;
            }
            made += 1;
        }
        Ok(made)
    }
}
