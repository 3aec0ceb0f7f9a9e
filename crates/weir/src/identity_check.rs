//! `weir identity check`: the DNS records an identity needs (from the server), each looked up
//! and reported as published, different or missing.

use std::net::SocketAddr;

use anyhow::bail;
use serde_json::Value;
use weir_delivery::route::{HickoryResolver, Resolver};

use crate::admin_client::{Client, seg};

/// What DNS shows for one wanted record.
async fn verdict(resolver: &HickoryResolver, r: &Value) -> Result<String, String> {
    let (name, kind, value, purpose) = (
        r["name"].as_str().unwrap_or(""),
        r["type"].as_str().unwrap_or(""),
        r["value"].as_str().unwrap_or(""),
        r["purpose"].as_str().unwrap_or(""),
    );
    if kind == "MX" {
        // The wanted value is "10 <host>": some MX record must name that host.
        let want = value.split_whitespace().last().unwrap_or("").trim_end_matches('.');
        return match resolver.mx(name).await {
            Ok(mx) if mx.iter().any(|(_, h)| h.trim_end_matches('.').eq_ignore_ascii_case(want)) => {
                Ok(format!("MX {want}"))
            }
            Ok(mx) if !mx.is_empty() => Err(format!(
                "MX names {}, not {want}",
                mx.iter().map(|(_, h)| h.trim_end_matches('.')).collect::<Vec<_>>().join(", ")
            )),
            Ok(_) => Err("no MX record".into()),
            Err(e) => Err(e.to_string()),
        };
    }
    let txts = resolver.txt(name).await.map_err(|e| format!("DNS did not answer: {e}"))?;
    let found = if purpose == "DKIM" {
        let want = crate::dns_checks::published_key(value);
        txts.iter().find(|t| crate::dns_checks::published_key(t) == want)
    } else if purpose.starts_with("DMARC") {
        txts.iter().find(|t| t.trim_start().starts_with("v=DMARC1"))
    } else if purpose.contains("SPF") {
        txts.iter().find(|t| t.trim_start().starts_with("v=spf1"))
    } else {
        txts.iter().find(|t| t.trim() == value)
    };
    match (found, txts.is_empty()) {
        (Some(t), _) => Ok(t.chars().take(60).collect()),
        (None, true) => Err("no TXT record".into()),
        (None, false) => Err(format!("published, but not this value ({} other)", txts.len())),
    }
}

/// Run the check; fails (exit status 1) when a record is missing.
pub fn run(c: &Client, name: &str, region: &str, identity: &str, dns: &[SocketAddr]) -> anyhow::Result<()> {
    let path = format!("/admin/v1/accounts/{}/regions/{}/identities/{}/dns", seg(name), seg(region), seg(identity));
    let v = c.call("GET", &path, None)?;
    let resolver = if dns.is_empty() { HickoryResolver::system() } else { HickoryResolver::with_servers(dns) }
        .map_err(|e| anyhow::anyhow!("cannot set up DNS: {e}"))?;
    let records: Vec<Value> = v["records"].as_array().cloned().unwrap_or_default();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut missing = 0;
    println!(
        "{}: verification {}, DKIM {} (as the server last saw them)",
        v["identity"].as_str().unwrap_or(identity),
        v["verification"].as_str().unwrap_or(""),
        v["dkim"].as_str().unwrap_or("")
    );
    for r in &records {
        let line = format!(
            "{} {} ({})",
            r["name"].as_str().unwrap_or(""),
            r["type"].as_str().unwrap_or(""),
            r["purpose"].as_str().unwrap_or("")
        );
        match rt.block_on(verdict(&resolver, r)) {
            Ok(seen) => println!("  ok       {line}: {seen}"),
            Err(why) => {
                missing += 1;
                println!("  MISSING  {line}: {why}\n           publish: {}", r["value"].as_str().unwrap_or(""));
            }
        }
    }
    if missing > 0 {
        bail!("{missing} of {} records missing", records.len());
    }
    println!("all {} records published", records.len());
    Ok(())
}
