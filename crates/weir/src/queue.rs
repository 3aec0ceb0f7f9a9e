//! `weir queue …`: the operator's queue control, through the running server's admin API.

use anyhow::bail;
use clap::{Args, Subcommand};
use serde_json::Value;

use crate::admin::Client;

/// Which recipients a command applies to.
#[derive(Args, Clone, Default)]
pub struct Filter {
    /// Only recipients in this state (queued, held, sending, delivered, bounced, …).
    #[arg(long)]
    state: Option<String>,
    /// Only this account's mail.
    #[arg(long)]
    account: Option<String>,
    /// Only this recipient address.
    #[arg(long)]
    recipient: Option<String>,
    /// Only recipients last attempted in this lane (as `GET /admin/v1/delivery` names it).
    #[arg(long)]
    lane: Option<String>,
    /// Only messages accepted at least this many seconds ago.
    #[arg(long)]
    older_than: Option<u64>,
}

impl Filter {
    fn query(&self, limit: Option<usize>) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        let pairs = [
            ("state", self.state.clone()),
            ("account", self.account.clone()),
            ("recipient", self.recipient.clone()),
            ("lane", self.lane.clone()),
            ("older_than_seconds", self.older_than.map(|s| s.to_string())),
            ("limit", limit.map(|l| l.to_string())),
        ];
        for (k, v) in pairs {
            if let Some(v) = v {
                q.append_pair(k, &v);
            }
        }
        let q = q.finish();
        if q.is_empty() { q } else { format!("?{q}") }
    }
}

/// `weir queue` commands.
#[derive(Subcommand)]
pub enum QueueCmd {
    /// What is waiting, by state and lane (recipients, messages, oldest).
    Summary {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Recipients in the spool, oldest message first.
    List {
        #[command(flatten)]
        filter: Filter,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One message: every recipient's state, attempts, last reply and next attempt.
    Show {
        /// MessageId.
        message_id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Attempt queued recipients now.
    Retry(Target),
    /// Stop attempting queued recipients until released.
    Hold(Target),
    /// Queue held recipients again (attempted now).
    Release(Target),
    /// Take queued or held recipients out of the queue: each gets a Bounce event.
    Delete(Target),
}

/// A message, or a filter, for a command.
#[derive(Args)]
pub struct Target {
    /// MessageId (or give filters instead).
    message_id: Option<String>,
    #[command(flatten)]
    filter: Filter,
}

fn ms_to_iso(v: &Value) -> String {
    v.as_i64()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| "-".into())
}

fn print_rows(rows: &Value) {
    println!(
        "{:<40} {:<32} {:<9} {:>3} {:<20} {:<20} last reply",
        "message", "recipient", "state", "try", "accepted", "next attempt"
    );
    for r in rows.as_array().into_iter().flatten() {
        println!(
            "{:<40} {:<32} {:<9} {:>3} {:<20} {:<20} {}",
            r["message_id"].as_str().unwrap_or(""),
            r["address"].as_str().unwrap_or(""),
            r["state"].as_str().unwrap_or(""),
            r["attempts"],
            ms_to_iso(&r["created_ms"]),
            ms_to_iso(&r["next_attempt_ms"]),
            r["last_reply"].as_str().unwrap_or("-"),
        );
    }
}

/// Run a `weir queue` command.
pub fn run(cmd: QueueCmd, client: &Client) -> anyhow::Result<()> {
    match cmd {
        QueueCmd::Summary { json } => {
            let v = client.call("GET", "/admin/v1/queue/summary", None)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            println!("{:<9} {:<36} {:>10} {:>9} oldest", "state", "lane", "recipients", "messages");
            for r in v.as_array().into_iter().flatten() {
                println!(
                    "{:<9} {:<36} {:>10} {:>9} {}",
                    r["state"].as_str().unwrap_or(""),
                    r["lane"].as_str().unwrap_or("(not attempted yet)"),
                    r["recipients"],
                    r["messages"],
                    ms_to_iso(&r["oldest_created_ms"])
                );
            }
        }
        QueueCmd::List { filter, limit, json } => {
            let v = client.call("GET", &format!("/admin/v1/queue{}", filter.query(Some(limit))), None)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_rows(&v);
            }
        }
        QueueCmd::Show { message_id, json } => {
            let v = client.call("GET", &format!("/admin/v1/queue/{}", crate::admin::seg(&message_id)), None)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_rows(&v);
            }
        }
        QueueCmd::Retry(t) => command(client, "retry", t)?,
        QueueCmd::Hold(t) => command(client, "hold", t)?,
        QueueCmd::Release(t) => command(client, "release", t)?,
        QueueCmd::Delete(t) => command(client, "delete", t)?,
    }
    Ok(())
}

fn command(client: &Client, action: &str, t: Target) -> anyhow::Result<()> {
    let path = match &t.message_id {
        Some(id) => format!("/admin/v1/queue/{}/{action}{}", crate::admin::seg(id), t.filter.query(None)),
        None => {
            let q = t.filter.query(None);
            if q.is_empty() {
                bail!(
                    "give a MessageId or at least one filter (--state, --account, --recipient, --lane, --older-than)"
                );
            }
            format!("/admin/v1/queue/{action}{q}")
        }
    };
    let v = client.call("POST", &path, None)?;
    println!("{action}: {} recipient(s)", v["recipients"]);
    Ok(())
}
