//! The directory: accounts and their region settings, sending identities, and the account-level
//! suppression list, mirrored in memory (one lock) and written through to the store; in a
//! cluster every change is published before it is made.

use std::sync::Arc;

use base64::Engine as _;
use parking_lot::{RwLock, RwLockReadGuard};
use weir_mail::address::normalize;
use weir_store::StoreError;
use weir_store::model::*;

use super::cluster::Change;
use super::core::Core;
use super::{AdminError, MAX_IDENTITIES, random_string};
use crate::catalog::Catalog;

/// Accounts, region settings, identities and suppression lists.
pub struct Directory {
    core: Arc<Core>,
    catalog: RwLock<Catalog>,
    /// Settings of a region no operator has touched.
    default_region: RegionSettings,
    /// The regions requests may be for.
    regions: Vec<String>,
}

impl Directory {
    pub(crate) fn new(core: Arc<Core>, catalog: Catalog, default_region: RegionSettings, regions: Vec<String>) -> Self {
        Directory { core, catalog: RwLock::new(catalog), default_region, regions }
    }

    /// The in-memory catalog, for checks that read several things at once (the guard must not
    /// be held across an await).
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Catalog> {
        self.catalog.read()
    }

    /// Whether requests may be for `region`.
    pub fn region_known(&self, region: &str) -> bool {
        self.regions.iter().any(|r| r == region)
    }

    /// The account owning an access key.
    pub fn account_by_key(&self, access_key_id: &str) -> Option<Arc<Account>> {
        self.catalog.read().by_key.get(access_key_id).cloned()
    }

    /// An account by name.
    pub fn account_by_name(&self, name: &str) -> Result<Arc<Account>, AdminError> {
        self.catalog
            .read()
            .by_name
            .get(name)
            .cloned()
            .ok_or_else(|| AdminError::NotFound(format!("no account named '{name}'")))
    }

    /// An account by row id.
    pub fn account_by_id(&self, id: i64) -> Option<Arc<Account>> {
        self.catalog.read().by_id.get(&id).cloned()
    }

    /// The account whose SES SMTP credentials for `region` these are (constant-time compare).
    pub fn smtp_login(&self, username: &str, password: &str, region: &str) -> Option<Arc<Account>> {
        let account = self.account_by_key(username)?;
        let expected = weir_sigv4::smtp_password(&account.secret, region);
        weir_sigv4::constant_time_eq(expected.as_bytes(), password.as_bytes()).then_some(account)
    }

    /// Regions an account has settings or identities in.
    pub fn regions_of(&self, account_id: i64) -> Vec<String> {
        let cat = self.catalog.read();
        let mut v: Vec<String> = cat
            .regions
            .keys()
            .chain(cat.identities.keys())
            .filter(|(id, _)| *id == account_id)
            .map(|(_, r)| r.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Every account, by id.
    pub fn accounts(&self) -> Vec<Arc<Account>> {
        let mut v: Vec<_> = self.catalog.read().by_name.values().cloned().collect();
        v.sort_by_key(|a| a.id);
        v
    }

    /// Settings of (account, region), defaults if never set.
    pub fn region_settings(&self, account_id: i64, region: &str) -> RegionSettings {
        self.catalog
            .read()
            .regions
            .get(&(account_id, region.to_string()))
            .cloned()
            .unwrap_or_else(|| self.default_region.clone())
    }

    /// Create an account with fresh credentials.
    pub async fn create_account(&self, name: &str) -> Result<Arc<Account>, AdminError> {
        if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(AdminError::Invalid(format!(
                "invalid account name '{name}': use 1-64 letters, digits, '-', '_' or '.'"
            )));
        }
        let akid = format!("AKIA{}", random_string(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16));
        let secret = random_string(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", 40);
        let (n, now) = (name.to_string(), self.core.now_ms());
        if self.account_by_name(name).is_ok() {
            return Err(AdminError::Conflict(format!("account '{name}' already exists")));
        }
        let a = match self.core.new_account_id(name).await? {
            Some(id) => {
                let a = Account { id, name: n, access_key_id: akid, secret, created_ms: now };
                self.commit(Change::Account { account: a.clone() }).await?;
                a
            }
            None => {
                let a = self.core.accounts.create(n, akid, secret, now).await.map_err(AdminError::from_store)?;
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
        self.commit(Change::Region { account_id, region: region.to_string(), settings: s }).await
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
            created_ms: existing.as_ref().map_or(self.core.now_ms(), |e| e.created_ms),
        };
        self.commit(Change::Identity { account_id, region: region.to_string(), identity: id.clone() }).await?;
        Ok(id)
    }

    /// Delete an identity from the directory; whether it existed. (Its DKIM keys and attributes
    /// are the service's to delete with it: see `Service::delete_identity`.)
    pub(crate) async fn delete_identity(&self, account_id: i64, region: &str, name: &str) -> Result<bool, AdminError> {
        let existed = self.identity(account_id, region, name).is_some();
        if existed {
            let region = region.to_string();
            self.commit(Change::IdentityDeleted { account_id, region, identity: name.to_string() }).await?;
        }
        Ok(existed)
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
        self.commit(Change::Identity { account_id, region: region.to_string(), identity: id }).await?;
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

    /// Add an address to the suppression list.
    pub async fn put_suppressed(
        &self,
        account_id: i64,
        region: &str,
        address: &str,
        reason: SuppressionReason,
        message_id: Option<String>,
    ) -> Result<Suppressed, AdminError> {
        let s = Suppressed { address: normalize(address), reason, updated_ms: self.core.now_ms(), message_id };
        self.commit(Change::Suppressed { account_id, region: region.to_string(), entry: s.clone() }).await?;
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
            self.commit(Change::Unsuppressed { account_id, region: region.to_string(), address: a }).await?;
        }
        if existed {
            Ok(())
        } else {
            Err(AdminError::NotFound(format!("Email address {address} does not exist on your suppression list.")))
        }
    }

    /// Make `change` here and, in a cluster, on every node (published first).
    async fn commit(&self, change: Change) -> Result<(), AdminError> {
        self.core.publish_first(&change).await?;
        self.apply(change).await?;
        Ok(())
    }

    /// Store a directory `change` (this node's or another's), then mirror it in memory. Other
    /// changes are not the directory's: false.
    pub(crate) async fn apply(&self, change: Change) -> Result<bool, StoreError> {
        let accounts = &self.core.accounts;
        match change {
            Change::Account { account } => {
                accounts.put(account.clone()).await?;
                let mut cat = self.catalog.write();
                // A re-published account may come back with other keys: drop the old look-ups.
                if let Some(old) = cat.by_id.get(&account.id).cloned() {
                    cat.by_key.remove(&old.access_key_id);
                    cat.by_name.remove(&old.name);
                }
                cat.insert_account(account);
            }
            Change::Region { account_id, region, settings } => {
                accounts.put_region(account_id, region.clone(), settings.clone()).await?;
                self.catalog.write().regions.insert((account_id, region), settings);
            }
            Change::Identity { account_id, region, identity } => {
                accounts.put_identity(account_id, region.clone(), identity.clone()).await?;
                let name = identity.identity.clone();
                self.catalog.write().identities.entry((account_id, region)).or_default().insert(name, identity);
            }
            Change::IdentityDeleted { account_id, region, identity } => {
                accounts.delete_identity(account_id, region.clone(), identity.clone()).await?;
                if let Some(m) = self.catalog.write().identities.get_mut(&(account_id, region)) {
                    m.remove(&identity);
                }
            }
            Change::Suppressed { account_id, region, entry } => {
                accounts.put_suppressed(account_id, region.clone(), entry.clone()).await?;
                let address = entry.address.clone();
                self.catalog.write().suppression.entry((account_id, region)).or_default().insert(address, entry);
            }
            Change::Unsuppressed { account_id, region, address } => {
                accounts.delete_suppressed(account_id, region.clone(), address.clone()).await?;
                if let Some(m) = self.catalog.write().suppression.get_mut(&(account_id, region)) {
                    m.remove(&address);
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The whole directory as changes, to publish again to an emptied Redis.
    pub(crate) fn changes(&self) -> Vec<Change> {
        let cat = self.catalog.read();
        let mut v: Vec<Change> = cat.by_id.values().map(|a| Change::Account { account: (**a).clone() }).collect();
        v.extend(cat.regions.iter().map(|((id, r), s)| Change::Region {
            account_id: *id,
            region: r.clone(),
            settings: s.clone(),
        }));
        for ((id, r), m) in &cat.identities {
            v.extend(m.values().map(|i| Change::Identity { account_id: *id, region: r.clone(), identity: i.clone() }));
        }
        for ((id, r), m) in &cat.suppression {
            v.extend(m.values().map(|s| Change::Suppressed { account_id: *id, region: r.clone(), entry: s.clone() }));
        }
        v
    }
}
