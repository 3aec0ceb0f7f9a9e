//! Rows as Rust types.

pub use crate::resources::{Doc, Put};

/// A kind stored as text: its names, every value, and its SQLite conversions, where an unknown
/// stored name is an error, never a guess.
macro_rules! stored_as_text {
    ($t:ident, $what:literal, [$($v:ident => $name:literal),+ $(,)?]) => {
        impl $t {
            /// Every value.
            pub const ALL: &'static [$t] = &[$($t::$v),+];

            /// Its name (as stored, and as SES writes it).
            pub fn as_str(self) -> &'static str {
                match self {
                    $($t::$v => $name,)+
                }
            }

            /// The value a name names.
            pub fn parse(s: &str) -> Option<$t> {
                $t::ALL.iter().copied().find(|v| v.as_str() == s)
            }
        }

        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl rusqlite::types::FromSql for $t {
            fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                let s = v.as_str()?;
                $t::parse(s).ok_or_else(|| rusqlite::types::FromSqlError::Other(format!("unknown {} {s:?}", $what).into()))
            }
        }

        impl rusqlite::types::ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(self.as_str().into())
            }
        }
    };
}

stored_as_text!(Enforcement, "enforcement status", [Healthy => "HEALTHY", Probation => "PROBATION", Shutdown => "SHUTDOWN"]);
stored_as_text!(SuppressionReason, "suppression reason", [Bounce => "BOUNCE", Complaint => "COMPLAINT"]);
stored_as_text!(DnsStatus, "DNS check status", [
    Pending => "PENDING",
    Success => "SUCCESS",
    Failed => "FAILED",
    TemporaryFailure => "TEMPORARY_FAILURE",
    NotStarted => "NOT_STARTED",
]);
stored_as_text!(DkimOrigin, "DKIM origin", [AwsSes => "AWS_SES", External => "EXTERNAL"]);
stored_as_text!(MailFromBehavior, "MAIL FROM behaviour", [UseDefaultValue => "USE_DEFAULT_VALUE", RejectMessage => "REJECT_MESSAGE"]);
stored_as_text!(RecipientState, "recipient state", [
    Queued => "queued",
    Held => "held",
    Picked => "picked",
    Sending => "sending",
    Delivered => "delivered",
    Bounced => "bounced",
    Expired => "expired",
    Suppressed => "suppressed",
]);
stored_as_text!(AttemptOutcome, "attempt outcome", [
    Delivered => "delivered",
    Deferred => "deferred",
    Bounced => "bounced",
    Expired => "expired",
]);

/// An account and its long-term credentials.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Account {
    /// Row id.
    pub id: i64,
    /// Operator-chosen unique name.
    pub name: String,
    /// `AKIA…` access key id (also the SMTP username).
    pub access_key_id: String,
    /// Secret access key.
    pub secret: String,
    /// Creation time, Unix milliseconds.
    pub created_ms: i64,
}

/// Sending settings of one (account, region).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RegionSettings {
    /// `Max24HourSend`, -1 for unlimited.
    pub max_24h: i64,
    /// `MaxSendRate` per second, -1 for unlimited.
    pub max_rate: f64,
    /// Burst capacity in seconds of rate.
    pub burst_seconds: f64,
    /// Out of the sandbox.
    pub production: bool,
    /// UpdateAccountSendingEnabled / PutAccountSendingAttributes.
    pub sending_enabled: bool,
    /// Reasons that add addresses to the suppression list automatically.
    pub suppressed_reasons: Vec<SuppressionReason>,
    /// Reputation enforcement, as SES reports it.
    pub enforcement: Enforcement,
    /// When the operator last set the enforcement status (Unix ms): sending before it no
    /// longer counts toward the rates.
    pub enforcement_reset_ms: i64,
}

/// Why an address is on an account's suppression list (SES's `SuppressionListReason`), and the
/// reasons an account or configuration set suppresses for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SuppressionReason {
    /// A hard bounce.
    Bounce,
    /// A complaint.
    Complaint,
}

/// What DNS last showed for a domain's records, as SES names it (`DkimStatus`,
/// `MailFromDomainStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DnsStatus {
    /// Not seen yet.
    Pending,
    /// Every record published.
    Success,
    /// Missing for too long.
    Failed,
    /// Missing after a success, or DNS did not answer.
    TemporaryFailure,
    /// Never started (no DKIM for the domain).
    NotStarted,
}

/// Where a domain's DKIM keys come from (SES's `DkimSigningAttributesOrigin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DkimOrigin {
    /// Keys weir generated (Easy DKIM).
    AwsSes,
    /// The customer's key (BYODKIM).
    External,
}

/// What a send from an identity does while its MAIL FROM domain's MX is not in DNS (SES's
/// `BehaviorOnMxFailure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MailFromBehavior {
    /// Mail leaves with the default return path.
    UseDefaultValue,
    /// Mail is refused.
    RejectMessage,
}

/// Reputation enforcement of an (account, region), as SES reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Enforcement {
    /// Rates under SES's review thresholds (or too little mail to judge).
    Healthy,
    /// Under review: a bounce or complaint rate over SES's review threshold.
    Probation,
    /// Sending paused until the operator lifts it.
    Shutdown,
}

impl RegionSettings {
    /// Whether it may send now: the account's own switch on, and no reputation shutdown.
    pub fn may_send(&self) -> bool {
        self.sending_enabled && self.enforcement != Enforcement::Shutdown
    }

    /// The SES sandbox defaults.
    pub fn sandbox() -> Self {
        RegionSettings {
            max_24h: 200,
            max_rate: 1.0,
            burst_seconds: 1.0,
            production: false,
            sending_enabled: true,
            suppressed_reasons: SuppressionReason::ALL.to_vec(),
            enforcement: Enforcement::Healthy,
            enforcement_reset_ms: 0,
        }
    }
}

/// Kind of identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum IdentityKind {
    /// A single address.
    EmailAddress,
    /// A whole domain.
    Domain,
}

impl IdentityKind {
    /// The v1 `IdentityType` value.
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityKind::EmailAddress => "EmailAddress",
            IdentityKind::Domain => "Domain",
        }
    }

    /// Parse the stored value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "EmailAddress" => Some(IdentityKind::EmailAddress),
            "Domain" => Some(IdentityKind::Domain),
            _ => None,
        }
    }
}

/// Verification status (v1 spelling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum VerificationStatus {
    /// Created through the API; waits for verification.
    Pending,
    /// Verified (by the operator).
    Success,
    /// Verification failed.
    Failed,
}

impl VerificationStatus {
    /// The v1 value.
    pub fn as_str(self) -> &'static str {
        match self {
            VerificationStatus::Pending => "Pending",
            VerificationStatus::Success => "Success",
            VerificationStatus::Failed => "Failed",
        }
    }

    /// Parse the stored value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Pending" => Some(VerificationStatus::Pending),
            "Success" => Some(VerificationStatus::Success),
            "Failed" => Some(VerificationStatus::Failed),
            _ => None,
        }
    }
}

/// A sending identity of one (account, region).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    /// The address or domain, lower-cased.
    pub identity: String,
    /// Address or domain.
    pub kind: IdentityKind,
    /// Verification status.
    pub status: VerificationStatus,
    /// Domain verification token.
    pub token: String,
    /// Creation time, Unix milliseconds.
    pub created_ms: i64,
}

/// An address on an account's suppression list.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Suppressed {
    /// The address, lower-cased.
    pub address: String,
    /// `BOUNCE` or `COMPLAINT`.
    pub reason: SuppressionReason,
    /// Last update, Unix milliseconds.
    pub updated_ms: i64,
    /// Message that caused it, if any.
    pub message_id: Option<String>,
}

/// Where a spooled recipient is on its way. A recipient is spooled `Queued` (or `Suppressed`,
/// never to be delivered); the delivery engine `Picked` it into memory, marks it `Sending`
/// while a transaction carries it, and records `Delivered`, `Bounced`, `Expired` or `Queued`
/// again (a retry). An operator may put a queued one on `Held` and release it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecipientState {
    /// Waiting for delivery (first try or a retry).
    Queued,
    /// Held by an operator: not tried until released.
    Held,
    /// Taken into the delivery engine's memory; nothing sent yet.
    Picked,
    /// In a transaction right now (after a crash: possibly delivered).
    Sending,
    /// The receiver took it.
    Delivered,
    /// Refused for good (or bounced by an operator).
    Bounced,
    /// Its retry window ended before a receiver took it.
    Expired,
    /// On the suppression list: accepted, never delivered.
    Suppressed,
}

/// Which mail goes first when a provider slows weir down: transactional mail (the default)
/// before bulk (mail of a configuration set named as bulk).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Sent first; goes on while a lane holds bulk back.
    Transactional,
    /// Waits while a lane is paused or in an incident.
    Bulk,
}

impl Priority {
    /// Stored value (the due index orders by it: transactional first).
    fn stored(self) -> i64 {
        match self {
            Priority::Transactional => 0,
            Priority::Bulk => 1,
        }
    }
}

impl rusqlite::types::FromSql for Priority {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        match v.as_i64()? {
            0 => Ok(Priority::Transactional),
            1 => Ok(Priority::Bulk),
            n => Err(rusqlite::types::FromSqlError::OutOfRange(n)),
        }
    }
}

impl rusqlite::types::ToSql for Priority {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.stored().into())
    }
}

/// What one delivery attempt came to, as the delivery totals count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttemptOutcome {
    /// The receiver took it.
    Delivered,
    /// Not now: the recipient is queued again.
    Deferred,
    /// Refused for good.
    Bounced,
    /// Deferred once too often: the retry window is over.
    Expired,
}

/// An accepted message on its way into the spool, with the quota charge stored beside it.
#[derive(Debug, Clone)]
pub struct SpoolEntry {
    /// MessageId returned to the client.
    pub id: String,
    /// Owning account.
    pub account_id: i64,
    /// SES region.
    pub region: String,
    /// Acceptance time, Unix milliseconds.
    pub created_ms: i64,
    /// Envelope sender.
    pub mail_from: String,
    /// Configuration set named by the request, if any.
    pub configuration_set: Option<String>,
    /// Message tags as a JSON array of {Name, Value}.
    pub tags_json: String,
    /// Which front door accepted it (`api-v1`, `api-v2`, `smtp`).
    pub source: String,
    /// The MIME message.
    pub body: Vec<u8>,
    /// Recipients and their initial state.
    pub recipients: Vec<(String, RecipientState)>,
    /// The one-second bucket charged and how many recipients.
    pub quota_second: u64,
    /// Recipients charged.
    pub quota_count: u32,
    /// Rate bucket state after the charge.
    pub quota_tat: u64,
    /// Delivery priority.
    pub priority: Priority,
}

/// One 15-minute GetSendStatistics data point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SendDataPoint {
    /// Bucket start, Unix seconds.
    pub bucket: i64,
    /// Recipients accepted for delivery.
    pub delivery_attempts: i64,
    /// Hard bounces.
    pub bounces: i64,
    /// Complaints.
    pub complaints: i64,
    /// Send requests rejected (unverified identities, sandbox).
    pub rejects: i64,
}

impl RecipientState {
    /// No further attempt will be made.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RecipientState::Delivered | RecipientState::Bounced | RecipientState::Expired | RecipientState::Suppressed
        )
    }
}

impl AttemptOutcome {
    /// The outcome of an attempt that left its recipient in `state` (queued again: deferred).
    pub fn of(state: RecipientState) -> AttemptOutcome {
        match state {
            RecipientState::Delivered => AttemptOutcome::Delivered,
            RecipientState::Bounced => AttemptOutcome::Bounced,
            RecipientState::Expired => AttemptOutcome::Expired,
            _ => AttemptOutcome::Deferred,
        }
    }
}

/// A domain's DKIM settings and signing keys.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DkimRecord {
    /// The domain, lower-cased.
    pub identity: String,
    /// `SigningEnabled`.
    pub enabled: bool,
    /// `AWS_SES` (keys weir generated, Easy DKIM) or `EXTERNAL` (BYODKIM).
    pub origin: DkimOrigin,
    /// SES's `DkimStatus`: `PENDING`, `SUCCESS`, `FAILED`, `TEMPORARY_FAILURE`, `NOT_STARTED`.
    pub status: DnsStatus,
    /// Selectors (SES's tokens), each with its private key (DER); the first signs.
    pub keys: Vec<(String, Vec<u8>)>,
    /// Length of the keys in use (`RSA_2048_BIT`, …).
    pub key_spec: String,
    /// Length of the next keys generated.
    pub next_key_spec: String,
    /// When the keys were generated or supplied, Unix milliseconds.
    pub generated_ms: i64,
    /// When DNS last showed every record, Unix milliseconds (0: never).
    pub last_success_ms: i64,
    /// The next key (selector, DER), waiting for its record to appear in DNS before it signs.
    pub pending: Option<(String, Vec<u8>)>,
}

/// An identity's MAIL FROM domain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MailFromRecord {
    /// The identity (address or domain), lower-cased.
    pub identity: String,
    /// The MAIL FROM domain, a subdomain of the identity's domain.
    pub domain: String,
    /// SES's `BehaviorOnMxFailure`: `USE_DEFAULT_VALUE` or `REJECT_MESSAGE`.
    pub behavior: MailFromBehavior,
    /// `PENDING`, `SUCCESS`, `FAILED`, `TEMPORARY_FAILURE`.
    pub status: DnsStatus,
    /// When it was set, Unix milliseconds.
    pub set_ms: i64,
    /// When DNS last showed the MX record, Unix milliseconds (0: never).
    pub last_success_ms: i64,
}
