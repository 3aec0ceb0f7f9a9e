//! What every part of the service shares: the store's typed handles, the clock, the event log and
//! the one replication discipline, chosen at start (embedded: changes are made here only;
//! cluster: catalog changes are published to Redis before they are made, documents after).

use std::sync::Arc;

use weir_store::events::EventLog;
use weir_store::{Accounts, Documents, Ledger, Spool};

use super::cluster::{Change, Shared, flush, publish};
use super::{AdminError, Clock};
use weir_cluster::ClusterError;

/// The handles and settings every part of the service works with.
pub(crate) struct Core {
    pub(crate) spool: Spool,
    pub(crate) accounts: Accounts,
    pub(crate) ledger: Ledger,
    pub(crate) documents: Documents,
    pub(crate) clock: Clock,
    /// Send, Reject and other SES events, if recorded.
    pub(crate) events: Option<Arc<EventLog>>,
    /// Cluster mode: the shared quotas and catalog stream (None: the embedded single node).
    pub(crate) cluster: Option<Arc<Shared>>,
}

impl Core {
    /// Current time, Unix nanoseconds.
    pub(crate) fn now_ns(&self) -> u64 {
        (self.clock)()
    }

    /// Current time, Unix milliseconds.
    pub(crate) fn now_ms(&self) -> i64 {
        (self.now_ns() / 1_000_000) as i64
    }

    /// Publish a catalog change before it is made here: a change Redis did not take is not made
    /// (but an address is always suppressed here: that only stops mail). Embedded: nothing to do.
    pub(crate) async fn publish_first(&self, change: &Change) -> Result<(), AdminError> {
        if let Some(shared) = &self.cluster
            && let Err(e) = publish(shared, change).await
        {
            if !matches!(change, Change::Suppressed { .. }) {
                return Err(AdminError::Unavailable(format!("the cluster's shared store is unavailable: {e}")));
            }
            tracing::warn!(error = %e, "suppression applied on this node only: redis unavailable");
        }
        Ok(())
    }

    /// A change made here, for the other nodes: through the outbox, in order, retried while
    /// Redis is unreachable (the change stands here meanwhile).
    pub(crate) async fn share(&self, change: Change) {
        let Some(shared) = &self.cluster else { return };
        shared.outbox.lock().await.push_back(change);
        flush(shared).await;
    }

    /// After a document was written or deleted here: the other nodes get it through the stream.
    pub(crate) async fn share_doc(&self, account_id: i64, region: &str, kind: &str, name: &str) {
        if self.cluster.is_none() {
            return;
        }
        let (doc, created_ms) = match self.documents.get((account_id, region, kind), name) {
            Ok(Some(d)) => (Some(d.doc), d.created_ms),
            Ok(None) => (None, 0),
            Err(e) => {
                tracing::error!(error = %e, %kind, %name, "could not read a document to share it");
                return;
            }
        };
        let (region, kind, name) = (region.to_string(), kind.to_string(), name.to_string());
        self.share(Change::Doc { account_id, region, kind, name, doc, created_ms }).await;
    }

    /// After every document of a kind was deleted here (see [`Core::share_doc`]).
    pub(crate) async fn share_cleared(&self, account_id: i64, region: &str, kind: &str) {
        self.share(Change::DocsCleared { account_id, region: region.to_string(), kind: kind.to_string() }).await;
    }

    /// A new account's row id: the store's own in embedded mode (None), the shared sequence's
    /// in a cluster, with the name claimed cluster-wide.
    pub(crate) async fn new_account_id(&self, name: &str) -> Result<Option<i64>, AdminError> {
        let Some(shared) = &self.cluster else { return Ok(None) };
        let down = |e: ClusterError| AdminError::Unavailable(format!("the cluster's shared store is unavailable: {e}"));
        let floor = self.accounts.max_id()?;
        let id = shared.log.next_account_id(floor).await.map_err(down)?;
        if !shared.log.claim_account_name(name, id).await.map_err(down)? {
            return Err(AdminError::Conflict(format!("account '{name}' already exists")));
        }
        Ok(Some(id))
    }
}
