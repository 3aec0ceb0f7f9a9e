//! In-memory mirror of the catalog tables, for look-ups on the hot path without SQL.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use weir_store::model::{Account, Identity, RegionSettings, Suppressed, VerificationStatus};

/// Key of everything per (account, region).
pub type RegionKey = (i64, String);

/// Accounts, settings, identities and suppression lists.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Accounts by access key id.
    pub by_key: HashMap<String, Arc<Account>>,
    /// Accounts by name.
    pub by_name: HashMap<String, Arc<Account>>,
    /// Accounts by row id.
    pub by_id: HashMap<i64, Arc<Account>>,
    /// Stored region settings (absent = defaults).
    pub regions: HashMap<RegionKey, RegionSettings>,
    /// Identities per (account, region), by lower-cased identity.
    pub identities: HashMap<RegionKey, BTreeMap<String, Identity>>,
    /// Suppression list per (account, region), by lower-cased address.
    pub suppression: HashMap<RegionKey, BTreeMap<String, Suppressed>>,
}

impl Catalog {
    /// Add or replace an account.
    pub fn insert_account(&mut self, a: Account) {
        let a = Arc::new(a);
        self.by_key.insert(a.access_key_id.clone(), a.clone());
        self.by_id.insert(a.id, a.clone());
        self.by_name.insert(a.name.clone(), a);
    }

    /// Whether `address` may be used as a verified identity in (account, region): the address
    /// itself or its domain (or a parent domain) is verified.
    pub fn is_verified(&self, key: &RegionKey, address: &str) -> bool {
        let Some(ids) = self.identities.get(key) else {
            return false;
        };
        let addr = address.to_ascii_lowercase();
        let ok = |name: &str| ids.get(name).is_some_and(|i| i.status == VerificationStatus::Success);
        if ok(&addr) {
            return true;
        }
        let Some((_, mut domain)) = addr.rsplit_once('@') else {
            return false;
        };
        loop {
            if ok(domain) {
                return true;
            }
            match domain.split_once('.') {
                Some((_, parent)) if parent.contains('.') => domain = parent,
                _ => return false,
            }
        }
    }

    /// Whether `address` is on the suppression list of (account, region).
    pub fn is_suppressed(&self, key: &RegionKey, address: &str) -> bool {
        self.suppression.get(key).is_some_and(|m| m.contains_key(&address.to_ascii_lowercase()))
    }
}
