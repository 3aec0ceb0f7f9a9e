//! The periodic DNS checks of domain identities: every selector's DKIM TXT record must publish
//! its key (a CNAME to where it is published is followed by the resolver), and a domain waiting
//! for verification is verified once `_amazonses.<domain>` carries its token, and a custom MAIL
//! FROM domain is set up once its MX points at the feedback listener (`feedback.mx_host`), as in
//! SES.

use std::sync::Arc;
use std::time::Duration;

use weir_delivery::route::{HickoryResolver, Resolver};
use weir_store::model::VerificationStatus;
use weir_submit::{DnsFinding, Service};

use crate::config::DkimConfig;

/// Check every domain now and then every `check_interval_seconds`, until `stop`.
pub async fn run(
    svc: Arc<Service>,
    resolver: HickoryResolver,
    cfg: DkimConfig,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let fail_after_ms = (cfg.fail_after_seconds as i64).saturating_mul(1000);
    loop {
        for (account_id, region, domain, records, pending) in svc.dkim().dkim_checks() {
            let finding = check(&resolver, &domain, &records).await;
            let pending_published = match &pending {
                Some(p) => check(&resolver, &domain, std::slice::from_ref(p)).await == DnsFinding::AllPublished,
                None => false,
            };
            match svc
                .dkim()
                .record_dkim_check(account_id, &region, &domain, finding, pending_published, fail_after_ms)
                .await
            {
                Ok(Some(status)) => tracing::info!(%domain, %region, %status, ?finding, "DKIM status changed"),
                Ok(None) => {}
                Err(e) => tracing::error!(%domain, error = %e, "cannot record a DKIM check"),
            }
        }
        for (account_id, region, domain, token, created_ms) in svc.directory().verification_checks() {
            let status = match resolver.txt(&format!("_amazonses.{domain}")).await {
                Ok(txts) if txts.iter().any(|t| t.trim() == token) => VerificationStatus::Success,
                Ok(_) if svc.now_ms() - created_ms >= fail_after_ms => VerificationStatus::Failed,
                _ => continue,
            };
            match svc.directory().set_verification(account_id, &region, &domain, status).await {
                Ok(true) => tracing::info!(%domain, %region, status = status.as_str(), "domain verification changed"),
                Ok(false) => {}
                Err(e) => tracing::error!(%domain, error = %e, "cannot record a domain verification"),
            }
        }
        for (account_id, region, identity, domain) in svc.mail_from().mail_from_checks() {
            let Some(host) = svc.mail_from().feedback_mx_host() else { break };
            let finding = match resolver.mx(&domain).await {
                Ok(mx) if mx.iter().any(|(_, e)| e.trim_end_matches('.').eq_ignore_ascii_case(host)) => {
                    DnsFinding::AllPublished
                }
                Ok(_)
                | Err(
                    weir_delivery::route::RouteError::NoSuchDomain(_) | weir_delivery::route::RouteError::NullMx(_),
                ) => DnsFinding::Missing,
                Err(_) => DnsFinding::Unavailable,
            };
            match svc.mail_from().record_mail_from_check(account_id, &region, &identity, finding, fail_after_ms).await {
                Ok(Some(status)) => tracing::info!(%identity, %domain, %status, "MAIL FROM domain status changed"),
                Ok(None) => {}
                Err(e) => tracing::error!(%domain, error = %e, "cannot record a MAIL FROM check"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(cfg.check_interval_seconds.max(1))) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn check(resolver: &HickoryResolver, domain: &str, records: &[(String, String)]) -> DnsFinding {
    for (selector, key) in records {
        match resolver.txt(&format!("{selector}._domainkey.{domain}")).await {
            Err(_) => return DnsFinding::Unavailable,
            Ok(txts) if !txts.iter().any(|t| published_key(t).as_deref() == Some(key.as_str())) => {
                return DnsFinding::Missing;
            }
            Ok(_) => {}
        }
    }
    DnsFinding::AllPublished
}

/// The `p=` of a DKIM key record, without the spaces DNS tools like to insert.
pub(crate) fn published_key(txt: &str) -> Option<String> {
    txt.split(';').find_map(|tag| {
        let (name, value) = tag.split_once('=')?;
        (name.trim() == "p").then(|| value.chars().filter(|c| !c.is_whitespace()).collect())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_read_from_a_record_with_spaces() {
        assert_eq!(published_key("v=DKIM1; k=rsa; p=MIIB Ij AN").as_deref(), Some("MIIBIjAN"));
        assert_eq!(published_key("v=DKIM1; k=rsa").as_deref(), None);
    }
}
