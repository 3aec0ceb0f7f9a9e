//! Operator commands: `weir account …`, `weir identity …`, `weir spool …`.

use std::path::Path;

use anyhow::Context;
use clap::{ArgGroup, Subcommand};
use serde_json::{Value, json};

pub use crate::admin_client::{Client, seg};

/// `weir account`.
#[derive(Subcommand)]
pub enum AccountCmd {
    /// Create an account; prints its access key, secret and SES SMTP credentials.
    Create {
        /// Account name.
        name: String,
        /// Region for the SMTP password.
        #[arg(long, default_value = "us-east-1")]
        region: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List accounts.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print an account's credentials (SMTP password for --region).
    Credentials {
        /// Account name.
        name: String,
        /// Region for the SMTP password.
        #[arg(long, default_value = "us-east-1")]
        region: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show or change the sending quota of an account in a region.
    #[command(group(ArgGroup::new("mode").args(["production", "sandbox"])))]
    Quota {
        /// Account name.
        name: String,
        /// Region.
        #[arg(long)]
        region: String,
        /// Max24HourSend (-1 for unlimited).
        #[arg(long, allow_hyphen_values = true)]
        max_24h: Option<i64>,
        /// MaxSendRate per second (-1 for unlimited).
        #[arg(long, allow_hyphen_values = true)]
        max_rate: Option<f64>,
        /// Burst capacity, in seconds of the send rate.
        #[arg(long)]
        burst_seconds: Option<f64>,
        /// Move out of the sandbox (recipients need not be verified).
        #[arg(long)]
        production: bool,
        /// Move back into the sandbox (resets quotas to 200/day, 1/s).
        #[arg(long)]
        sandbox: bool,
        /// Pause (false) or resume (true) sending.
        #[arg(long)]
        sending_enabled: Option<bool>,
        /// Set the reputation enforcement status (HEALTHY lifts a SHUTDOWN).
        #[arg(long)]
        enforcement: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `weir identity`.
#[derive(Subcommand)]
pub enum IdentityCmd {
    /// Add an address or domain identity to an account's region.
    Add {
        /// Account name.
        name: String,
        /// Region.
        #[arg(long)]
        region: String,
        /// Address (user@example.com) or domain (example.com).
        identity: String,
        /// Mark it verified (the operator vouches for it).
        #[arg(long)]
        verified: bool,
    },
    /// Start Easy DKIM for a domain identity (three keys; publish them with `weir identity dns`).
    Dkim {
        /// Account name.
        name: String,
        /// Region.
        #[arg(long)]
        region: String,
        /// Domain.
        domain: String,
        /// Key type: rsa2048 (SES's default), rsa1024 or ed25519.
        #[arg(long, default_value = "rsa2048")]
        key: String,
    },
    /// Rotate an Easy DKIM domain's key: a new key waits under a new selector (publish it, see
    /// `weir identity dns`) and signs once DNS shows it; the oldest key is then dropped.
    DkimRotate {
        /// Account name.
        name: String,
        /// Region.
        #[arg(long)]
        region: String,
        /// Domain.
        domain: String,
    },
    /// The DNS records an identity needs (DKIM keys, domain verification, DMARC) and the
    /// status weir last saw.
    Dns {
        /// Account name.
        name: String,
        /// Region.
        #[arg(long)]
        region: String,
        /// Address or domain.
        identity: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Look each record `dns` lists up in DNS and say which are missing (exit status 1 if any).
    Check {
        /// Account name.
        name: String,
        /// Region.
        #[arg(long)]
        region: String,
        /// Address or domain.
        identity: String,
        /// Name servers to ask (`ip:port`, repeatable); default: the system's.
        #[arg(long = "dns-server")]
        dns_servers: Vec<std::net::SocketAddr>,
    },
    /// List an account's identities in a region.
    List {
        /// Account name.
        name: String,
        /// Region.
        #[arg(long)]
        region: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `weir cluster`.
#[derive(Subcommand)]
pub enum ClusterCmd {
    /// This node, Redis, the epoch, the members and the catalog stream as the node sees them.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Forget a node that left the cluster for good (an emptied Redis then stops waiting for it
    /// to re-seed); ask any other node.
    Forget {
        /// The node's name, as `weir cluster status` lists it.
        node: String,
    },
    /// Print a new cluster key (64 hex characters): put it, the same, in every node's
    /// `cluster.key_file` (mode 0600). Needs no server.
    Keygen,
}

/// A new cluster key: 32 random bytes, in hex.
pub fn keygen() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// `weir spool`.
#[derive(Subcommand)]
pub enum SpoolCmd {
    /// List spooled messages (reads the database directly).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the number of messages still waiting (a recipient queued, held or being sent);
    /// delivered and bounced ones are not counted.
    Count,
    /// Give the pages retention freed back to the file system (the server must be stopped; new
    /// mail reuses them otherwise, so this is only needed to shrink the file).
    Compact,
}

fn print_credentials(v: &Value, region: &str, as_json: bool) -> anyhow::Result<()> {
    let akid = v["access_key_id"].as_str().context("no access key in reply")?;
    let secret = v["secret_access_key"].as_str().context("no secret in reply")?;
    let out = json!({
        "name": v["name"],
        "access_key_id": akid,
        "secret_access_key": secret,
        "smtp_username": akid,
        "smtp_password": weir_sigv4::smtp_password(secret, region),
        "region": region,
    });
    if as_json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for k in ["name", "region", "access_key_id", "secret_access_key", "smtp_username", "smtp_password"] {
            println!("{k:<18} {}", out[k].as_str().unwrap_or(""));
        }
    }
    Ok(())
}

fn print_table(v: &Value, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        println!("{}", serde_json::to_string_pretty(v)?);
        return Ok(());
    }
    match v {
        Value::Array(rows) => {
            for r in rows {
                let cells: Vec<String> = r
                    .as_object()
                    .map(|o| {
                        o.values().map(|c| c.as_str().map(str::to_string).unwrap_or_else(|| c.to_string())).collect()
                    })
                    .unwrap_or_default();
                println!("{}", cells.join("\t"));
            }
        }
        Value::Object(o) => {
            for (k, c) in o {
                println!("{k:<18} {}", c.as_str().map(str::to_string).unwrap_or_else(|| c.to_string()));
            }
        }
        other => println!("{other}"),
    }
    Ok(())
}

/// Run `weir account …`.
pub fn account(cmd: AccountCmd, c: &Client) -> anyhow::Result<()> {
    match cmd {
        AccountCmd::Create { name, region, json } => {
            anyhow::ensure!(weir_api::auth::is_region(&region), "'{region}' is not a region name such as us-east-1");
            let v = c.call("POST", "/admin/v1/accounts", Some(json!({ "name": name })))?;
            print_credentials(&v, &region, json)
        }
        AccountCmd::List { json } => print_table(&c.call("GET", "/admin/v1/accounts", None)?, json),
        AccountCmd::Credentials { name, region, json } => {
            anyhow::ensure!(weir_api::auth::is_region(&region), "'{region}' is not a region name such as us-east-1");
            let v = c.call("GET", &format!("/admin/v1/accounts/{}/credentials", seg(&name)), None)?;
            print_credentials(&v, &region, json)
        }
        AccountCmd::Quota {
            name,
            region,
            max_24h,
            max_rate,
            burst_seconds,
            production,
            sandbox,
            sending_enabled,
            enforcement,
            json,
        } => {
            let path = format!("/admin/v1/accounts/{}/regions/{}", seg(&name), seg(&region));
            let mut patch = serde_json::Map::new();
            if sandbox {
                patch.insert("production".into(), json!(false));
            }
            if production {
                patch.insert("production".into(), json!(true));
            }
            if let Some(v) = max_24h {
                patch.insert("max_24h".into(), json!(v));
            }
            if let Some(v) = max_rate {
                patch.insert("max_rate".into(), json!(v));
            }
            if let Some(v) = burst_seconds {
                patch.insert("burst_seconds".into(), json!(v));
            }
            if let Some(v) = sending_enabled {
                patch.insert("sending_enabled".into(), json!(v));
            }
            if let Some(v) = enforcement {
                patch.insert("enforcement".into(), json!(v));
            }
            let v = if patch.is_empty() {
                c.call("GET", &path, None)?
            } else {
                c.call("PUT", &path, Some(Value::Object(patch)))?
            };
            print_table(&v, json)
        }
    }
}

/// Run `weir identity …`.
pub fn identity(cmd: IdentityCmd, c: &Client) -> anyhow::Result<()> {
    match cmd {
        IdentityCmd::Add { name, region, identity, verified } => {
            let path = format!("/admin/v1/accounts/{}/regions/{}/identities", seg(&name), seg(&region));
            let v = c.call("POST", &path, Some(json!({ "identity": identity, "verified": verified })))?;
            println!(
                "{}\t{}\t{}",
                v["identity"].as_str().unwrap_or(""),
                v["kind"].as_str().unwrap_or(""),
                v["status"].as_str().unwrap_or("")
            );
            Ok(())
        }
        IdentityCmd::Dkim { name, region, domain, key } => {
            let path =
                format!("/admin/v1/accounts/{}/regions/{}/identities/{}/dkim", seg(&name), seg(&region), seg(&domain));
            let v = c.call("POST", &path, Some(json!({ "key": key })))?;
            println!(
                "{}\tDKIM {}\t{}\ttokens {}",
                v["identity"].as_str().unwrap_or(""),
                v["status"].as_str().unwrap_or(""),
                v["key"].as_str().unwrap_or(""),
                v["tokens"]
                    .as_array()
                    .map(|t| t.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(" "))
                    .unwrap_or_default()
            );
            Ok(())
        }
        IdentityCmd::DkimRotate { name, region, domain } => {
            let path = format!(
                "/admin/v1/accounts/{}/regions/{}/identities/{}/dkim/rotate",
                seg(&name),
                seg(&region),
                seg(&domain)
            );
            let v = c.call("POST", &path, Some(json!({})))?;
            println!(
                "{}\tnext key {} under selector {}: publish it (weir identity dns); it signs once DNS shows it",
                v["identity"].as_str().unwrap_or(""),
                v["key"].as_str().unwrap_or(""),
                v["pending"].as_str().unwrap_or("")
            );
            Ok(())
        }
        IdentityCmd::Dns { name, region, identity, json } => {
            let path =
                format!("/admin/v1/accounts/{}/regions/{}/identities/{}/dns", seg(&name), seg(&region), seg(&identity));
            let v = c.call("GET", &path, None)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            println!(
                "{}: verification {}, DKIM {} (signing {})",
                v["identity"].as_str().unwrap_or(""),
                v["verification"].as_str().unwrap_or(""),
                v["dkim"].as_str().unwrap_or(""),
                if v["dkim_signing"].as_bool().unwrap_or(false) { "enabled" } else { "disabled" }
            );
            for r in v["records"].as_array().into_iter().flatten() {
                println!(
                    "{}\t{}\t\"{}\"\t; {}",
                    r["name"].as_str().unwrap_or(""),
                    r["type"].as_str().unwrap_or(""),
                    r["value"].as_str().unwrap_or(""),
                    r["purpose"].as_str().unwrap_or("")
                );
            }
            Ok(())
        }
        IdentityCmd::Check { name, region, identity, dns_servers } => {
            crate::identity_check::run(c, &name, &region, &identity, &dns_servers)
        }
        IdentityCmd::List { name, region, json } => {
            let path = format!("/admin/v1/accounts/{}/regions/{}/identities", seg(&name), seg(&region));
            print_table(&c.call("GET", &path, None)?, json)
        }
    }
}

/// Run a `weir cluster` command.
pub fn cluster(cmd: ClusterCmd, c: &Client) -> anyhow::Result<()> {
    match cmd {
        ClusterCmd::Keygen => {
            println!("{}", keygen());
            Ok(())
        }
        ClusterCmd::Forget { node } => {
            c.call("POST", "/admin/v1/cluster/forget", Some(json!({ "node": node })))?;
            println!("forgot {node}");
            Ok(())
        }
        ClusterCmd::Status { json } => {
            let v = c.call("GET", "/admin/v1/cluster", None)?;
            if json {
                println!("{v}");
            } else {
                let members: Vec<&str> =
                    v["members"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                println!("node      {}", v["node"].as_str().unwrap_or("?"));
                println!("redis     {}", if v["redis_up"].as_bool() == Some(true) { "up" } else { "DOWN" });
                match v["epoch"].as_str() {
                    Some(e) => println!("epoch     {e} (admitting sends)"),
                    None => println!("epoch     none: sends are refused until redis answers and is re-seeded"),
                }
                println!("members   {}", members.join(", "));
                println!(
                    "catalog   stream at {}{}",
                    v["stream_id"].as_str().unwrap_or("?"),
                    if v["caught_up"].as_bool() == Some(true) { "" } else { " (catching up)" }
                );
                println!("outbox    {} change(s) waiting for redis", v["outbox"]);
            }
            Ok(())
        }
    }
}

/// Run `weir spool …` against the database directly.
pub fn spool(cmd: SpoolCmd, data_dir: &Path) -> anyhow::Result<()> {
    if let SpoolCmd::Compact = cmd {
        anyhow::ensure!(data_dir.is_dir(), "no data dir at {}", data_dir.display());
        // Holding the data dir's lock keeps a server from starting meanwhile, and fails if one runs.
        let _held = crate::data_dir::DataDir::open(data_dir)?;
        let (before, after) = weir_store::Store::compact(data_dir)?;
        println!("weir.db: {before} bytes before, {after} after");
        return Ok(());
    }
    let db = weir_store::Store::open_read_only(data_dir)?;
    if let SpoolCmd::Count = cmd {
        println!("{}", db.waiting_messages()?);
        return Ok(());
    }
    let list = db.spool_list()?;
    match cmd {
        SpoolCmd::Count | SpoolCmd::Compact => {}
        SpoolCmd::List { json } => {
            if json {
                let v: Vec<Value> = list
                    .iter()
                    .map(|m| {
                        json!({"message_id": m.id, "account": m.account, "region": m.region, "created_ms": m.created_ms,
                               "mail_from": m.mail_from, "size": m.size,
                               "recipients": m.recipients.iter().map(|(a, s)| json!({"address": a, "state": s})).collect::<Vec<_>>()})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for m in &list {
                    let rcpts: Vec<String> = m.recipients.iter().map(|(a, s)| format!("{a}({s})")).collect();
                    println!("{}\t{}\t{}\t{}\t{}", m.id, m.account, m.region, m.mail_from, rcpts.join(","));
                }
            }
        }
    }
    Ok(())
}
