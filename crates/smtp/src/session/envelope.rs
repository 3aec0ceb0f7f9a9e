//! The envelope: MAIL FROM (checked before any body is sent) and RCPT TO.

use weir_mail::address::{Mailbox, parse_mailbox};

use super::Session;

impl Session {
    pub(super) async fn mail(&mut self, address: String, size: usize) {
        if self.helo.is_none() {
            return self.reply(503, "5.5.1", "Send EHLO first");
        }
        if self.mail_from.is_some() {
            return self.reply(503, "5.5.1", "Sender already specified");
        }
        if self.ctx.cfg.feedback {
            // Reports come from anyone, usually with the null sender `<>`: who sent it does not
            // matter, only which return path it is for (checked at RCPT).
            if size > self.ctx.cfg.max_message_bytes {
                return self.reply(552, "5.3.4", "Message is too long.");
            }
            if !self.ctx.svc.feedback().feedback_admit(self.peer.ip()) {
                return self.reply(450, "4.7.1", "Too many reports from this address; try again later");
            }
            let addr = if address.is_empty() { "MAILER-DAEMON".to_string() } else { address };
            self.mail_from = Some(Mailbox { name: None, addr });
            return self.reply(250, "2.1.0", "Ok");
        }
        let Some(account) = self.sender_account() else {
            return self.reply(530, "5.7.0", "Authentication required");
        };
        let source = match parse_mailbox(&address) {
            Ok(m) if !address.is_empty() => m,
            _ => return self.reply(553, "5.1.7", &format!("<{address}> Invalid email address")),
        };
        if size > self.ctx.cfg.max_message_bytes {
            return self.reply(552, "5.3.4", "Message is too long.");
        }
        if let Err(e) = self.ctx.svc.sending().precheck(&account, &self.ctx.cfg.region, &source).await {
            return self.submit_error(e);
        }
        self.mail_from = Some(source);
        self.reply(250, "2.1.0", "Ok");
    }

    pub(super) fn rcpt(&mut self, address: String) {
        if self.mail_from.is_none() {
            return self.reply(503, "5.5.1", "Need MAIL command");
        }
        if parse_mailbox(&address).is_err() {
            return self.reply(553, "5.1.3", &format!("<{address}> address unknown"));
        }
        if self.ctx.cfg.feedback && self.ctx.svc.feedback().feedback_target(&address).is_none() {
            return self.reply(
                550,
                "5.1.1",
                &format!("<{address}> no such return path here (this server relays nothing)"),
            );
        }
        if self.rcpts.len() >= self.ctx.cfg.max_rcpt_commands {
            return self.reply(452, "4.5.3", "Too many recipients");
        }
        self.rcpts.push(address);
        self.reply(250, "2.1.5", "Ok");
    }
}
