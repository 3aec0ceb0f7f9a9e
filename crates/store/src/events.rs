//! SES-shaped event records, one JSON object per line in `events.jsonl`, and handed to
//! listeners (webhooks) that must never block the caller.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use parking_lot::{Mutex, RwLock};
use serde_json::{Value, json};

/// Receives every event after it is written; must return quickly (queue, don't send).
pub type Listener = Box<dyn Fn(&Value) + Send + Sync>;

/// What went wrong for one recipient (bounce or delay).
pub struct Failure<'a> {
    /// bounceType (bounces only).
    pub kind: &'a str,
    /// bounceSubType, or delayType.
    pub subtype: &'a str,
    /// Enhanced status code.
    pub status: &'a str,
    /// `smtp; <reply>`.
    pub diagnostic: &'a str,
}

/// Most bytes of events kept in memory while the file cannot take them (a full disk).
const MAX_PENDING: usize = 16 << 20;

/// The file and what could not be written to it yet.
struct Sink {
    file: File,
    /// Length of the file after the last complete write (a failed write is cut back to it).
    len: u64,
    /// Whole lines waiting for the file.
    pending: Vec<u8>,
    /// Events dropped because `pending` was full.
    dropped: u64,
    /// Where the file is.
    path: std::path::PathBuf,
    /// Rotate when the file reaches this size...
    max_bytes: u64,
    /// ... keeping this many rotated files (`events.jsonl.1` newest).
    keep: u32,
}

impl Sink {
    /// Append what is pending; on failure cut the file back so that no torn line stays in it.
    fn flush(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        match self.file.write_all(&self.pending) {
            Ok(()) => {
                self.len += self.pending.len() as u64;
                self.pending.clear();
                if self.len >= self.max_bytes
                    && let Err(e) = self.rotate()
                {
                    tracing::error!(error = %e, "cannot rotate events.jsonl; it keeps growing");
                }
                Ok(())
            }
            Err(e) => {
                let _ = self.file.set_len(self.len);
                Err(e)
            }
        }
    }
}

impl Sink {
    /// `events.jsonl` becomes `events.jsonl.1` (the others shift, the oldest goes), and a new
    /// file starts.
    fn rotate(&mut self) -> std::io::Result<()> {
        let name = |n: u32| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{n}"));
            std::path::PathBuf::from(p)
        };
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            for n in (1..self.keep).rev() {
                if name(n).exists() {
                    std::fs::rename(name(n), name(n + 1))?;
                }
            }
            std::fs::rename(&self.path, name(1))?;
        }
        self.file = OpenOptions::new().create(true).append(true).open(&self.path)?;
        self.len = 0;
        Ok(())
    }
}

/// The event log.
pub struct EventLog {
    sink: Mutex<Sink>,
    listeners: RwLock<Vec<Listener>>,
}

/// The `mail` object common to every event.
#[derive(Debug, Clone)]
pub struct MailInfo {
    /// MessageId.
    pub message_id: String,
    /// Envelope sender.
    pub source: String,
    /// Acceptance time, Unix ms.
    pub timestamp_ms: i64,
    /// Account name.
    pub account: String,
    /// Region.
    pub region: String,
    /// Configuration set, if the message used one (it routes the event to the set's
    /// destinations).
    pub configuration_set: Option<String>,
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

impl EventLog {
    /// Append to `dir/events.jsonl`, never rotated.
    pub fn open(dir: &Path) -> std::io::Result<EventLog> {
        Self::open_rotating(dir, u64::MAX, 0)
    }

    /// Append to `dir/events.jsonl`, rotated at `max_bytes` into `events.jsonl.1` … `.keep`.
    pub fn open_rotating(dir: &Path, max_bytes: u64, keep: u32) -> std::io::Result<EventLog> {
        let path = dir.join("events.jsonl");
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let len = file.metadata()?.len();
        let sink = Sink { file, len, pending: Vec::new(), dropped: 0, path, max_bytes, keep };
        Ok(EventLog { sink: Mutex::new(sink), listeners: RwLock::new(Vec::new()) })
    }

    /// Write events kept in memory while the file failed (called periodically).
    pub fn retry_pending(&self) {
        let mut sink = self.sink.lock();
        if !sink.pending.is_empty() && sink.flush().is_ok() {
            tracing::info!("events.jsonl is writable again: events kept in memory written");
        }
    }

    /// Bytes of events waiting for the file.
    pub fn pending_bytes(&self) -> usize {
        self.sink.lock().pending.len()
    }

    /// Add a listener (webhook sender).
    pub fn add_listener(&self, l: Listener) {
        self.listeners.write().push(l);
    }

    fn write(&self, mail: &MailInfo, event_type: &str, body_key: &str, body: Value) {
        let mut record = json!({
            "eventType": event_type,
            "mail": {
                "timestamp": iso(mail.timestamp_ms),
                "messageId": mail.message_id,
                "source": mail.source,
                "sendingAccountId": mail.account,
                "region": mail.region,
            },
            body_key: body,
        });
        if let Some(set) = &mail.configuration_set {
            record["mail"]["tags"] = json!({ "ses:configuration-set": [set] });
        }
        self.emit(&record);
    }

    /// Append one record to the file and hand it to the listeners.
    fn emit(&self, record: &Value) {
        let mut line = record.to_string();
        line.push('\n');
        {
            let mut sink = self.sink.lock();
            let was_failing = !sink.pending.is_empty();
            if sink.pending.len() + line.len() > MAX_PENDING {
                sink.dropped += 1;
                if sink.dropped == 1 || sink.dropped.is_multiple_of(10_000) {
                    tracing::error!(
                        dropped = sink.dropped,
                        "events.jsonl unwritable and the memory buffer is full: events dropped"
                    );
                }
            } else {
                sink.pending.extend_from_slice(line.as_bytes());
            }
            if let Err(e) = sink.flush()
                && !was_failing
            {
                tracing::error!(error = %e, "cannot write events.jsonl; keeping events in memory until it can be written");
            }
        }
        for l in self.listeners.read().iter() {
            l(record);
        }
    }

    /// A lane's pacing changed (pause, resume, slow-down, step up, incident): weir's own event
    /// type, not one of SES's.
    pub fn lane_change(&self, lane: &str, provider: &str, entry: Value) {
        self.emit(
            &json!({ "eventType": "LaneChange", "lane": { "key": lane, "provider": provider, "change": entry } }),
        );
    }

    /// An (account, region)'s reputation enforcement status changed: weir's own event type (SES
    /// tells the account owner by mail).
    pub fn enforcement(&self, account: &str, region: &str, from: &str, to: &str, volumes: (i64, i64, i64)) {
        let (sent, bounces, complaints) = volumes;
        let rate = |n: i64| if sent > 0 { n as f64 / sent as f64 } else { 0.0 };
        self.emit(&json!({
            "eventType": "EnforcementChange",
            "account": account,
            "region": region,
            "enforcement": {
                "from": from, "to": to, "recipients": sent, "bounces": bounces, "complaints": complaints,
                "bounceRate": rate(bounces), "complaintRate": rate(complaints),
            },
        }));
    }

    /// A message accepted for delivery.
    pub fn send(&self, mail: &MailInfo, destination: &[String], tags: &[(String, String)]) {
        let tags: serde_json::Map<String, Value> = tags.iter().map(|(k, v)| (k.clone(), json!([v]))).collect();
        self.write(mail, "Send", "send", json!({ "destination": destination, "tags": tags }));
    }

    /// A send refused by identity or sandbox rules.
    pub fn reject(&self, mail: &MailInfo, reason: &str) {
        self.write(mail, "Reject", "reject", json!({ "reason": reason }));
    }

    /// A templated send whose template could not be rendered (nothing was sent).
    pub fn rendering_failure(&self, mail: &MailInfo, template: &str, error: &str) {
        self.write(mail, "Rendering Failure", "failure", json!({ "templateName": template, "errorMessage": error }));
    }

    /// A contact's subscription changed (an unsubscribe link or header was used).
    #[allow(clippy::too_many_arguments)]
    pub fn subscription(
        &self,
        mail: &MailInfo,
        contact: &str,
        list: &str,
        source: &str,
        now_ms: i64,
        old: Value,
        new: Value,
    ) {
        self.write(
            mail,
            "Subscription",
            "subscription",
            json!({
                "contactList": list, "timestamp": iso(now_ms), "source": source, "emailAddress": contact,
                "newTopicPreferences": new, "oldTopicPreferences": old,
            }),
        );
    }

    /// A delivery.
    pub fn delivery(&self, mail: &MailInfo, now_ms: i64, rcpt: &str, reply: &str, mta: &str, tls: bool) {
        let latency = now_ms - mail.timestamp_ms;
        self.write(
            mail,
            "Delivery",
            "delivery",
            json!({
                "timestamp": iso(now_ms), "processingTimeMillis": latency, "recipients": [rcpt],
                "smtpResponse": reply, "reportingMTA": mta, "tls": tls,
            }),
        );
    }

    /// A bounce.
    pub fn bounce(&self, mail: &MailInfo, now_ms: i64, rcpt: &str, b: &Failure<'_>) {
        self.write(mail, "Bounce", "bounce", json!({
            "bounceType": b.kind, "bounceSubType": b.subtype, "timestamp": iso(now_ms),
            "bouncedRecipients": [{"emailAddress": rcpt, "action": "failed", "status": b.status, "diagnosticCode": b.diagnostic}],
        }));
    }

    /// A deferral that will be retried at `next_ms`.
    pub fn delay(&self, mail: &MailInfo, now_ms: i64, rcpt: &str, d: &Failure<'_>, next_ms: i64) {
        self.write(
            mail,
            "DeliveryDelay",
            "deliveryDelay",
            json!({
                "timestamp": iso(now_ms), "delayType": d.subtype, "nextAttempt": iso(next_ms),
                "delayedRecipients": [{"emailAddress": rcpt, "status": d.status, "diagnosticCode": d.diagnostic}],
            }),
        );
    }

    /// A complaint (mailbox simulator).
    pub fn complaint(&self, mail: &MailInfo, now_ms: i64, rcpt: &str) {
        self.write(mail, "Complaint", "complaint", json!({
            "timestamp": iso(now_ms), "complainedRecipients": [{"emailAddress": rcpt}], "complaintFeedbackType": "abuse",
        }));
    }
}
