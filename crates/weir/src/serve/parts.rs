//! The delivery engine and the SMTP listeners' context, built from the configuration.

use std::sync::Arc;

use weir_store::Store;
use weir_submit::Service;

use crate::config::Config;

pub(super) fn delivery_engine(
    cfg: &Config,
    svc: Arc<Service>,
    spool: Arc<Store>,
    events: Arc<weir_store::events::EventLog>,
) -> anyhow::Result<Arc<weir_delivery::Engine>> {
    use weir_delivery::route::{HickoryResolver, Resolver, Router, StaticResolver, parse_target};
    let d = &cfg.delivery;
    let routes = d.routes.iter().filter_map(|(k, v)| parse_target(v).map(|t| (k.clone(), t))).collect();
    let smarthost = d.smarthost.as_deref().and_then(parse_target);
    let resolver: Arc<dyn Resolver> = if !d.mx.is_empty() {
        let table =
            d.mx.iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.iter().filter_map(|r| crate::config::parse_mx(r)).collect()))
                .collect();
        Arc::new(StaticResolver(table))
    } else if !d.dns_servers.is_empty() {
        Arc::new(HickoryResolver::with_servers(&d.dns_servers).map_err(|e| anyhow::anyhow!("cannot set up DNS: {e}"))?)
    } else {
        match HickoryResolver::system() {
            Ok(r) => Arc::new(r),
            Err(e) => {
                tracing::warn!(error = %e, "no usable system DNS configuration: mail will wait until one exists or delivery.dns_servers, routes or a smarthost are set");
                Arc::new(weir_delivery::route::NoDns(format!("no DNS configuration: {e}")))
            }
        }
    };
    let router = Router::new(routes, smarthost, resolver, d.mx_port);
    let ecfg = weir_delivery::DeliveryConfig {
        helo_name: d.helo_name.clone(),
        max_in_flight: d.max_in_flight,
        poll_interval: std::time::Duration::from_millis(d.poll_interval_ms),
        schedule: weir_classify_schedule(d),
        connect_timeout: std::time::Duration::from_secs(d.connect_timeout_seconds),
        greeting_timeout: std::time::Duration::from_secs(d.greeting_timeout_seconds),
        dead_host_for: std::time::Duration::from_secs(d.dead_host_seconds),
        greylist_retry: std::time::Duration::from_secs(d.greylist_retry_seconds),
        command_timeout: std::time::Duration::from_secs(d.command_timeout_seconds),
        starttls: d.starttls,
        lanes: d.lanes.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        pacing: d.pacing,
    };
    tracing::info!(
        smarthost = ?d.smarthost, routes = d.routes.len(), static_mx = d.mx.len(),
        "delivery engine running"
    );
    Ok(Arc::new(weir_delivery::Engine::new(svc.delivery_port(), weir_store::Spool::new(spool), ecfg, router, events)?))
}

fn weir_classify_schedule(d: &crate::config::DeliverySection) -> weir_delivery::engine::Schedule {
    weir_delivery::engine::Schedule {
        first: std::time::Duration::from_secs(d.retry_first_seconds),
        max: std::time::Duration::from_secs(d.retry_max_seconds),
        window: std::time::Duration::from_secs(d.retry_window_seconds),
        ..Default::default()
    }
}

pub(super) fn smtp_context(
    cfg: &Config,
    svc: Arc<Service>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    metrics: Arc<weir_metrics::Metrics>,
) -> anyhow::Result<weir_smtp::SmtpContext> {
    let s = &cfg.smtp;
    let tls = match (&s.tls_cert, &s.tls_key) {
        (Some(c), Some(k)) => weir_smtp::tls::load(c, k)?,
        _ => {
            let (acceptor, created) = weir_smtp::tls::self_signed(&cfg.data_dir, &s.hostname)?;
            if created {
                tracing::warn!(
                    dir = %cfg.data_dir.display(),
                    "no smtp.tls_cert configured: generated a self-signed certificate (smtp-cert.pem) for {}",
                    s.hostname
                );
            } else {
                tracing::info!("SMTP TLS uses the self-signed certificate in the data dir");
            }
            acceptor
        }
    };
    let trusted_networks = s.trusted_networks.iter().map(|n| n.parse()).collect::<Result<Vec<ipnet::IpNet>, _>>()?;
    let smtp = weir_smtp::SmtpConfig {
        hostname: s.hostname.clone(),
        region: s.region.clone(),
        allow_plaintext_auth: s.allow_plaintext_auth,
        enhanced_status_codes: s.enhanced_status_codes,
        idle_timeout: std::time::Duration::from_secs(s.idle_timeout_seconds),
        data_timeout: std::time::Duration::from_secs(s.data_timeout_seconds),
        max_connections: s.max_connections,
        max_connections_per_ip: s.max_connections_per_ip,
        auth_failure_delay: std::time::Duration::from_millis(s.auth_failure_delay_ms),
        auth_max_failures: s.auth_max_failures,
        auth_lockout: std::time::Duration::from_secs(s.auth_lockout_seconds),
        trusted_networks,
        trusted_account: s.trusted_account.clone(),
        ..weir_smtp::SmtpConfig::default()
    };
    Ok(weir_smtp::SmtpContext {
        svc,
        cfg: Arc::new(smtp),
        tls: Some(tls),
        guard: Arc::new(weir_smtp::guard::Guard::default()),
        conns: weir_listen::ConnLimiter::new(weir_listen::Caps {
            total: s.max_connections,
            per_ip: s.max_connections_per_ip,
        }),
        shutdown,
        metrics,
    })
}
