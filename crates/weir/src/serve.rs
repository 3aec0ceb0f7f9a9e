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
    let svc = Arc::new(Service::open(
        store.clone(),
        ServiceConfig { default_region: defaults, id_domain: cfg.message.id_domain.clone() },
        system_clock(),
    )?);
    let state = AppState {
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
    let info = serde_json::json!({ "http": format!("http://{bound}"), "pid": std::process::id() });
    let server_file = cfg.data_dir.join("server.json");
    std::fs::write(&server_file, format!("{info}\n"))?;
    tracing::info!(http = %bound, data_dir = %cfg.data_dir.display(), "weir listening on http://{bound}");
    axum::serve(listener, weir_api::router(state)).with_graceful_shutdown(shutdown_signal()).await?;
    tracing::info!("shutting down: flushing the spool");
    store.shutdown();
    let _ = std::fs::remove_file(&server_file);
    Ok(())
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
