//! Email-address verification as SES does it: a message to the address with a link; following
//! the link verifies the identity. The link carries a keyed hash of (account, region, address),
//! so it cannot be made up and needs nothing stored.

use std::sync::Arc;

use weir_mail::feedback::{keyed_tag, tags_equal};
use weir_mail::message_id::new_message_id;
use weir_store::model::{IdentityKind, Priority, RecipientState, SpoolEntry, VerificationStatus};

use std::collections::HashMap;

use parking_lot::Mutex;

use super::core::Core;
use super::directory::Directory;
use super::quota_gate::QuotaGate;
use super::{AdminError, SubmitError};

/// Verification messages one account may have sent: one per this many milliseconds.
const VERIFICATION_INTERVAL_MS: i64 = 1000;
use crate::region_upper;

/// Where verification mail comes from and where its links point.
#[derive(Debug, Clone)]
pub struct VerificationMail {
    /// Sender of the verification mail.
    pub from: String,
    /// Base URL of weir's HTTP listener as recipients reach it (`https://weir.example.com`).
    pub base_url: String,
    /// Key of the link hashes.
    pub secret: Vec<u8>,
}

fn link_tag(secret: &[u8], account_id: i64, region: &str, address: &str) -> String {
    keyed_tag(secret, format!("{account_id}|{region}|{}", address.to_ascii_lowercase()).as_bytes(), 16)
}

fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Verification mail for email-address identities, when configured.
pub struct Verification {
    core: Arc<Core>,
    directory: Arc<Directory>,
    quotas: Arc<QuotaGate>,
    mail: Option<Arc<VerificationMail>>,
    /// Domain for Message-ID headers.
    id_domain: String,
    /// When each account may have its next verification message sent (Unix ms).
    next: Mutex<HashMap<i64, i64>>,
}

impl Verification {
    pub(crate) fn new(
        core: Arc<Core>,
        directory: Arc<Directory>,
        quotas: Arc<QuotaGate>,
        mail: Option<VerificationMail>,
        id_domain: String,
    ) -> Self {
        let mail = mail.map(Arc::new);
        Verification { core, directory, quotas, mail, id_domain, next: Mutex::new(HashMap::new()) }
    }

    /// Spool the verification message for `address` (a no-op when verification mail is not
    /// configured). One per second per account, as SES allows, and charged to the account's
    /// quota like any message: verification mail goes to addresses no one has vouched for.
    pub async fn send_verification(&self, account_id: i64, region: &str, address: &str) -> Result<bool, SubmitError> {
        let Some(v) = self.mail.clone() else { return Ok(false) };
        let now = self.core.now_ms();
        {
            let mut next = self.next.lock();
            let at = next.entry(account_id).or_insert(0);
            if now < *at {
                return Err(SubmitError::MaxSendRateExceeded {
                    retry_after: std::time::Duration::from_millis((*at - now) as u64),
                });
            }
            *at = now + VERIFICATION_INTERVAL_MS;
        }
        let tag = link_tag(&v.secret, account_id, region, address);
        let link = format!(
            "{}/verify?a={account_id}&r={}&i={}&t={tag}",
            v.base_url.trim_end_matches('/'),
            query_escape(region),
            query_escape(address)
        );
        let id = new_message_id(now as u64);
        let key = (account_id, region.to_string());
        let settings = self.directory.region_settings(account_id, region);
        if !settings.sending_enabled {
            return Err(SubmitError::SendingPaused);
        }
        let charge = self.quotas.decide(&key, &super::limits_of(&settings), 1, &id).await?;
        let date = chrono::DateTime::from_timestamp_millis(now).unwrap_or_default().to_rfc2822();
        let body = format!(
            "From: {from}\r\nTo: {address}\r\nSubject: Email Address Verification Request in region {reg}\r\n\
             Date: {date}\r\nMessage-ID: <{id}@{domain}>\r\nMIME-Version: 1.0\r\n\
             Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n\
             We received a request to authorize this email address for use with weir (an Amazon SES\r\n\
             compatible sending service) in region {reg}. If you requested this verification, go to\r\n\
             the following URL to confirm that you are authorized to use this email address:\r\n\r\n\
             {link}\r\n\r\nIf you did not request it, ignore this message: the address stays unverified.\r\n",
            from = v.from,
            reg = region_upper(region),
            domain = self.id_domain,
        );
        let entry = SpoolEntry {
            id,
            account_id,
            region: region.to_string(),
            created_ms: now,
            mail_from: v.from.clone(),
            configuration_set: None,
            tags_json: "[]".into(),
            source: "verification".into(),
            body: body.into_bytes(),
            recipients: vec![(address.to_string(), RecipientState::Queued)],
            quota_second: charge.second,
            quota_count: charge.count,
            quota_tat: charge.tat_after,
            priority: Priority::Transactional,
        };
        if let Err(e) = self.core.spool.enqueue(vec![entry]).await {
            self.quotas.give_back(&key, &charge).await;
            return Err(SubmitError::Storage(e));
        }
        Ok(true)
    }

    /// Follow a verification link: the identity becomes verified when the link's hash is right.
    pub async fn confirm_verification(
        &self,
        account_id: i64,
        region: &str,
        address: &str,
        tag: &str,
    ) -> Result<bool, AdminError> {
        let Some(v) = self.mail.clone() else { return Ok(false) };
        let expected = link_tag(&v.secret, account_id, region, address);
        if !tags_equal(tag, &expected) {
            return Ok(false);
        }
        match self.directory.identity(account_id, region, address) {
            Some(i) if i.kind == IdentityKind::EmailAddress => {
                self.directory.set_verification(account_id, region, &i.identity, VerificationStatus::Success).await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}
