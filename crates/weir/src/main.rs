//! `weir`: the server and its operator commands.
//!
//! # Layout
//! - `config`: `weir.toml` with defaults for every setting.
//! - `serve`: wiring of store → service → HTTP front door, and the data-dir files
//!   (`admin-token`, `server.json`).
//! - `admin`: the operator commands, which talk to the running server's admin API.

// Many small, short-lived allocations per request (headers, JSON, MIME) from several threads:
// mimalloc's thread-local free lists serve them with less contention than glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod admin;
mod admin_client;
mod config;
mod data_dir;
mod dns_checks;
mod doctor;
mod identity_check;
mod queue;
mod serve;
mod simulate;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// A self-hosted, SES-compatible email sending service.
#[derive(Parser)]
#[command(name = "weir", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

/// Where to find the data directory and the server.
#[derive(Args, Clone)]
struct Target {
    /// Data directory (holds the admin token and the running server's address).
    #[arg(long, env = "WEIR_DATA_DIR", default_value = "weir-data", global = true)]
    data_dir: PathBuf,
    /// Base URL of the running server (default: read from <data-dir>/server.json).
    #[arg(long, env = "WEIR_SERVER", global = true)]
    server: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (embedded storage in --data-dir, HTTP API on --http).
    Serve(serve::ServeArgs),
    /// Manage accounts, their credentials and quotas.
    Account {
        #[command(subcommand)]
        cmd: admin::AccountCmd,
        #[command(flatten)]
        target: Target,
    },
    /// Manage sending identities (addresses and domains).
    Identity {
        #[command(subcommand)]
        cmd: admin::IdentityCmd,
        #[command(flatten)]
        target: Target,
    },
    /// Run the lane controller and two baselines against modelled providers in virtual time.
    Simulate(simulate::SimulateArgs),
    /// Queue control through the running server: summary, list, show, retry, hold, release,
    /// delete.
    Queue {
        #[command(subcommand)]
        cmd: queue::QueueCmd,
        #[command(flatten)]
        target: Target,
    },
    /// Read a delivery log (weir's events.jsonl or Postfix's mail.log) and report per provider:
    /// deferral classes, first-deferral vs final delivery, pauses, what to change.
    Doctor(doctor::DoctorArgs),
    /// Cluster mode: what the node knows of the cluster (Redis, epoch, members, catalog stream).
    Cluster {
        #[command(subcommand)]
        cmd: admin::ClusterCmd,
        #[command(flatten)]
        target: Target,
    },
    /// Inspect the spool (works whether or not the server runs).
    Spool {
        #[command(subcommand)]
        cmd: admin::SpoolCmd,
        #[command(flatten)]
        target: Target,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Command::Serve(args) => serve::run(args),
        Command::Account { cmd, target } => admin::account(cmd, &admin::Client::new(&target.data_dir, target.server)?),
        Command::Identity { cmd, target } => {
            admin::identity(cmd, &admin::Client::new(&target.data_dir, target.server)?)
        }
        Command::Queue { cmd, target } => queue::run(cmd, &admin::Client::new(&target.data_dir, target.server)?),
        Command::Cluster { cmd: admin::ClusterCmd::Keygen, .. } => {
            println!("{}", admin::keygen());
            Ok(())
        }
        Command::Cluster { cmd, target } => admin::cluster(cmd, &admin::Client::new(&target.data_dir, target.server)?),
        Command::Spool { cmd, target } => admin::spool(cmd, &target.data_dir),
        Command::Simulate(args) => simulate::run(args),
        Command::Doctor(args) => doctor::run(args),
    }
}
