//! A node applying a change of the catalog that another node made (read from the catalog
//! stream): stored here, then mirrored in memory.

use weir_store::StoreError;

use super::*;

impl Service {
    /// Store another node's `change` here, then mirror it in memory.
    pub(super) async fn apply(&self, change: Change) -> Result<(), StoreError> {
        match change {
            Change::Doc { account_id, region, kind, name, doc, created_ms } => {
                self.core.documents.replace((account_id, &region, &kind), &name, doc.clone(), created_ms).await?;
                self.refresh_mirror(account_id, &region, &kind, &name, doc.as_deref());
            }
            Change::Dkim { account_id, region, domain, record } => {
                self.dkim.apply(account_id, region, domain, record).await?;
            }
            Change::MailFrom { account_id, region, identity, record } => {
                self.mail_from.apply(account_id, region, identity, record).await?;
            }
            Change::NodeForgotten { node } => shared_forget(self, node),
            Change::DocsCleared { account_id, region, kind } => {
                self.core.documents.delete_kind((account_id, &region, &kind)).await?;
            }
            other => {
                self.directory.apply(other).await?;
            }
        }
        Ok(())
    }

    /// The in-memory copies of configuration sets and identity attributes follow their documents.
    pub(super) fn refresh_mirror(&self, account_id: i64, region: &str, kind: &str, name: &str, doc: Option<&str>) {
        fn parsed<T: serde::de::DeserializeOwned>(doc: Option<&str>, name: &str) -> Result<Option<T>, ()> {
            doc.map(serde_json::from_str).transpose().map_err(|e| {
                tracing::error!(error = %e, %name, "a shared document does not parse; ignored");
            })
        }
        if kind == crate::service::resources::CONFIGURATION_SET {
            if let Ok(set) = parsed(doc, name) {
                self.resources.mirror(account_id, region, name, set);
            }
        } else if kind == crate::service::tags::IDENTITY_ATTRIBUTES
            && let Ok(attrs) = parsed(doc, name)
        {
            self.identity_settings.mirror(account_id, region, name, attrs);
        }
    }
}
