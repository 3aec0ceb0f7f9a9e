//! Typed handles on the store for the submission service: the account catalog, the quota and
//! statistics ledger, and named documents. Each method is one operation in one commit; no
//! connection or SQL leaves this crate.

use std::sync::Arc;

use crate::model::DkimRecord;
use crate::model::MailFromRecord;
use crate::model::{Account, Identity, RegionSettings, SendDataPoint, Suppressed};
use crate::ops::{self, QuotaRecord, StatsRow, Volume};
use crate::resources::{self, Doc, Put};
use crate::{Result, Store};

/// Accounts, their regions' settings, identities, suppression lists, DKIM and MAIL FROM records.
#[derive(Clone)]
pub struct Accounts {
    store: Arc<Store>,
}

/// Everything the catalog holds, as loaded at start.
#[derive(Debug, Default)]
pub struct AccountsSnapshot {
    /// Accounts.
    pub accounts: Vec<Account>,
    /// Settings per (account, region).
    pub regions: Vec<(i64, String, RegionSettings)>,
    /// Identities per (account, region).
    pub identities: Vec<(i64, String, Identity)>,
    /// Suppressed addresses per (account, region).
    pub suppressed: Vec<(i64, String, Suppressed)>,
    /// DKIM records per (account, region).
    pub dkim: Vec<(i64, String, DkimRecord)>,
    /// MAIL FROM records per (account, region).
    pub mail_from: Vec<(i64, String, MailFromRecord)>,
}

impl Accounts {
    /// The catalog kept in `store`.
    pub fn new(store: Arc<Store>) -> Accounts {
        Accounts { store }
    }

    /// Everything, for the in-memory catalog at start.
    pub fn load(&self) -> Result<AccountsSnapshot> {
        Ok(AccountsSnapshot {
            accounts: self.store.read(ops::list_accounts)?,
            regions: self.store.read(ops::list_regions)?,
            identities: self.store.read(ops::list_identities)?,
            suppressed: self.store.read(ops::list_suppressed)?,
            dkim: self.store.read(crate::dkim::list)?,
            mail_from: self.store.read(crate::mail_from::list)?,
        })
    }

    /// A new account with a fresh id.
    pub async fn create(&self, name: String, access_key_id: String, secret: String, now_ms: i64) -> Result<Account> {
        self.store.write(move |c| ops::insert_account(c, &name, &access_key_id, &secret, now_ms)).await
    }

    /// The highest account id stored.
    pub fn max_id(&self) -> Result<i64> {
        self.store.read(ops::max_account_id)
    }

    /// Store an account as given (its id included).
    pub async fn put(&self, a: Account) -> Result<()> {
        self.store.write(move |c| ops::upsert_account(c, &a)).await
    }

    /// Store a region's settings.
    pub async fn put_region(&self, account_id: i64, region: String, s: RegionSettings) -> Result<()> {
        self.store.write(move |c| ops::upsert_region(c, account_id, &region, &s)).await
    }

    /// Store an identity.
    pub async fn put_identity(&self, account_id: i64, region: String, i: Identity) -> Result<()> {
        self.store.write(move |c| ops::upsert_identity(c, account_id, &region, &i)).await
    }

    /// Delete an identity; whether it existed.
    pub async fn delete_identity(&self, account_id: i64, region: String, identity: String) -> Result<bool> {
        self.store.write(move |c| ops::delete_identity(c, account_id, &region, &identity)).await
    }

    /// Put an address on the suppression list.
    pub async fn put_suppressed(&self, account_id: i64, region: String, s: Suppressed) -> Result<()> {
        self.store.write(move |c| ops::put_suppressed(c, account_id, &region, &s)).await
    }

    /// Take an address off the suppression list; whether it was on it.
    pub async fn delete_suppressed(&self, account_id: i64, region: String, address: String) -> Result<bool> {
        self.store.write(move |c| ops::delete_suppressed(c, account_id, &region, &address)).await
    }

    /// Store an identity's DKIM record.
    pub async fn put_dkim(&self, account_id: i64, region: String, d: DkimRecord) -> Result<()> {
        self.store.write(move |c| crate::dkim::upsert(c, account_id, &region, &d)).await
    }

    /// Delete an identity's DKIM record.
    pub async fn delete_dkim(&self, account_id: i64, region: String, identity: String) -> Result<()> {
        self.store.write(move |c| crate::dkim::delete(c, account_id, &region, &identity)).await
    }

    /// Store an identity's MAIL FROM record.
    pub async fn put_mail_from(&self, account_id: i64, region: String, m: MailFromRecord) -> Result<()> {
        self.store.write(move |c| crate::mail_from::upsert(c, account_id, &region, &m)).await
    }

    /// Delete an identity's MAIL FROM record.
    pub async fn delete_mail_from(&self, account_id: i64, region: String, identity: String) -> Result<()> {
        self.store.write(move |c| crate::mail_from::delete(c, account_id, &region, &identity)).await
    }
}

/// The quota counters and the sending statistics.
#[derive(Clone)]
pub struct Ledger {
    store: Arc<Store>,
}

impl Ledger {
    /// The ledger kept in `store`.
    pub fn new(store: Arc<Store>) -> Ledger {
        Ledger { store }
    }

    /// The quota counters still inside the rolling window at `now_s`.
    pub fn load_quotas(&self, now_s: u64) -> Result<Vec<((i64, String), QuotaRecord)>> {
        self.store.read(|c| ops::load_quotas(c, now_s))
    }

    /// Drop counters and statistics older than their windows, without waiting for the commit.
    pub fn prune_detached(&self, now_s: i64) {
        self.store.write_detached(move |c| ops::prune(c, now_s));
    }

    /// Count a rejected send in the statistics.
    pub async fn record_reject(&self, account_id: i64, region: String, now_ms: i64) -> Result<()> {
        self.store.write(move |c| ops::record_reject(c, account_id, &region, now_ms)).await
    }

    /// GetSendStatistics data points of one account and region.
    pub fn send_statistics(&self, account_id: i64, region: &str, now_s: i64) -> Result<Vec<SendDataPoint>> {
        self.store.read(|c| ops::send_statistics(c, account_id, region, now_s))
    }

    /// Delivered, bounced and complained volumes per (account, region) since `from_s`.
    pub fn reputation_volumes(&self, from_s: i64) -> Result<Vec<Volume>> {
        self.store.read(|c| ops::reputation_volumes(c, from_s))
    }

    /// The statistics rows since `from_s` (for sharing with the other nodes of a cluster).
    pub fn stats_rows(&self, from_s: i64) -> Result<Vec<StatsRow>> {
        self.store.read(|c| ops::stats_rows(c, from_s))
    }
}

/// Named JSON documents of an account in a region, by kind (templates, configuration sets,
/// contact lists, contacts, identity attributes, cluster membership).
#[derive(Clone)]
pub struct Documents {
    store: Arc<Store>,
}

/// Where a document lives: (account id, region, kind).
pub use crate::resources::Scope;

impl Documents {
    /// The documents kept in `store`.
    pub fn new(store: Arc<Store>) -> Documents {
        Documents { store }
    }

    /// Write a document as `mode` says; `what` names it in errors ("Template x").
    pub async fn put(
        &self,
        scope: Scope<'_>,
        name: &str,
        doc: String,
        now_ms: i64,
        mode: Put,
        what: &str,
    ) -> Result<()> {
        let (a, r, k, n, what) =
            (scope.0, scope.1.to_string(), scope.2.to_string(), name.to_string(), what.to_string());
        self.store.write(move |c| resources::put(c, (a, &r, &k), &n, &doc, now_ms, mode, &what)).await
    }

    /// Write a document, or delete it (`None`) if it exists (a replica applying a change).
    pub async fn replace(&self, scope: Scope<'_>, name: &str, doc: Option<String>, created_ms: i64) -> Result<()> {
        let (a, r, k, n) = (scope.0, scope.1.to_string(), scope.2.to_string(), name.to_string());
        self.store
            .write(move |c| match doc {
                Some(d) => resources::put(c, (a, &r, &k), &n, &d, created_ms, Put::Upsert, ""),
                None => match resources::delete(c, (a, &r, &k), &n, "") {
                    Err(crate::StoreError::NotFound(_)) => Ok(()),
                    other => other,
                },
            })
            .await
    }

    /// One document.
    pub fn get(&self, scope: Scope<'_>, name: &str) -> Result<Option<Doc>> {
        self.store.read(|c| resources::get(c, scope, name))
    }

    /// Every document of a scope.
    pub fn list(&self, scope: Scope<'_>) -> Result<Vec<Doc>> {
        self.store.read(|c| resources::list(c, scope))
    }

    /// The names of a scope's documents, with their creation times.
    pub fn names(&self, scope: Scope<'_>) -> Result<Vec<(String, i64)>> {
        self.store.read(|c| resources::names(c, scope))
    }

    /// Every document of a kind, in every account and region.
    pub fn list_all(&self, kind: &str) -> Result<Vec<(i64, String, Doc)>> {
        self.store.read(|c| resources::list_all(c, kind))
    }

    /// Every document of every account (a cluster node's catalog, as its peers see it).
    pub fn list_accounts_docs(&self) -> Result<Vec<(i64, String, String, Doc)>> {
        self.store.read(resources::list_accounts_docs)
    }

    /// Delete a document; `what` names it in the error if it does not exist.
    pub async fn delete(&self, scope: Scope<'_>, name: &str, what: &str) -> Result<()> {
        let (a, r, k, n, what) =
            (scope.0, scope.1.to_string(), scope.2.to_string(), name.to_string(), what.to_string());
        self.store.write(move |c| resources::delete(c, (a, &r, &k), &n, &what)).await
    }

    /// Delete a document and, in the same commit, every document of the kind `with_kind` in its
    /// account and region (a contact list and its contacts).
    pub async fn delete_with_kind(&self, scope: Scope<'_>, name: &str, what: &str, with_kind: &str) -> Result<()> {
        let (a, r, k, n, what, wk) = (
            scope.0,
            scope.1.to_string(),
            scope.2.to_string(),
            name.to_string(),
            what.to_string(),
            with_kind.to_string(),
        );
        self.store
            .write(move |c| {
                resources::delete(c, (a, &r, &k), &n, &what)?;
                resources::delete_kind(c, (a, &r, &wk))?;
                Ok(())
            })
            .await
    }

    /// Delete every document of a scope; how many.
    pub async fn delete_kind(&self, scope: Scope<'_>) -> Result<usize> {
        let (a, r, k) = (scope.0, scope.1.to_string(), scope.2.to_string());
        self.store.write(move |c| resources::delete_kind(c, (a, &r, &k))).await
    }
}
