//! `weir.toml`: every setting has a default, so no file is needed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the database, admin token and server file live.
    pub data_dir: PathBuf,
    /// HTTP API settings.
    pub http: HttpConfig,
    /// Settings a new (account, region) starts with (the SES sandbox by default).
    pub defaults: RegionDefaults,
    /// Spool writer settings.
    pub spool: SpoolConfig,
    /// Message settings.
    pub message: MessageConfig,
    /// SMTP submission listeners.
    pub smtp: SmtpSection,
    /// Delivery to the recipients' servers.
    pub delivery: DeliverySection,
    /// What is kept, and for how long.
    pub retention: RetentionConfig,
    /// Reputation enforcement (SES's bounce and complaint thresholds).
    pub reputation: ReputationConfig,
    /// DKIM signing and its DNS checks.
    pub dkim: DkimConfig,
    /// Return paths and the listener for the bounces and complaints that come back to them.
    pub feedback: FeedbackConfig,
    /// Verification mail for email-address identities.
    pub verification: VerificationConfig,
    /// Where configuration sets' event destinations publish.
    pub events: EventsConfig,
    /// Cluster mode: several nodes sharing quotas and catalog through Redis/Valkey.
    pub cluster: ClusterSection,
    /// The regions weir answers for; requests signed for any other are refused.
    pub regions: Vec<String>,
}

/// `[cluster]`. Without `redis`, the node is the embedded single node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSection {
    /// `redis://host:port/db` of Redis 7 or Valkey.
    pub redis: Option<String>,
    /// This node's name, unique in the cluster. Default: one made at first start and kept in
    /// the data directory.
    pub node: Option<String>,
    /// Bound on each Redis command, milliseconds; beyond it sends fail closed.
    pub timeout_ms: u64,
    /// How long an emptied Redis waits for a known node that does not re-seed it, seconds.
    pub reseed_wait_seconds: u64,
    /// A file holding the cluster key (`weir cluster keygen`), the same on every node, readable
    /// by weir's user only: it seals the catalog in Redis and keys links and return paths.
    pub key_file: Option<std::path::PathBuf>,
    /// PEM certificates to trust for `rediss://` (default: the system's).
    pub ca_file: Option<std::path::PathBuf>,
    /// Accept a Redis URL without a password (a Redis no other user or host can reach).
    pub allow_no_password: bool,
}

impl Default for ClusterSection {
    fn default() -> Self {
        ClusterSection {
            redis: None,
            node: None,
            timeout_ms: 500,
            reseed_wait_seconds: 30,
            key_file: None,
            ca_file: None,
            allow_no_password: false,
        }
    }
}

/// `[events]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// SNS topics that event destinations may name, each an HTTP(S) endpoint.
    pub topics: Vec<TopicConfig>,
    /// How long an event is retried while its endpoint fails, seconds.
    pub retry_for_seconds: u64,
    /// Events held per endpoint while it is slow or down; more are dropped (and counted).
    pub queue: usize,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig { topics: vec![], retry_for_seconds: 3600, queue: 100_000 }
    }
}

/// `[[events.topics]]`: one SNS topic ARN and the endpoint that receives its events.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    /// The ARN applications name in `SnsDestination.TopicArn`.
    pub arn: String,
    /// `http://` or `https://` URL.
    pub url: String,
    /// `ses` (SES event JSON), `sns` (in an SNS Notification envelope) or `generic`.
    #[serde(default = "sns_format")]
    pub format: weir_delivery::webhooks::Format,
    /// Key of the `X-Weir-Signature` HMAC-SHA256 header.
    pub secret: Option<String>,
    /// PEM file of CA certificates trusted for this endpoint, besides the public roots.
    pub ca_file: Option<PathBuf>,
    /// The accounts (by name) whose configuration sets may publish to this topic; `["*"]` for
    /// any. Its endpoint receives their events, signed with its secret.
    #[serde(default)]
    pub accounts: Vec<String>,
}

fn sns_format() -> weir_delivery::webhooks::Format {
    weir_delivery::webhooks::Format::Sns
}

/// `[verification]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerificationConfig {
    /// Sender of verification mail. Unset: none is sent, and addresses stay Pending until the
    /// operator verifies them.
    pub from: Option<String>,
    /// Base of the links in it, as recipients reach weir's HTTP listener
    /// (`https://weir.example.com`). Default: the listener's own address.
    pub public_url: Option<String>,
}

/// `[feedback]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedbackConfig {
    /// Domain of the per-message return paths (its MX must point at `listen`). Unset: the
    /// envelope sender stays the message's Source, and nothing comes back to weir.
    pub return_path_domain: Option<String>,
    /// Where the feedback listener takes DSNs and ARF reports (port 25 in production).
    pub listen: Option<std::net::SocketAddr>,
    /// The host name of that listener: a custom MAIL FROM domain is set up (SUCCESS) once its MX
    /// record points here.
    pub mx_host: Option<String>,
    /// Networks of the mailbox providers' feedback loops (CIDR). A complaint to `fbl@` from one of
    /// them may name its message by Message-ID and its recipient by Original-Rcpt-To; from
    /// anywhere else a complaint counts only when it carries the recipient's own return path.
    pub loop_sources: Vec<String>,
    /// Reports taken from one address per minute; more get a temporary refusal.
    pub reports_per_minute: u32,
}

impl Default for FeedbackConfig {
    fn default() -> Self {
        FeedbackConfig {
            return_path_domain: None,
            listen: None,
            mx_host: None,
            loop_sources: vec![],
            reports_per_minute: 60,
        }
    }
}

/// `[dkim]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DkimConfig {
    /// How often each domain's DKIM records are looked up (through `delivery.dns_servers`, or
    /// the system's resolver).
    pub check_interval_seconds: u64,
    /// Records missing this long after the keys were made (or after the last success) turn
    /// the status to FAILED, as SES does after 72 hours.
    pub fail_after_seconds: u64,
}

impl Default for DkimConfig {
    fn default() -> Self {
        DkimConfig { check_interval_seconds: 300, fail_after_seconds: 72 * 3600 }
    }
}

/// `[reputation]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReputationConfig {
    /// Judge reputation at all.
    pub enabled: bool,
    /// Bounce rate that puts an account under review (PROBATION).
    pub bounce_review: f64,
    /// Bounce rate that pauses its sending (SHUTDOWN).
    pub bounce_pause: f64,
    /// Complaint rate that puts it under review.
    pub complaint_review: f64,
    /// Complaint rate that pauses its sending.
    pub complaint_pause: f64,
    /// Recipients needed in the window before rates count (a representative volume).
    pub min_volume: i64,
    /// The window rates are computed over (statistics are kept 14 days).
    pub window_seconds: i64,
    /// How often accounts are judged.
    pub interval_seconds: u64,
}

impl Default for ReputationConfig {
    fn default() -> Self {
        let t = weir_submit::reputation::Thresholds::default();
        ReputationConfig {
            enabled: true,
            bounce_review: t.bounce_review,
            bounce_pause: t.bounce_pause,
            complaint_review: t.complaint_review,
            complaint_pause: t.complaint_pause,
            min_volume: t.min_volume,
            window_seconds: 7 * 86_400,
            interval_seconds: 60,
        }
    }
}

impl ReputationConfig {
    /// The thresholds of the pure judge.
    pub fn thresholds(&self) -> weir_submit::reputation::Thresholds {
        weir_submit::reputation::Thresholds {
            bounce_review: self.bounce_review,
            bounce_pause: self.bounce_pause,
            complaint_review: self.complaint_review,
            complaint_pause: self.complaint_pause,
            min_volume: self.min_volume,
        }
    }
}

/// A listen address: `IP:port`, or `host:port` with a host name this machine resolves
/// (`localhost:8787`), IPv4 preferred.
pub fn listen_addr(s: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    let bad = || format!("'{s}' is not a listen address such as 127.0.0.1:8787 or localhost:8787");
    if !s.contains(':') {
        return Err(bad());
    }
    let addrs: Vec<SocketAddr> = s.to_socket_addrs().map_err(|_| bad())?.collect();
    addrs.iter().find(|a| a.is_ipv4()).or(addrs.first()).copied().ok_or_else(bad)
}

fn de_listen<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let s = String::deserialize(d)?;
    listen_addr(&s).map_err(serde::de::Error::custom)
}

/// `[retention]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Bodies of messages whose recipients are all final are removed this long after their
    /// last change.
    pub body_seconds: u64,
    /// Their message and recipient rows, this long after (sending statistics are kept apart,
    /// 14 days).
    pub metadata_seconds: u64,
    /// `events.jsonl` is rotated at this size ...
    pub events_max_bytes: u64,
    /// ... keeping this many rotated files.
    pub events_files: u32,
    /// How often the purge runs.
    pub interval_seconds: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            body_seconds: 3 * 86_400,
            metadata_seconds: 30 * 86_400,
            events_max_bytes: 256 << 20,
            events_files: 5,
            interval_seconds: 60,
        }
    }
}

/// `[delivery]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliverySection {
    /// Run the delivery engine.
    pub enabled: bool,
    /// Name sent in EHLO (default: this host's name).
    pub helo_name: String,
    /// Recipients in flight at most.
    pub max_in_flight: usize,
    /// How often the spool is polled for due recipients, in milliseconds.
    pub poll_interval_ms: u64,
    /// First retry delay (doubles each time up to `retry_max_seconds`).
    pub retry_first_seconds: u64,
    /// Longest retry delay.
    pub retry_max_seconds: u64,
    /// Retry window after acceptance; then the recipient expires.
    pub retry_window_seconds: u64,
    /// TCP connect timeout.
    pub connect_timeout_seconds: u64,
    /// How long to wait for a server's greeting (RFC 5321 §4.5.3.2: 5 minutes).
    pub greeting_timeout_seconds: u64,
    /// A mail server that did not answer (no connection, no greeting) is skipped this long in
    /// favour of the domain's other MX hosts.
    pub dead_host_seconds: u64,
    /// A greylisted recipient is retried after this long when the reply states no delay.
    pub greylist_retry_seconds: u64,
    /// Timeout per SMTP reply.
    pub command_timeout_seconds: u64,
    /// Opportunistic STARTTLS toward receivers.
    pub starttls: bool,
    /// Send everything to this `host:port` instead of looking up MX records.
    pub smarthost: Option<String>,
    /// Port for MX hosts (25; tests use others).
    pub mx_port: u16,
    /// Static routes: domain → `host:port`.
    pub routes: std::collections::BTreeMap<String, String>,
    /// DNS servers (`ip:port`) for MX and address look-ups instead of /etc/resolv.conf.
    pub dns_servers: Vec<std::net::SocketAddr>,
    /// Static MX records, domain → ["10 mx.example.net", …], consulted instead of DNS.
    pub mx: std::collections::BTreeMap<String, Vec<String>>,
    /// Lane limits by provider (`google`, `microsoft`, `yahoo`, `apple`, `other`) or lane key.
    pub lanes: std::collections::BTreeMap<String, weir_delivery::lane::LaneLimits>,
    /// Lane controller tuning: `decrease`, `recover_step`, `step_interval_ms`, `pause_ms`, …
    /// (each lane's rate and connections come from `[delivery.lanes]`).
    pub pacing: weir_pacing::controller::PacingConfig,
    /// Configuration sets whose mail is bulk: delivered after transactional mail.
    pub bulk_configuration_sets: Vec<String>,
    /// URLs (`http://…`) that receive every event as a JSON POST.
    pub webhooks: Vec<String>,
    /// Attempts per event and webhook.
    pub webhook_attempts: u32,
}

impl Default for DeliverySection {
    fn default() -> Self {
        DeliverySection {
            enabled: true,
            helo_name: MessageConfig::default().id_domain,
            max_in_flight: 2000,
            poll_interval_ms: 200,
            retry_first_seconds: 900,
            retry_max_seconds: 8 * 3600,
            retry_window_seconds: 48 * 3600,
            connect_timeout_seconds: 30,
            greeting_timeout_seconds: 300,
            dead_host_seconds: 300,
            greylist_retry_seconds: 300,
            command_timeout_seconds: 120,
            starttls: true,
            smarthost: None,
            mx_port: 25,
            routes: Default::default(),
            dns_servers: vec![],
            mx: Default::default(),
            lanes: Default::default(),
            pacing: Default::default(),
            bulk_configuration_sets: vec![],
            webhooks: vec![],
            webhook_attempts: 5,
        }
    }
}

/// `[smtp]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpSection {
    /// Run the SMTP listeners.
    pub enabled: bool,
    /// STARTTLS listener (SES: 25, 587, 2587).
    #[serde(deserialize_with = "de_listen")]
    pub listen: SocketAddr,
    /// Implicit-TLS listener (SES: 465, 2465).
    #[serde(deserialize_with = "de_listen")]
    pub listen_tls: SocketAddr,
    /// SES region of these listeners (quota, identities, SMTP password).
    pub region: String,
    /// Name in the greeting and EHLO reply (default: this host's name).
    pub hostname: String,
    /// PEM certificate chain; without one a self-signed certificate is made in the data dir.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Offer AUTH before STARTTLS (loopback testing only).
    pub allow_plaintext_auth: bool,
    /// Enhanced status codes in replies (SES sends none).
    pub enhanced_status_codes: bool,
    /// Idle seconds allowed between commands.
    pub idle_timeout_seconds: u64,
    /// Idle seconds allowed inside DATA.
    pub data_timeout_seconds: u64,
    /// Concurrent sessions in all.
    pub max_connections: usize,
    /// Concurrent sessions per client IP.
    pub max_connections_per_ip: usize,
    /// Delay before answering a failed AUTH, in milliseconds.
    pub auth_failure_delay_ms: u64,
    /// Failed AUTHs per IP within `auth_lockout_seconds` before a lockout of that length.
    pub auth_max_failures: u32,
    /// AUTH failure window and lockout, in seconds.
    pub auth_lockout_seconds: u64,
    /// Networks (CIDR) that may submit without AUTH as `trusted_account`; empty = none.
    pub trusted_networks: Vec<String>,
    /// The account trusted networks submit as.
    pub trusted_account: Option<String>,
}

impl Default for SmtpSection {
    fn default() -> Self {
        SmtpSection {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 2587)),
            listen_tls: SocketAddr::from(([127, 0, 0, 1], 2465)),
            region: "us-east-1".into(),
            hostname: MessageConfig::default().id_domain,
            tls_cert: None,
            tls_key: None,
            allow_plaintext_auth: false,
            enhanced_status_codes: false,
            idle_timeout_seconds: 60,
            data_timeout_seconds: 60,
            max_connections: 1000,
            max_connections_per_ip: 50,
            auth_failure_delay_ms: 1000,
            auth_max_failures: 10,
            auth_lockout_seconds: 300,
            trusted_networks: vec![],
            trusted_account: None,
        }
    }
}

/// `[http]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Listen address of the SES APIs and the admin API.
    #[serde(deserialize_with = "de_listen")]
    pub listen: SocketAddr,
    /// Largest request body read (the v2 40 MB limit after base64 and JSON needs ~56 MB).
    pub max_body_bytes: usize,
    /// Allowed SigV4 clock skew (SES: 300 s).
    pub max_skew_seconds: u64,
    /// Error code for a v2 daily-quota refusal (SES's is unverified; see docs).
    pub v2_daily_quota_error: String,
    /// Open connections in all.
    pub max_connections: usize,
    /// Open connections per client IP.
    pub max_connections_per_ip: usize,
    /// Seconds to receive a request's headers (also the longest idle time between requests).
    pub header_timeout_seconds: u64,
    /// Seconds to receive a request's whole body.
    pub body_timeout_seconds: u64,
    /// Seconds a read or write may make no progress before the connection is dropped.
    pub stall_timeout_seconds: u64,
    /// Request body bytes held by all requests at once; over it, requests get 503.
    pub max_inflight_body_bytes: usize,
    /// Seconds open connections get to finish at shutdown.
    pub shutdown_grace_seconds: u64,
}

/// `[defaults]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegionDefaults {
    /// `Max24HourSend` (-1 = unlimited).
    pub max_24h: i64,
    /// `MaxSendRate` (-1 = unlimited).
    pub max_rate: f64,
    /// Burst capacity in seconds.
    pub burst_seconds: f64,
}

/// `[spool]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Most writes per group commit.
    pub max_batch: usize,
    /// fsync every commit (turn off only for throw-away benchmarks).
    pub fsync: bool,
}

/// `[message]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MessageConfig {
    /// Domain of generated Message-ID headers (default: this host's name).
    pub id_domain: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("weir-data"),
            http: HttpConfig::default(),
            defaults: RegionDefaults::default(),
            spool: SpoolConfig::default(),
            message: MessageConfig::default(),
            retention: RetentionConfig::default(),
            reputation: ReputationConfig::default(),
            dkim: DkimConfig::default(),
            feedback: FeedbackConfig::default(),
            verification: VerificationConfig::default(),
            smtp: SmtpSection::default(),
            delivery: DeliverySection::default(),
            events: EventsConfig::default(),
            cluster: ClusterSection::default(),
            regions: weir_submit::DEFAULT_REGIONS.iter().map(|r| r.to_string()).collect(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8787)),
            max_body_bytes: 64 * 1024 * 1024,
            max_skew_seconds: 300,
            v2_daily_quota_error: "LimitExceededException".into(),
            max_connections: 2048,
            max_connections_per_ip: 256,
            header_timeout_seconds: 10,
            body_timeout_seconds: 120,
            stall_timeout_seconds: 30,
            max_inflight_body_bytes: 512 * 1024 * 1024,
            shutdown_grace_seconds: 10,
        }
    }
}

impl Default for RegionDefaults {
    fn default() -> Self {
        RegionDefaults { max_24h: 200, max_rate: 1.0, burst_seconds: 1.0 }
    }
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig { max_batch: 512, fsync: true }
    }
}

impl Default for MessageConfig {
    fn default() -> Self {
        let host =
            std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
        MessageConfig { id_domain: if host.is_empty() { "localhost".into() } else { host } }
    }
}

impl Config {
    /// Read a TOML file; unknown keys are errors.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
        let cfg: Config = toml::from_str(&text).with_context(|| format!("invalid config {}", path.display()))?;
        cfg.validate()?;
        Ok(cfg)
    }
}

/// `"10 mx.example.net"` → (10, "mx.example.net").
pub fn parse_mx(s: &str) -> Option<(u16, String)> {
    let (p, h) = s.trim().split_once(char::is_whitespace)?;
    Some((p.parse().ok()?, h.trim().to_string()))
}

mod validate;

#[cfg(test)]
mod tests;
