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
mod parts;
use background::{metrics_text, reputation, retention};
use parts::{delivery_engine, smtp_context};

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

/// Keys of return paths and links: in a cluster, derived from the cluster key, so that every
/// node honours what another made; otherwise this node's own, kept in the data dir.
struct LinkKeys<'a> {
    cluster: Option<weir_cluster::seal::ClusterKey>,
    dir: &'a DataDir,
}

impl LinkKeys<'_> {
    fn get(&self, purpose: &str, file: &str) -> anyhow::Result<Vec<u8>> {
        match &self.cluster {
            Some(k) => Ok(k.derive(purpose)),
            None => Ok(self.dir.secret(file)?),
        }
    }
}

/// The sockets of a server, bound before anything else starts: a start that fails (a port in
/// use) leaves the spool as it found it.
struct Listeners {
    http: tokio::net::TcpListener,
    /// SMTP submission, each with whether its TLS is implicit.
    smtp: Vec<(tokio::net::TcpListener, bool)>,
    feedback: Option<tokio::net::TcpListener>,
}

impl Listeners {
    /// Bind every configured listener, noting the bound addresses in `info` (server.json).
    async fn bind(cfg: &Config, info: &mut serde_json::Value) -> anyhow::Result<Listeners> {
        let bind = |addr: SocketAddr| async move {
            tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))
        };
        let http = bind(cfg.http.listen).await?;
        info["http"] = serde_json::json!(format!("http://{}", http.local_addr()?));
        let mut smtp = Vec::new();
        if cfg.smtp.enabled {
            for (addr, implicit, key) in [(cfg.smtp.listen, false, "smtp"), (cfg.smtp.listen_tls, true, "smtps")] {
                let l = bind(addr).await?;
                info[key] = serde_json::json!(l.local_addr()?.to_string());
                smtp.push((l, implicit));
            }
        }
        let feedback = match cfg.feedback.listen {
            Some(addr) => {
                let l = bind(addr).await?;
                info["feedback"] = serde_json::json!(l.local_addr()?.to_string());
                Some(l)
            }
            None => None,
        };
        Ok(Listeners { http, smtp, feedback })
    }
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
    let keys = LinkKeys {
        cluster: match (&cfg.cluster.redis, &cfg.cluster.key_file) {
            (Some(_), Some(path)) => Some(read_cluster_key(path)?),
            _ => None,
        },
        dir: &dir,
    };
    let store = Arc::new(
        Store::open(
            dir.path(),
            StoreOptions { max_batch: cfg.spool.max_batch, fsync: cfg.spool.fsync, ..Default::default() },
        )
        .with_context(|| format!("cannot open the store in {}", dir.path().display()))?,
    );
    let events = Arc::new(weir_store::events::EventLog::open_rotating(
        dir.path(),
        cfg.retention.events_max_bytes,
        cfg.retention.events_files,
    )?);
    let mut info = serde_json::json!({ "pid": std::process::id() });
    let listeners = Listeners::bind(&cfg, &mut info).await?;
    let bound = listeners.http.local_addr()?;
    let cluster = cluster_shared(&cfg, &store, &keys, &mut info).await?;
    let svc = Arc::new(open_service(&cfg, &store, &events, &keys, cluster.as_ref().map(|c| c.0.clone()), bound)?);
    let metrics = Arc::new(weir_metrics::Metrics::new());
    let webhook_stats = event_listeners(&cfg, &events, &svc, &metrics)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let cluster_task = match &cluster {
        Some((_, shown)) => Some(start_cluster(&svc, shown).await),
        None => None,
    };
    let engine = match cfg.delivery.enabled {
        true => Some(delivery_engine(&cfg, svc.clone(), store.clone(), events.clone())?),
        false => None,
    };
    let mut running = Running {
        engine_task: engine.clone().map(|e| tokio::spawn(e.run(stop_rx.clone()))),
        background: background_tasks(&cfg, &svc, &store, &stop_rx),
        cluster_task,
        engine: engine.clone(),
        store: Some(store.clone()),
        ..Default::default()
    };
    let state = app_state(&cfg, &svc, &store, engine, metrics.clone(), webhook_stats, token);
    let limits = weir_api::server::HttpLimits {
        caps: weir_listen::Caps { total: cfg.http.max_connections, per_ip: cfg.http.max_connections_per_ip },
        header_timeout: Duration::from_secs(cfg.http.header_timeout_seconds),
        stall_timeout: Duration::from_secs(cfg.http.stall_timeout_seconds),
        shutdown_grace: Duration::from_secs(cfg.http.shutdown_grace_seconds),
    };
    running.front_doors.push(tokio::spawn(weir_api::server::serve(listeners.http, state, limits, stop_rx.clone())));
    if !listeners.smtp.is_empty() {
        let ctx = smtp_context(&cfg, svc.clone(), stop_rx.clone(), metrics.clone())?;
        running.smtp_conns = Some(ctx.conns.clone());
        for (l, implicit) in listeners.smtp {
            tracing::info!(bound = %l.local_addr()?, implicit_tls = implicit, region = %cfg.smtp.region, "SMTP submission listening");
            running.front_doors.push(tokio::spawn(weir_smtp::serve(l, ctx.clone(), implicit)));
        }
    }
    if let Some(l) = listeners.feedback {
        let mut ctx = smtp_context(&cfg, svc.clone(), stop_rx.clone(), metrics.clone())?;
        ctx.cfg = Arc::new(weir_smtp::SmtpConfig { feedback: true, trusted_networks: vec![], ..(*ctx.cfg).clone() });
        tracing::info!(bound = %l.local_addr()?, "feedback listener (bounces and complaints) listening");
        running.front_doors.push(tokio::spawn(weir_smtp::serve(l, ctx, false)));
    }
    if let Err(e) = dir.write_server_info(&info) {
        // Serving matters more than the file: operator commands can be given --server instead.
        tracing::error!(error = %e, "cannot write server.json; operator commands need --server {}", format!("http://{bound}"));
    }
    tracing::info!(http = %bound, data_dir = %dir.path().display(), "weir listening on http://{bound}");
    shutdown_signal().await;
    let _ = stop_tx.send(true);
    tracing::info!("shutting down: draining connections and flushing the spool");
    running.stop().await;
    dir.remove_server_info();
    Ok(())
}

/// Cluster mode: this node's name and the shared counters and catalog stream (nothing is
/// dialled yet), with the Redis URL as logs show it. None for the embedded single node.
async fn cluster_shared(
    cfg: &Config,
    store: &Arc<Store>,
    keys: &LinkKeys<'_>,
    info: &mut serde_json::Value,
) -> anyhow::Result<Option<(Arc<weir_submit::Shared>, String)>> {
    let Some(url) = &cfg.cluster.redis else { return Ok(None) };
    let node = match &cfg.cluster.node {
        Some(n) => n.clone(),
        None => weir_submit::stored_node_name(&weir_store::Documents::new(store.clone())).await?,
    };
    let ca_pem = match &cfg.cluster.ca_file {
        Some(p) => Some(std::fs::read(p).with_context(|| format!("cannot read cluster.ca_file {}", p.display()))?),
        None => None,
    };
    let shown = redacted(url);
    let shared = weir_submit::Shared::new(&weir_submit::ClusterConfig {
        redis: weir_cluster::RedisTarget { url: url.clone(), ca_pem, allow_no_password: cfg.cluster.allow_no_password },
        key: keys.cluster.clone().context("cluster.key_file is needed")?,
        node: node.clone(),
        timeout: Duration::from_millis(cfg.cluster.timeout_ms.max(1)),
        reseed_wait: Duration::from_secs(cfg.cluster.reseed_wait_seconds),
    })
    .with_context(|| format!("bad cluster.redis {shown}"))?;
    info["cluster_node"] = serde_json::json!(node);
    tracing::info!(%node, url = %shown, "cluster mode");
    Ok(Some((Arc::new(shared), shown)))
}

/// The service, with everything the configuration fixes at start. Links in mail point at
/// `bound` unless a public URL is configured.
fn open_service(
    cfg: &Config,
    store: &Arc<Store>,
    events: &Arc<weir_store::events::EventLog>,
    keys: &LinkKeys<'_>,
    cluster: Option<Arc<weir_submit::Shared>>,
    bound: SocketAddr,
) -> anyhow::Result<Service> {
    let defaults = RegionSettings {
        max_24h: cfg.defaults.max_24h,
        max_rate: cfg.defaults.max_rate,
        burst_seconds: cfg.defaults.burst_seconds,
        ..RegionSettings::sandbox()
    };
    let public_url = cfg.verification.public_url.clone().unwrap_or_else(|| format!("http://{bound}"));
    let verification_mail = match &cfg.verification.from {
        Some(from) => Some(weir_submit::VerificationMail {
            from: from.clone(),
            base_url: public_url.clone(),
            secret: keys.get("verification links", "verification-key")?,
        }),
        None => None,
    };
    let feedback = &cfg.feedback;
    let config = ServiceConfig {
        default_region: defaults,
        id_domain: cfg.message.id_domain.clone(),
        bulk_configuration_sets: cfg.delivery.bulk_configuration_sets.clone(),
        regions: cfg.regions.clone(),
        events: Some(events.clone()),
        cluster,
        // Return paths: at the default domain if set, and at identities' MAIL FROM domains.
        return_path: Some((
            feedback.return_path_domain.as_ref().map(|d| d.to_ascii_lowercase()),
            keys.get("return paths", "return-path-key")?,
        )),
        feedback_mx_host: feedback.mx_host.clone(),
        feedback_loops: feedback.loop_sources.iter().map(|n| n.parse()).collect::<Result<Vec<ipnet::IpNet>, _>>()?,
        feedback_reports_per_minute: feedback.reports_per_minute,
        event_topics: cfg.events.topics.iter().map(|t| (t.arn.clone(), t.accounts.clone())).collect(),
        unsubscribe_links: Some((public_url, keys.get("unsubscribe links", "unsubscribe-key")?)),
        verification_mail,
    };
    Ok(Service::open(store.clone(), config, system_clock())?)
}

/// What listens to SES events: the metrics (every event counted where it is emitted, whichever
/// front door or engine emits it), the webhooks and the SNS-style topics.
fn event_listeners(
    cfg: &Config,
    events: &Arc<weir_store::events::EventLog>,
    svc: &Arc<Service>,
    metrics: &Arc<weir_metrics::Metrics>,
) -> anyhow::Result<Arc<weir_delivery::webhooks::WebhookStats>> {
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
    let stats = Arc::new(weir_delivery::webhooks::WebhookStats::default());
    if !cfg.delivery.webhooks.is_empty() {
        events.add_listener(weir_delivery::webhooks::start(
            cfg.delivery.webhooks.clone(),
            10_000,
            cfg.delivery.webhook_attempts,
            stats.clone(),
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
        let port = svc.delivery_port();
        events.add_listener(weir_delivery::webhooks::start_topics(topics, port, cfg.events.queue, stats.clone())?);
    }
    Ok(stats)
}

/// Keep this node in step with the cluster; ready once the shared counters are open (or
/// announced anyway after five seconds, refusing sends until Redis answers).
async fn start_cluster(svc: &Arc<Service>, shown: &str) -> tokio::task::JoinHandle<()> {
    let task = tokio::spawn(svc.clone().run_cluster());
    for _ in 0..50 {
        if svc.admitting() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !svc.admitting() {
        tracing::warn!(url = %shown, "redis not reachable yet: sends are refused until it is");
    }
    task
}

/// Retention sweeps, reputation judgement and the DNS checks of DKIM and domain verification
/// records (through the delivery's DNS servers, or the system's resolver).
fn background_tasks(
    cfg: &Config,
    svc: &Arc<Service>,
    store: &Arc<Store>,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Background {
    let retention = tokio::spawn(retention(store.clone(), cfg.retention.clone(), stop.clone()));
    let reputation =
        cfg.reputation.enabled.then(|| tokio::spawn(reputation(svc.clone(), cfg.reputation.clone(), stop.clone())));
    let resolver = if cfg.delivery.dns_servers.is_empty() {
        weir_delivery::route::HickoryResolver::system()
    } else {
        weir_delivery::route::HickoryResolver::with_servers(&cfg.delivery.dns_servers)
    };
    let dns_checks = match resolver {
        Ok(r) => Some(tokio::spawn(crate::dns_checks::run(svc.clone(), r, cfg.dkim.clone(), stop.clone()))),
        Err(e) => {
            tracing::warn!(error = %e, "no usable DNS configuration: DKIM and domain verification records are not checked (set delivery.dns_servers)");
            None
        }
    };
    Background { retention: Some(retention), reputation, dns_checks }
}

/// The HTTP front door's state: the service, the limits, the metrics and the delivery status.
fn app_state(
    cfg: &Config,
    svc: &Arc<Service>,
    store: &Arc<Store>,
    engine: Option<Arc<weir_delivery::Engine>>,
    metrics: Arc<weir_metrics::Metrics>,
    webhook_stats: Arc<weir_delivery::webhooks::WebhookStats>,
    admin_token: String,
) -> AppState {
    use std::sync::atomic::Ordering::Relaxed;
    let w = webhook_stats.clone();
    let delivery_status = engine.clone().map(|e| -> weir_api::StatusFn {
        Arc::new(move || {
            let mut v = e.status();
            v["webhooks"] = serde_json::json!({
                "delivered": w.delivered.load(Relaxed),
                "failed": w.failed.load(Relaxed),
                "dropped": w.dropped.load(Relaxed),
            });
            v
        })
    });
    let text = metrics_text(metrics.clone(), svc.clone(), weir_store::Spool::new(store.clone()), engine);
    let (m, w) = (metrics.clone(), webhook_stats);
    let metrics_text: Arc<dyn Fn() -> String + Send + Sync> = Arc::new(move || {
        m.webhooks(w.delivered.load(Relaxed), w.failed.load(Relaxed), w.dropped.load(Relaxed), w.pending.load(Relaxed));
        text()
    });
    AppState {
        delivery_status,
        svc: svc.clone(),
        cfg: Arc::new(ApiConfig {
            max_skew_secs: cfg.http.max_skew_seconds,
            max_body_bytes: cfg.http.max_body_bytes,
            body_timeout: Duration::from_secs(cfg.http.body_timeout_seconds),
            admin_token,
            v2_daily_quota_code: cfg.http.v2_daily_quota_error.clone(),
        }),
        body_budget: weir_api::body::BodyBudget::new(cfg.http.max_inflight_body_bytes),
        metrics,
        metrics_text: Some(metrics_text),
    }
}

/// The background loops beside the front doors.
#[derive(Default)]
struct Background {
    retention: Option<tokio::task::JoinHandle<()>>,
    reputation: Option<tokio::task::JoinHandle<()>>,
    dns_checks: Option<tokio::task::JoinHandle<()>>,
}

/// A running server's tasks, and what must be flushed when it stops.
#[derive(Default)]
struct Running {
    /// The HTTP, SMTP and feedback listeners.
    front_doors: Vec<tokio::task::JoinHandle<()>>,
    engine_task: Option<tokio::task::JoinHandle<()>>,
    background: Background,
    cluster_task: Option<tokio::task::JoinHandle<()>>,
    engine: Option<Arc<weir_delivery::Engine>>,
    smtp_conns: Option<Arc<weir_listen::ConnLimiter>>,
    store: Option<Arc<Store>>,
}

impl Running {
    /// After the stop signal was sent: wait for every task to end, let work under way finish
    /// (bounded), and flush the spool.
    async fn stop(self) {
        for t in self.front_doors {
            let _ = t.await;
        }
        for t in [self.engine_task, self.background.retention, self.background.reputation].into_iter().flatten() {
            let _ = t.await;
        }
        // A DNS look-up under way may take its whole timeout; nothing of it needs finishing.
        for t in [self.background.dns_checks, self.cluster_task].into_iter().flatten() {
            t.abort();
        }
        if let Some(e) = &self.engine {
            // Let deliveries already under way finish and record their results.
            let deadline = std::time::Instant::now() + Duration::from_secs(15);
            while e.in_flight() > 0 && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        if let Some(c) = &self.smtp_conns {
            // Sessions in the middle of a transaction get a few seconds to finish it.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while c.active() > 0 && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        if let Some(s) = &self.store {
            s.shutdown();
        }
    }
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
