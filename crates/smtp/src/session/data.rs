//! DATA: the upload, and the message handed to the same send as the API's.

use smtp_proto::request::receiver::DataReceiver;
use weir_submit::{Content, Outgoing, SubmitError};

use super::{Session, State};

impl Session {
    pub(super) fn data_start(&mut self) {
        if self.mail_from.is_none() {
            return self.reply(503, "5.5.1", "Need MAIL command");
        }
        if self.rcpts.is_empty() {
            return self.reply(503, "5.5.1", "Need RCPT command");
        }
        if self.rcpts.len() > weir_submit::MAX_RECIPIENTS {
            self.reset_transaction();
            return self.reply(554, "5.5.3", "Transaction failed: Recipient count exceeds 50.");
        }
        self.reply(354, "", "End data with <CR><LF>.<CR><LF>");
        self.data = Vec::with_capacity(16 * 1024);
        self.state = State::Data(DataReceiver::new());
    }

    pub(super) fn submit_error(&mut self, e: SubmitError) {
        match e {
            SubmitError::MaxSendRateExceeded { .. } => {
                self.reply(454, "4.7.0", "Throttling failure: Maximum sending rate exceeded")
            }
            SubmitError::DailyQuotaExceeded { .. } => {
                self.reply(454, "4.7.0", "Throttling failure: Daily message quota exceeded")
            }
            SubmitError::MessageRejected(m) => self.reply(554, "5.7.1", &format!("Message rejected: {m}")),
            SubmitError::SendingPaused => {
                self.reply(554, "5.7.1", "Message rejected: Email sending is disabled for your account.")
            }
            SubmitError::InvalidParameter(m) => self.reply(554, "5.6.0", &format!("Transaction failed: {m}")),
            e @ (SubmitError::ConfigurationSetDoesNotExist(_) | SubmitError::ConfigurationSetSendingPaused(_)) => {
                self.reply(554, "5.7.1", &format!("Transaction failed: {e}"))
            }
            e @ (SubmitError::TemplateDoesNotExist(_)
            | SubmitError::InvalidTemplate(..)
            | SubmitError::MissingRenderingAttribute(_)
            | SubmitError::InvalidRenderingParameter(_)) => {
                self.reply(554, "5.6.0", &format!("Transaction failed: {e}"))
            }
            SubmitError::Unavailable { .. } | SubmitError::Busy(_) => {
                self.reply(454, "4.3.0", "Temporary service failure: try again later")
            }
            SubmitError::Storage(e) => {
                tracing::error!(error = %e, "spool write failed");
                self.reply(451, "4.3.0", "Temporary service failure")
            }
        }
    }

    pub(super) async fn finish_data(&mut self) {
        let data = std::mem::take(&mut self.data);
        if self.ctx.cfg.feedback {
            let rcpts = std::mem::take(&mut self.rcpts);
            self.reset_transaction();
            let targets: Vec<_> = rcpts.iter().filter_map(|r| self.ctx.svc.feedback().feedback_target(r)).collect();
            return match self.ctx.svc.feedback().ingest_feedback(&targets, &data, self.peer.ip()).await {
                Ok(_) => self.reply(250, "2.0.0", "Ok: report received"),
                Err(e) => {
                    tracing::error!(error = %e, "feedback report not recorded");
                    self.reply(451, "4.3.0", "Temporary service failure")
                }
            };
        }
        let (Some(source), Some(account)) = (self.mail_from.take(), self.sender_account()) else {
            self.reset_transaction();
            return self.reply(503, "5.5.1", "Need MAIL command");
        };
        let rcpts = std::mem::take(&mut self.rcpts);
        self.reset_transaction();
        let svc = &self.ctx.svc;
        let mut out = Outgoing::new(&self.ctx.cfg.region, "smtp", usize::MAX, Content::Raw(data));
        out.source = Some(source.addr.clone());
        out.to = rcpts;
        match svc.sending().send(&account, out).await {
            Ok(id) => self.reply(250, "2.0.0", &format!("Ok {id}")),
            Err(e) => self.submit_error(e),
        }
    }
}
