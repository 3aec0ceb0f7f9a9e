//! Sending identities (addresses and domains) of an account in a region.

use base64::Engine as _;
use weir_mail::address::normalize;
use weir_store::model::*;

use super::*;

impl Service {
    /// Create (or re-create) an identity. `verified` is the operator's word; API calls pass false.
    /// An existing verified identity stays verified.
    pub async fn put_identity(
        &self,
        account_id: i64,
        region: &str,
        identity: &str,
        kind: IdentityKind,
        verified: bool,
    ) -> Result<Identity, AdminError> {
        let name = normalize(identity);
        let key = (account_id, region.to_string());
        let existing = self.catalog.read().identities.get(&key).and_then(|m| m.get(&name).cloned());
        let status = match (&existing, verified) {
            (_, true) => VerificationStatus::Success,
            (Some(e), false) => e.status,
            (None, false) => VerificationStatus::Pending,
        };
        let token = existing
            .as_ref()
            .map(|e| e.token.clone())
            .unwrap_or_else(|| base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>()));
        if existing.is_none() {
            let n = self.catalog.read().identities.get(&key).map_or(0, |m| m.len());
            if n >= MAX_IDENTITIES {
                return Err(AdminError::LimitExceeded(format!(
                    "Identity {name} cannot be created: an account may have at most {MAX_IDENTITIES} identities in a region."
                )));
            }
        }
        let id = Identity {
            identity: name.clone(),
            kind,
            status,
            token,
            created_ms: existing.as_ref().map_or(self.now_ms(), |e| e.created_ms),
        };
        self.commit(cluster::Change::Identity { account_id, region: region.to_string(), identity: id.clone() }).await?;
        Ok(id)
    }

    /// Delete an identity; `NotFound` if absent.
    pub async fn delete_identity(&self, account_id: i64, region: &str, identity: &str) -> Result<(), AdminError> {
        let name = normalize(identity);
        let existed = self.identity(account_id, region, &name).is_some();
        if existed {
            let region = region.to_string();
            self.commit(cluster::Change::IdentityDeleted { account_id, region, identity: name.clone() }).await?;
        }
        self.delete_dkim(account_id, region, &name).await?;
        self.delete_identity_attributes(account_id, region, &name).await?;
        if existed { Ok(()) } else { Err(AdminError::NotFound(format!("Identity {identity} does not exist."))) }
    }

    /// Domain identities waiting for their `_amazonses` record: (account id, region, domain,
    /// token, created at).
    pub fn verification_checks(&self) -> Vec<(i64, String, String, String, i64)> {
        let cat = self.catalog.read();
        cat.identities
            .iter()
            .flat_map(|((account_id, region), ids)| {
                ids.values()
                    .filter(|i| i.kind == IdentityKind::Domain && i.status != VerificationStatus::Success)
                    .map(move |i| (*account_id, region.clone(), i.identity.clone(), i.token.clone(), i.created_ms))
            })
            .collect()
    }

    /// Set a domain identity's verification status (the DNS check's verdict); true if it changed.
    pub async fn set_verification(
        &self,
        account_id: i64,
        region: &str,
        domain: &str,
        status: VerificationStatus,
    ) -> Result<bool, AdminError> {
        let key = (account_id, region.to_string());
        let Some(mut id) = self.catalog.read().identities.get(&key).and_then(|m| m.get(domain).cloned()) else {
            return Ok(false);
        };
        if id.status == status {
            return Ok(false);
        }
        id.status = status;
        self.commit(cluster::Change::Identity { account_id, region: region.to_string(), identity: id }).await?;
        Ok(true)
    }

    /// Every identity of (account, region), oldest first.
    pub fn identities(&self, account_id: i64, region: &str) -> Vec<Identity> {
        let mut v: Vec<Identity> = self
            .catalog
            .read()
            .identities
            .get(&(account_id, region.to_string()))
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        v.sort_by(|a, b| a.created_ms.cmp(&b.created_ms).then_with(|| a.identity.cmp(&b.identity)));
        v
    }

    /// One identity.
    pub fn identity(&self, account_id: i64, region: &str, identity: &str) -> Option<Identity> {
        self.catalog
            .read()
            .identities
            .get(&(account_id, region.to_string()))
            .and_then(|m| m.get(&normalize(identity)).cloned())
    }
}
