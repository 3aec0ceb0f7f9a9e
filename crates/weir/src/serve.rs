//! `weir serve`.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use weir_api::{ApiConfig, AppState};
use weir_store::model::RegionSettings;
use weir_store::{Store, StoreOptions};
use weir_submit::{Service, ServiceConfig, system_clock};

use crate::config::Config;

/// Options of `weir serve`; each overrides the config file.
#[derive(Args)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory (database, admin token, server.json).
    #[arg(long, env = "WEIR_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// HTTP listen address (use port 0 for any free port; the bound address goes to server.json).
    #[arg(long)]
    http: Option<SocketAddr>,
    /// SMTP submission listener with STARTTLS.
    #[arg(long)]
    smtp: Option<SocketAddr>,
    /// SMTP submission listener with implicit TLS.
    #[arg(long)]
    smtps: Option<SocketAddr>,
    /// Do not run the SMTP listeners.
    #[arg(long)]
    no_smtp: bool,
    /// Do not deliver: accepted mail stays in the spool.
    #[arg(long)]
    no_delivery: bool,
}

/// Read the admin token from the data dir, creating it (mode 0600) on first start.
fn admin_token(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("admin-token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        let t = t.trim().to_string();
        if !t.is_empty() {
            return Ok(t);
        }
    }
    let token = hex::encode(rand::random::<[u8; 32]>());
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(f, "{token}")?;
    f.sync_all()?;
    Ok(token)
}

/// Start the server and block until SIGINT or SIGTERM.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG").unwrap_or_else(|_| "info".into()))
        .init();
    let mut cfg = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if let Some(d) = args.data_dir {
        cfg.data_dir = d;
    }
    if let Some(h) = args.http {
        cfg.http.listen = h;
    }
    if let Some(a) = args.smtp {
        cfg.smtp.listen = a;
    }
    if let Some(a) = args.smtps {
        cfg.smtp.listen_tls = a;
    }
    if args.no_smtp {
        cfg.smtp.enabled = false;
    }
    if args.no_delivery {
        cfg.delivery.enabled = false;
    }
    cfg.validate()?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(serve(cfg))
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&cfg.data_dir)
        .with_context(|| format!("cannot create data dir {}", cfg.data_dir.display()))?;
    let token = admin_token(&cfg.data_dir)?;
    let store = Arc::new(
        Store::open(&cfg.data_dir, StoreOptions { max_batch: cfg.spool.max_batch, fsync: cfg.spool.fsync })
            .with_context(|| format!("cannot open the store in {}", cfg.data_dir.display()))?,
    );
    let defaults = RegionSettings {
        max_24h: cfg.defaults.max_24h,
        max_rate: cfg.defaults.max_rate,
        burst_seconds: cfg.defaults.burst_seconds,
        ..RegionSettings::sandbox()
    };
    let events = Arc::new(weir_store::events::EventLog::open(&cfg.data_dir)?);
    let svc = Arc::new(
        Service::open(
            store.clone(),
            ServiceConfig {
                default_region: defaults,
                id_domain: cfg.message.id_domain.clone(),
                bulk_configuration_sets: cfg.delivery.bulk_configuration_sets.clone(),
            },
            system_clock(),
        )?
        .with_events(events.clone()),
    );
    let webhook_stats = Arc::new(weir_delivery::webhooks::WebhookStats::default());
    if !cfg.delivery.webhooks.is_empty() {
        events.add_listener(weir_delivery::webhooks::start(
            cfg.delivery.webhooks.clone(),
            10_000,
            cfg.delivery.webhook_attempts,
            webhook_stats.clone(),
        ));
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let engine = if cfg.delivery.enabled { Some(delivery_engine(&cfg, svc.clone(), events.clone())?) } else { None };
    let engine_task = engine.clone().map(|e| tokio::spawn(e.run(stop_rx.clone())));
    let state = AppState {
        delivery_status: engine.clone().map(|e| -> weir_api::StatusFn {
            let w = webhook_stats.clone();
            Arc::new(move || {
                let mut v = e.status();
                v["webhooks"] = serde_json::json!({
                    "delivered": w.delivered.load(std::sync::atomic::Ordering::Relaxed),
                    "failed": w.failed.load(std::sync::atomic::Ordering::Relaxed),
                    "dropped": w.dropped.load(std::sync::atomic::Ordering::Relaxed),
                });
                v
            })
        }),
        svc,
        cfg: Arc::new(ApiConfig {
            max_skew_secs: cfg.http.max_skew_seconds,
            max_body_bytes: cfg.http.max_body_bytes,
            admin_token: token,
            v2_daily_quota_code: cfg.http.v2_daily_quota_error.clone(),
        }),
    };
    let listener = tokio::net::TcpListener::bind(cfg.http.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.http.listen))?;
    let bound = listener.local_addr()?;
    let mut info = serde_json::json!({ "http": format!("http://{bound}"), "pid": std::process::id() });

    let mut smtp_guard = None;
    let mut smtp_tasks = Vec::new();
    if cfg.smtp.enabled {
        let ctx = smtp_context(&cfg, state.svc.clone(), stop_rx.clone())?;
        smtp_guard = Some(ctx.guard.clone());
        for (addr, implicit, key) in [(cfg.smtp.listen, false, "smtp"), (cfg.smtp.listen_tls, true, "smtps")] {
            let l = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
            let bound = l.local_addr()?;
            info[key] = serde_json::json!(bound.to_string());
            tracing::info!(%bound, implicit_tls = implicit, region = %cfg.smtp.region, "SMTP submission listening");
            smtp_tasks.push(tokio::spawn(weir_smtp::serve(l, ctx.clone(), implicit)));
        }
    }

    let server_file = cfg.data_dir.join("server.json");
    std::fs::write(&server_file, format!("{info}\n"))?;
    tracing::info!(http = %bound, data_dir = %cfg.data_dir.display(), "weir listening on http://{bound}");
    let stop = async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    };
    axum::serve(listener, weir_api::router(state)).with_graceful_shutdown(stop).await?;
    tracing::info!("shutting down: draining SMTP sessions and flushing the spool");
    for t in smtp_tasks {
        let _ = t.await;
    }
    if let Some(t) = engine_task {
        let _ = t.await;
    }
    if let Some(e) = &engine {
        // Let deliveries already under way finish and record their results.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while e.in_flight() > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    if let Some(g) = smtp_guard {
        // Sessions in the middle of a transaction get a few seconds to finish it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while g.active() > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    store.shutdown();
    let _ = std::fs::remove_file(&server_file);
    Ok(())
}

fn delivery_engine(
    cfg: &Config,
    svc: Arc<Service>,
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
        command_timeout: std::time::Duration::from_secs(d.command_timeout_seconds),
        starttls: d.starttls,
        lanes: d.lanes.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        pacing: d.pacing,
    };
    tracing::info!(
        smarthost = ?d.smarthost, routes = d.routes.len(), static_mx = d.mx.len(),
        "delivery engine running"
    );
    Ok(Arc::new(weir_delivery::Engine::new(svc, ecfg, router, events)?))
}

fn weir_classify_schedule(d: &crate::config::DeliverySection) -> weir_delivery::engine::Schedule {
    weir_delivery::engine::Schedule {
        first: std::time::Duration::from_secs(d.retry_first_seconds),
        max: std::time::Duration::from_secs(d.retry_max_seconds),
        window: std::time::Duration::from_secs(d.retry_window_seconds),
        ..Default::default()
    }
}

fn smtp_context(
    cfg: &Config,
    svc: Arc<Service>,
    shutdown: tokio::sync::watch::Receiver<bool>,
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
        shutdown,
    })
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
