//! The operator's queue: listing, summary, retry, hold, release, delete.

use weir_store::spool::{QueueAction, QueueFilter, QueueRow, SummaryRow};

use super::*;

impl Service {
    /// Recipients in the spool matching `f` (the operator's queue listing), at most `limit`.
    pub fn queue_rows(&self, f: &QueueFilter, limit: usize) -> Result<Vec<QueueRow>, AdminError> {
        Ok(self.core.spool.rows(f, self.core.now_ms(), limit)?)
    }

    /// What is waiting in the spool, by state and lane.
    pub fn queue_summary(&self) -> Result<Vec<SummaryRow>, AdminError> {
        Ok(self.core.spool.summary()?)
    }

    /// Retry now, hold or release the recipients `f` selects; returns how many changed.
    pub async fn queue_action(&self, action: QueueAction, f: QueueFilter) -> Result<usize, AdminError> {
        Ok(self.core.spool.apply(action, f, self.core.now_ms()).await?)
    }

    /// Take the queued or held recipients `f` selects out of the queue as bounced (the operator
    /// deleted them), each with a Bounce event; returns how many.
    pub async fn queue_delete(&self, f: QueueFilter) -> Result<usize, AdminError> {
        const REPLY: &str = "554 5.0.0 Deleted from the queue by the operator";
        let now = self.core.now_ms();
        let rows = self.core.spool.bounce(f, now, REPLY).await?;
        for r in &rows {
            tracing::info!(message_id = %r.message_id, recipient = %r.address, "deleted from the queue by the operator");
            if let Some(ev) = &self.core.events {
                let mail = weir_store::events::MailInfo {
                    message_id: r.message_id.clone(),
                    source: r.mail_from.clone(),
                    timestamp_ms: r.created_ms,
                    account: r.account.clone(),
                    region: r.region.clone(),
                    configuration_set: r.configuration_set.clone(),
                };
                let f = weir_store::events::Failure {
                    kind: "Permanent",
                    subtype: "General",
                    status: "5.0.0",
                    diagnostic: "smtp; 554 5.0.0 Deleted from the queue by the operator",
                };
                ev.bounce(&mail, now, &r.address, &f);
            }
        }
        Ok(rows.len())
    }
}
