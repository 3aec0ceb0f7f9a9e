//! `weir serve`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use weir_api::{ApiConfig, AppState};
use weir_store::model::RegionSettings;
use weir_store::{Store, StoreOptions};
use weir_submit::{Service, ServiceConfig, system_clock};

use crate::config::Config;
use crate::data_dir::DataDir;

mod background;
use background::{metrics_text, reputation, retention};

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
    #[arg(long, value_parser = crate::config::listen_addr)]
    http: Option<SocketAddr>,
    /// SMTP submission listener with STARTTLS.
    #[arg(long, value_parser = crate::config::listen_addr)]
    smtp: Option<SocketAddr>,
    /// SMTP submission listener with implicit TLS.
    #[arg(long, value_parser = crate::config::listen_addr)]
    smtps: Option<SocketAddr>,
    /// Do not run the SMTP listeners.
    #[arg(long)]
    no_smtp: bool,
    /// Do not deliver: accepted mail stays in the spool.
    #[arg(long)]
    no_delivery: bool,
}

/// Start the server and block until SIGINT or SIGTERM.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    // Lines are written by a thread of their own, so a request never waits on stderr; nothing is
    // dropped (a full buffer holds the logger back instead), and the guard flushes at exit.
    let (writer, _flush_at_exit) =
        tracing_appender::non_blocking::NonBlockingBuilder::default().lossy(false).finish(std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG").unwrap_or_else(|_| "info".into()))
        // Colour codes only for a terminal, never in a log file.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer)
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

/// Connection caps that fit the descriptor limit, keeping some for the store, delivery and logs.
fn fit_caps(nofile: u64, http: usize, smtp: usize) -> (usize, usize) {
    let reserve = (nofile / 4).min(1024);
    let budget = nofile.saturating_sub(reserve) as usize;
    if http + smtp <= budget {
        return (http, smtp);
    }
    let h = (budget * 2 / 3).max(16).min(http);
    let s = (budget / 3).max(16).min(smtp);
    tracing::warn!(
        nofile,
        http = h,
        smtp = s,
        "the open-file limit is low: connection caps lowered to fit it (raise `ulimit -n` to keep the configured ones)"
    );
    (h, s)
}

/// `url` without its password, for logs and errors.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

/// The cluster key in `path`: at least 32 bytes, readable by weir's user only.
fn read_cluster_key(path: &std::path::Path) -> anyhow::Result<weir_cluster::seal::ClusterKey> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read cluster.key_file {}", path.display()))?;
    anyhow::ensure!(
        meta.permissions().mode() & 0o077 == 0,
        "cluster.key_file {} is readable by other users: chmod 600 it (and make a new key if others may have read it)",
        path.display()
    );
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read cluster.key_file {}", path.display()))?;
    weir_cluster::seal::ClusterKey::new(text.trim().as_bytes())
        .map_err(|e| anyhow::anyhow!("cluster.key_file {}: {e} (make one with `weir cluster keygen`)", path.display()))
}

async fn serve(mut cfg: Config) -> anyhow::Result<()> {
    // Files made from here on (the database, its WAL and SHM, the event log) are private.
    crate::data_dir::private_umask();
    // The lock comes first: a second server on this directory stops here, having touched nothing.
    let dir = DataDir::open(&cfg.data_dir)?;
    let nofile = weir_listen::raise_nofile_limit();
    (cfg.http.max_connections, cfg.smtp.max_connections) =
        fit_caps(nofile, cfg.http.max_connections, cfg.smtp.max_connections);
    let token = dir.admin_token()?;
    // rustls (Redis over TLS) picks its crypto from the process default when it has two.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cluster_key = match (&cfg.cluster.redis, &cfg.cluster.key_file) {
        (Some(_), Some(path)) => Some(read_cluster_key(path)?),
        _ => None,
    };
    // Keys of return paths and links: in a cluster, derived from the cluster key, so that every
    // node honours what another made; otherwise this node's own, kept in the data dir.
    let link_key = |purpose: &str, file: &str| -> anyhow::Result<Vec<u8>> {
        match &cluster_key {
            Some(k) => Ok(k.derive(purpose)),
            None => Ok(dir.secret(file)?),
        }
    };
    let store = Arc::new(
        Store::open(
            dir.path(),
            StoreOptions { max_batch: cfg.spool.max_batch, fsync: cfg.spool.fsync, ..Default::default() },
        )
        .with_context(|| format!("cannot open the store in {}", dir.path().display()))?,
    );
    let defaults = RegionSettings {
        max_24h: cfg.defaults.max_24h,
        max_rate: cfg.defaults.max_rate,
        burst_seconds: cfg.defaults.burst_seconds,
        ..RegionSettings::sandbox()
    };
    let events = Arc::new(weir_store::events::EventLog::open_rotating(
        dir.path(),
        cfg.retention.events_max_bytes,
        cfg.retention.events_files,
    )?);
    let svc = Service::open(
        store.clone(),
        ServiceConfig {
            default_region: defaults,
            id_domain: cfg.message.id_domain.clone(),
            bulk_configuration_sets: cfg.delivery.bulk_configuration_sets.clone(),
        },
        system_clock(),
    )?
    .with_events(events.clone());
    // Return paths: at the default domain if set, and at identities' MAIL FROM domains.
    let svc = Arc::new(
        svc.with_return_path(
            cfg.feedback.return_path_domain.as_ref().map(|d| d.to_ascii_lowercase()),
            link_key("return paths", "return-path-key")?,
        )
        .with_feedback_mx_host(cfg.feedback.mx_host.clone())
        .with_feedback_sources(
            cfg.feedback.loop_sources.iter().map(|n| n.parse()).collect::<Result<Vec<ipnet::IpNet>, _>>()?,
            cfg.feedback.reports_per_minute,
        )
        .with_regions(cfg.regions.clone())
        .with_event_topics(cfg.events.topics.iter().map(|t| (t.arn.clone(), t.accounts.clone())).collect()),
    );
    let metrics = Arc::new(weir_metrics::Metrics::new());
    {
        // Every SES event counted where it is emitted, whichever front door or engine emits it.
        let m = metrics.clone();
        events.add_listener(Box::new(move |e: &serde_json::Value| {
            if let (Some(t), Some(a), Some(r)) =
                (e["eventType"].as_str(), e["mail"]["sendingAccountId"].as_str(), e["mail"]["region"].as_str())
            {
                m.event(t, a, r);
            } else if e["eventType"] == "LaneChange" {
                let l = &e["lane"];
                m.lane_change(
                    l["key"].as_str().unwrap_or(""),
                    l["provider"].as_str().unwrap_or(""),
                    l["change"]["kind"].as_str().unwrap_or(""),
                );
            }
        }));
    }
    let webhook_stats = Arc::new(weir_delivery::webhooks::WebhookStats::default());
    if !cfg.delivery.webhooks.is_empty() {
        events.add_listener(weir_delivery::webhooks::start(
            cfg.delivery.webhooks.clone(),
            10_000,
            cfg.delivery.webhook_attempts,
            webhook_stats.clone(),
        )?);
    }
    if !cfg.events.topics.is_empty() {
        let topics = cfg
            .events
            .topics
            .iter()
            .map(|t| weir_delivery::webhooks::Endpoint {
                url: t.url.clone(),
                topic_arn: t.arn.clone(),
                format: t.format,
                secret: t.secret.clone(),
                ca_file: t.ca_file.clone(),
                attempts: u32::MAX,
                retry_for: Duration::from_secs(cfg.events.retry_for_seconds),
            })
            .collect();
        events.add_listener(weir_delivery::webhooks::start_topics(
            topics,
            svc.clone(),
            cfg.events.queue,
            webhook_stats.clone(),
        )?);
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);

    // Every listener is bound before the delivery engine touches the spool, so that a start that
    // fails (a port in use) leaves the spool as it found it.
    let listener = tokio::net::TcpListener::bind(cfg.http.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.http.listen))?;
    let bound = listener.local_addr()?;
    let mut info = serde_json::json!({ "http": format!("http://{bound}"), "pid": std::process::id() });
    let cluster_task = match &cfg.cluster.redis {
        Some(url) => {
            let node = match &cfg.cluster.node {
                Some(n) => n.clone(),
                None => weir_submit::stored_node_name(&weir_store::Documents::new(store.clone())).await?,
            };
            let ca_pem = match &cfg.cluster.ca_file {
                Some(p) => {
                    Some(std::fs::read(p).with_context(|| format!("cannot read cluster.ca_file {}", p.display()))?)
                }
                None => None,
            };
            let shown = redacted(url);
            let shared = weir_submit::Shared::new(&weir_submit::ClusterConfig {
                redis: weir_cluster::RedisTarget {
                    url: url.clone(),
                    ca_pem,
                    allow_no_password: cfg.cluster.allow_no_password,
                },
                key: cluster_key.clone().context("cluster.key_file is needed")?,
                node: node.clone(),
                timeout: Duration::from_millis(cfg.cluster.timeout_ms.max(1)),
                reseed_wait: Duration::from_secs(cfg.cluster.reseed_wait_seconds),
            })
            .with_context(|| format!("bad cluster.redis {shown}"))?;
            svc.attach_cluster(Arc::new(shared));
            let task = tokio::spawn(svc.clone().run_cluster());
            // Ready once the shared counters are open (or announced anyway, refusing sends).
            for _ in 0..50 {
                if svc.admitting() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if !svc.admitting() {
                tracing::warn!(url = %shown, "redis not reachable yet: sends are refused until it is");
            }
            info["cluster_node"] = serde_json::json!(node);
            tracing::info!(%node, url = %shown, "cluster mode");
            Some(task)
        }
        None => None,
    };
    svc.set_unsubscribe_links(
        cfg.verification.public_url.clone().unwrap_or_else(|| format!("http://{bound}")),
        link_key("unsubscribe links", "unsubscribe-key")?,
    );
    if let Some(from) = &cfg.verification.from {
        svc.set_verification_mail(weir_submit::VerificationMail {
            from: from.clone(),
            base_url: cfg.verification.public_url.clone().unwrap_or_else(|| format!("http://{bound}")),
            secret: link_key("verification links", "verification-key")?,
        });
    }
    let feedback_listener = match cfg.feedback.listen {
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
            info["feedback"] = serde_json::json!(l.local_addr()?.to_string());
            Some(l)
        }
        None => None,
    };
    let mut smtp_listeners = Vec::new();
    if cfg.smtp.enabled {
        for (addr, implicit, key) in [(cfg.smtp.listen, false, "smtp"), (cfg.smtp.listen_tls, true, "smtps")] {
            let l = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
            info[key] = serde_json::json!(l.local_addr()?.to_string());
            smtp_listeners.push((l, implicit));
        }
    }

    let engine = if cfg.delivery.enabled {
        Some(delivery_engine(&cfg, svc.clone(), store.clone(), events.clone())?)
    } else {
        None
    };
    let engine_task = engine.clone().map(|e| tokio::spawn(e.run(stop_rx.clone())));
    let retention_task = tokio::spawn(retention(store.clone(), cfg.retention.clone(), stop_rx.clone()));
    let reputation_task =
        cfg.reputation.enabled.then(|| tokio::spawn(reputation(svc.clone(), cfg.reputation.clone(), stop_rx.clone())));
    // DKIM and domain verification records are checked through the delivery's DNS servers, or
    // the system's resolver.
    let dkim_resolver = if cfg.delivery.dns_servers.is_empty() {
        weir_delivery::route::HickoryResolver::system()
    } else {
        weir_delivery::route::HickoryResolver::with_servers(&cfg.delivery.dns_servers)
    };
    let dkim_task = match dkim_resolver {
        Ok(r) => Some(tokio::spawn(crate::dns_checks::run(svc.clone(), r, cfg.dkim.clone(), stop_rx.clone()))),
        Err(e) => {
            tracing::warn!(error = %e, "no usable DNS configuration: DKIM and domain verification records are not checked (set delivery.dns_servers)");
            None
        }
    };
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
        svc: svc.clone(),
        cfg: Arc::new(ApiConfig {
            max_skew_secs: cfg.http.max_skew_seconds,
            max_body_bytes: cfg.http.max_body_bytes,
            body_timeout: Duration::from_secs(cfg.http.body_timeout_seconds),
            admin_token: token,
            v2_daily_quota_code: cfg.http.v2_daily_quota_error.clone(),
        }),
        body_budget: weir_api::body::BodyBudget::new(cfg.http.max_inflight_body_bytes),
        metrics: metrics.clone(),
        metrics_text: Some({
            let text =
                metrics_text(metrics.clone(), svc.clone(), weir_store::Spool::new(store.clone()), engine.clone());
            let (m, w) = (metrics.clone(), webhook_stats.clone());
            Arc::new(move || {
                use std::sync::atomic::Ordering::Relaxed;
                m.webhooks(
                    w.delivered.load(Relaxed),
                    w.failed.load(Relaxed),
                    w.dropped.load(Relaxed),
                    w.pending.load(Relaxed),
                );
                text()
            })
        }),
    };
    let limits = weir_api::server::HttpLimits {
        caps: weir_listen::Caps { total: cfg.http.max_connections, per_ip: cfg.http.max_connections_per_ip },
        header_timeout: Duration::from_secs(cfg.http.header_timeout_seconds),
        stall_timeout: Duration::from_secs(cfg.http.stall_timeout_seconds),
        shutdown_grace: Duration::from_secs(cfg.http.shutdown_grace_seconds),
    };
    let http_task = tokio::spawn(weir_api::server::serve(listener, state.clone(), limits, stop_rx.clone()));

    let mut smtp_conns = None;
    let mut smtp_tasks = Vec::new();
    if !smtp_listeners.is_empty() {
        let ctx = smtp_context(&cfg, state.svc.clone(), stop_rx.clone(), metrics.clone())?;
        smtp_conns = Some(ctx.conns.clone());
        for (l, implicit) in smtp_listeners {
            tracing::info!(bound = %l.local_addr()?, implicit_tls = implicit, region = %cfg.smtp.region, "SMTP submission listening");
            smtp_tasks.push(tokio::spawn(weir_smtp::serve(l, ctx.clone(), implicit)));
        }
    }

    if let Some(l) = feedback_listener {
        let mut ctx = smtp_context(&cfg, state.svc.clone(), stop_rx.clone(), metrics.clone())?;
        ctx.cfg = Arc::new(weir_smtp::SmtpConfig { feedback: true, trusted_networks: vec![], ..(*ctx.cfg).clone() });
        tracing::info!(bound = %l.local_addr()?, "feedback listener (bounces and complaints) listening");
        smtp_tasks.push(tokio::spawn(weir_smtp::serve(l, ctx, false)));
    }

    if let Err(e) = dir.write_server_info(&info) {
        // Serving matters more than the file: operator commands can be given --server instead.
        tracing::error!(error = %e, "cannot write server.json; operator commands need --server {}", format!("http://{bound}"));
    }
    tracing::info!(http = %bound, data_dir = %dir.path().display(), "weir listening on http://{bound}");
    shutdown_signal().await;
    let _ = stop_tx.send(true);
    tracing::info!("shutting down: draining connections and flushing the spool");
    let _ = http_task.await;
    for t in smtp_tasks {
        let _ = t.await;
    }
    if let Some(t) = engine_task {
        let _ = t.await;
    }
    let _ = retention_task.await;
    if let Some(t) = reputation_task {
        let _ = t.await;
    }
    // A DNS look-up under way may take its whole timeout; nothing of it needs finishing.
    if let Some(t) = dkim_task {
        t.abort();
    }
    if let Some(t) = cluster_task {
        t.abort();
    }
    if let Some(e) = &engine {
        // Let deliveries already under way finish and record their results.
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while e.in_flight() > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    if let Some(c) = smtp_conns {
        // Sessions in the middle of a transaction get a few seconds to finish it.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while c.active() > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    store.shutdown();
    dir.remove_server_info();
    Ok(())
}

fn delivery_engine(
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
    Ok(Arc::new(weir_delivery::Engine::new(svc, weir_store::Spool::new(spool), ecfg, router, events)?))
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
