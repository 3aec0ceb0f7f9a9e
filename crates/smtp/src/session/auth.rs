//! AUTH PLAIN and LOGIN with SES SMTP credentials, and the trusted networks that send as one
//! account without AUTH.

use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use smtp_proto::request::receiver::LineReceiver;
use smtp_proto::{AUTH_LOGIN, AUTH_PLAIN};
use weir_store::model::Account;

use super::{Session, State};

impl Session {
    pub(super) async fn auth_start(&mut self, mechanism: u64, initial: String) {
        if self.helo.is_none() {
            return self.reply(503, "5.5.1", "Send EHLO first");
        }
        if self.account.is_some() {
            return self.reply(503, "5.5.1", "Already authenticated");
        }
        if self.mail_from.is_some() {
            return self.reply(503, "5.5.1", "AUTH not allowed during a mail transaction");
        }
        if !self.tls && !self.ctx.cfg.allow_plaintext_auth {
            return self.reply(538, "5.7.11", "Encryption required for requested authentication mechanism");
        }
        if self.ctx.guard.locked_out(self.peer.ip(), Instant::now()) {
            return self.reply(454, "4.7.0", "Temporary authentication failure");
        }
        match mechanism {
            AUTH_PLAIN if initial.is_empty() => {
                self.reply(334, "", "");
                self.state = State::AuthPlain(LineReceiver::new(()));
            }
            AUTH_PLAIN => self.auth_plain(&initial).await,
            AUTH_LOGIN if initial.is_empty() => {
                self.reply(334, "", "VXNlcm5hbWU6");
                self.state = State::AuthLoginUser(LineReceiver::new(()));
            }
            AUTH_LOGIN => match decode(&initial) {
                Some(user) => {
                    self.reply(334, "", "UGFzc3dvcmQ6");
                    self.state = State::AuthLoginPass(LineReceiver::new(()), user);
                }
                None => self.reply(501, "5.5.2", "Invalid base64 data"),
            },
            _ => self.reply(504, "5.5.4", "Unrecognized authentication type"),
        }
    }

    pub(super) async fn auth_plain(&mut self, b64: &str) {
        let Some(decoded) = decode(b64) else {
            return self.reply(501, "5.5.2", "Invalid base64 data");
        };
        let mut parts = decoded.split('\0');
        let (_authzid, user, pass) = (parts.next(), parts.next(), parts.next());
        match (user, pass, parts.next()) {
            (Some(u), Some(p), None) => {
                let (u, p) = (u.to_string(), p.to_string());
                self.check_login(&u, &p).await
            }
            _ => self.reply(501, "5.5.2", "Malformed AUTH PLAIN response"),
        }
    }

    pub(super) async fn check_login(&mut self, user: &str, pass: &str) {
        match self.ctx.svc.directory().smtp_login(user, pass, &self.ctx.cfg.region) {
            Some(account) => {
                self.ctx.guard.auth_succeeded(self.peer.ip());
                tracing::debug!(peer = %self.peer, account = %account.name, "SMTP AUTH ok");
                self.account = Some(account);
                self.reply(235, "2.7.0", "Authentication successful");
            }
            None => {
                let cfg = &self.ctx.cfg;
                self.ctx.guard.auth_failed(self.peer.ip(), Instant::now(), cfg.auth_max_failures, cfg.auth_lockout);
                self.ctx.metrics.smtp_auth_failure();
                tokio::time::sleep(cfg.auth_failure_delay).await;
                // The name is the client's: escaped and cut, it cannot forge or flood log lines.
                let shown: String = user.chars().take(64).collect();
                tracing::info!(peer = %self.peer, user = %shown.escape_debug(), "SMTP AUTH failed");
                self.reply(535, "5.7.8", "Authentication Credentials Invalid");
            }
        }
    }

    /// The account this session sends as: its AUTH, or the trusted network's account.
    pub(super) fn sender_account(&self) -> Option<Arc<Account>> {
        if let Some(a) = &self.account {
            return Some(a.clone());
        }
        if self.ctx.cfg.is_trusted(self.peer.ip()) {
            let name = self.ctx.cfg.trusted_account.as_deref()?;
            return self.ctx.svc.directory().account_by_name(name).ok();
        }
        None
    }
}

pub(super) fn decode(b64: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()?;
    String::from_utf8(bytes).ok()
}
