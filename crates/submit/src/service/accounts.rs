//! Accounts and their region settings: create, look up, change.

use std::sync::Arc;

use weir_store::model::*;

use super::*;

impl Service {
    /// Create an account with fresh credentials.
    pub async fn create_account(&self, name: &str) -> Result<Arc<Account>, AdminError> {
        if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(AdminError::Invalid(format!(
                "invalid account name '{name}': use 1-64 letters, digits, '-', '_' or '.'"
            )));
        }
        let akid = format!("AKIA{}", random_string(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16));
        let secret = random_string(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", 40);
        let (n, now) = (name.to_string(), self.now_ms());
        if self.account_by_name(name).is_ok() {
            return Err(AdminError::Conflict(format!("account '{name}' already exists")));
        }
        let a = match self.new_account_id(name).await? {
            Some(id) => {
                let a = Account { id, name: n, access_key_id: akid, secret, created_ms: now };
                self.commit(cluster::Change::Account { account: a.clone() }).await?;
                a
            }
            None => {
                let a = self.accounts.create(n, akid, secret, now).await.map_err(AdminError::from_store)?;
                self.catalog.write().insert_account(a.clone());
                a
            }
        };
        tracing::info!(account = %a.name, access_key_id = %a.access_key_id, "account created");
        self.account_by_name(name)
    }

    /// Replace the settings of (account, region).
    pub async fn set_region_settings(
        &self,
        account_id: i64,
        region: &str,
        s: RegionSettings,
    ) -> Result<(), AdminError> {
        self.commit(cluster::Change::Region { account_id, region: region.to_string(), settings: s }).await
    }

    /// Change settings of (account, region) with `f`.
    pub async fn update_region_settings(
        &self,
        account_id: i64,
        region: &str,
        f: impl FnOnce(&mut RegionSettings),
    ) -> Result<RegionSettings, AdminError> {
        let mut s = self.region_settings(account_id, region);
        f(&mut s);
        self.set_region_settings(account_id, region, s.clone()).await?;
        Ok(s)
    }
}
