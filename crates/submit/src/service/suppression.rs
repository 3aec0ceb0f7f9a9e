//! The account-level suppression list.

use weir_mail::address::normalize;
use weir_store::model::*;

use super::*;

impl Service {
    /// Add an address to the suppression list.
    pub async fn put_suppressed(
        &self,
        account_id: i64,
        region: &str,
        address: &str,
        reason: &str,
        message_id: Option<String>,
    ) -> Result<Suppressed, AdminError> {
        let s = Suppressed {
            address: normalize(address),
            reason: reason.to_string(),
            updated_ms: self.now_ms(),
            message_id,
        };
        self.commit(cluster::Change::Suppressed { account_id, region: region.to_string(), entry: s.clone() }).await?;
        Ok(s)
    }

    /// One suppressed address.
    pub fn suppressed(&self, account_id: i64, region: &str, address: &str) -> Option<Suppressed> {
        self.catalog
            .read()
            .suppression
            .get(&(account_id, region.to_string()))
            .and_then(|m| m.get(&normalize(address)).cloned())
    }

    /// The whole suppression list of (account, region), by address.
    pub fn suppression_list(&self, account_id: i64, region: &str) -> Vec<Suppressed> {
        self.catalog
            .read()
            .suppression
            .get(&(account_id, region.to_string()))
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Remove an address from the suppression list; `NotFound` if absent.
    pub async fn delete_suppressed(&self, account_id: i64, region: &str, address: &str) -> Result<(), AdminError> {
        let a = normalize(address);
        let existed = self.suppressed(account_id, region, &a).is_some();
        if existed {
            self.commit(cluster::Change::Unsuppressed { account_id, region: region.to_string(), address: a }).await?;
        }
        if existed {
            Ok(())
        } else {
            Err(AdminError::NotFound(format!("Email address {address} does not exist on your suppression list.")))
        }
    }
}
