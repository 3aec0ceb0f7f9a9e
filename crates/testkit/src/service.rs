//! A submission service over a real store, and an account that may send, as in-process tests
//! and fuzz targets need them.

use std::path::Path;
use std::sync::Arc;

use weir_store::model::{Account, IdentityKind, RegionSettings};
use weir_store::{Store, StoreOptions};
use weir_submit::{Service, ServiceConfig, system_clock};

/// The region the account sends in.
pub const REGION: &str = "us-east-1";

/// A service on a store in `dir` (no fsync: tests), with SES's sandbox as the default settings
/// and Message-IDs at `id_domain`; and the store, for what a test reads of it.
pub fn open(dir: &Path, id_domain: &str) -> (Arc<Service>, Arc<Store>) {
    let store = Arc::new(Store::open(dir, StoreOptions { fsync: false, ..Default::default() }).expect("store"));
    let cfg = ServiceConfig::new(RegionSettings::sandbox(), id_domain);
    (Arc::new(Service::open(store.clone(), cfg, system_clock()).expect("service")), store)
}

/// An account `name` that may send from `domain` (verified) in [`REGION`], with no send-rate
/// limit (tests send several messages at once); in production with no daily quota when
/// `production`, else in the sandbox with SES's daily quota.
pub async fn sender(svc: &Service, name: &str, domain: &str, production: bool) -> Account {
    let a = svc.directory().create_account(name).await.expect("account");
    svc.directory()
        .update_region_settings(a.id, REGION, |s| {
            s.max_rate = -1.0;
            if production {
                s.production = true;
                s.max_24h = -1;
            }
        })
        .await
        .expect("settings");
    svc.directory().put_identity(a.id, REGION, domain, IdentityKind::Domain, true).await.expect("identity");
    (*a).clone()
}
