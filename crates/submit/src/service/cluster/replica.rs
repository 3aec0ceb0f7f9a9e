//! A node applying a change of the catalog that another node made (read from the catalog
//! stream): stored here, then mirrored in memory.

use weir_store::StoreError;

use super::*;

impl Service {
    /// Store another node's `change` here, then mirror it in memory.
    pub(super) async fn apply(&self, change: Change) -> Result<(), StoreError> {
        match change {
            Change::Account { account } => {
                self.accounts.put(account.clone()).await?;
                let mut cat = self.catalog.write();
                // A re-published account may come back with other keys: drop the old look-ups.
                if let Some(old) = cat.by_id.get(&account.id).cloned() {
                    cat.by_key.remove(&old.access_key_id);
                    cat.by_name.remove(&old.name);
                }
                cat.insert_account(account);
            }
            Change::Region { account_id, region, settings } => {
                self.accounts.put_region(account_id, region.clone(), settings.clone()).await?;
                self.catalog.write().regions.insert((account_id, region), settings);
            }
            Change::Identity { account_id, region, identity } => {
                self.accounts.put_identity(account_id, region.clone(), identity.clone()).await?;
                let name = identity.identity.clone();
                self.catalog.write().identities.entry((account_id, region)).or_default().insert(name, identity);
            }
            Change::IdentityDeleted { account_id, region, identity } => {
                self.accounts.delete_identity(account_id, region.clone(), identity.clone()).await?;
                if let Some(m) = self.catalog.write().identities.get_mut(&(account_id, region)) {
                    m.remove(&identity);
                }
            }
            Change::Suppressed { account_id, region, entry } => {
                self.accounts.put_suppressed(account_id, region.clone(), entry.clone()).await?;
                let address = entry.address.clone();
                self.catalog.write().suppression.entry((account_id, region)).or_default().insert(address, entry);
            }
            Change::Doc { account_id, region, kind, name, doc, created_ms } => {
                self.documents.replace((account_id, &region, &kind), &name, doc.clone(), created_ms).await?;
                self.refresh_mirror(account_id, &region, &kind, &name, doc.as_deref());
            }
            Change::Dkim { account_id, region, domain, record } => {
                match record.clone() {
                    Some(rec) => self.accounts.put_dkim(account_id, region.clone(), rec).await?,
                    None => self.accounts.delete_dkim(account_id, region.clone(), domain.clone()).await?,
                }
                set_or_remove(
                    &mut self.dkim.write(),
                    ((account_id, region), domain),
                    record.map(crate::service::dkim::DkimEntry::new),
                );
            }
            Change::MailFrom { account_id, region, identity, record } => {
                match record.clone() {
                    Some(rec) => self.accounts.put_mail_from(account_id, region.clone(), rec).await?,
                    None => self.accounts.delete_mail_from(account_id, region.clone(), identity.clone()).await?,
                }
                set_or_remove(&mut self.mail_from.write(), ((account_id, region), identity), record);
            }
            Change::NodeForgotten { node } => shared_forget(self, node),
            Change::DocsCleared { account_id, region, kind } => {
                self.documents.delete_kind((account_id, &region, &kind)).await?;
            }
            Change::Unsuppressed { account_id, region, address } => {
                self.accounts.delete_suppressed(account_id, region.clone(), address.clone()).await?;
                if let Some(m) = self.catalog.write().suppression.get_mut(&(account_id, region)) {
                    m.remove(&address);
                }
            }
        }
        Ok(())
    }

    /// The in-memory copies of configuration sets and identity attributes follow their documents.
    pub(super) fn refresh_mirror(&self, account_id: i64, region: &str, kind: &str, name: &str, doc: Option<&str>) {
        let key = ((account_id, region.to_string()), name.to_string());
        fn parsed<T: serde::de::DeserializeOwned>(doc: Option<&str>, name: &str) -> Result<Option<T>, ()> {
            doc.map(serde_json::from_str).transpose().map_err(|e| {
                tracing::error!(error = %e, %name, "a shared document does not parse; ignored");
            })
        }
        if kind == crate::service::resources::CONFIGURATION_SET {
            if let Ok(set) = parsed(doc, name) {
                set_or_remove(&mut self.configuration_sets.write(), key, set);
            }
        } else if kind == crate::service::tags::IDENTITY_ATTRIBUTES
            && let Ok(attrs) = parsed(doc, name)
        {
            set_or_remove(&mut self.identity_attributes.write(), key, attrs);
        }
    }
}
