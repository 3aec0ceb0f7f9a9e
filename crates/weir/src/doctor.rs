//! `weir doctor LOG…`: what a delivery log says about each provider — weir's own events.jsonl
//! or a Postfix mail log (`/var/log/mail.log` format), told apart line by line. Per provider:
//! the classes of deferral replies with examples, first-deferral vs final delivery rates with
//! the action bands, pauses and their causes, and what to change.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use serde_json::Value;
use weir_classify::classify::{Category, category};
use weir_classify::provider::{Provider, of_host};
use weir_classify::reply::{Reply, parse_enhanced};

/// Options of `weir doctor`.
#[derive(Args)]
pub struct DoctorArgs {
    /// Log files: weir's events.jsonl or Postfix's mail.log (either, or both).
    #[arg(required = true)]
    logs: Vec<PathBuf>,
    /// Write an HTML report instead of text.
    #[arg(long)]
    html: bool,
}

/// How one attempt for one recipient ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Delivered,
    Deferred,
    Bounced,
}

/// One attempt read from a log line.
#[derive(Debug, Clone, PartialEq)]
struct Attempt {
    /// Message and recipient (Postfix: queue id and recipient).
    key: String,
    provider: Provider,
    status: Status,
    reply: Option<Reply>,
}

/// What the lines said, per provider.
#[derive(Debug, Default)]
struct ProviderReport {
    first_attempts: u64,
    first_deferred: u64,
    delivered: u64,
    bounced: u64,
    deferrals: u64,
    classes: BTreeMap<String, (u64, Vec<String>)>,
    categories: BTreeMap<String, Category>,
    pauses: Vec<String>,
}

/// The analysis: every attempt in order, then per provider.
#[derive(Debug, Default)]
struct Doctor {
    seen: HashMap<String, Status>,
    providers: BTreeMap<&'static str, ProviderReport>,
    lines: u64,
    understood: u64,
}

impl Doctor {
    fn line(&mut self, line: &str) {
        self.lines += 1;
        if line.trim_start().starts_with('{') {
            if let Ok(v) = serde_json::from_str::<Value>(line) {
                self.understood += 1;
                for a in weir_event(&v) {
                    self.attempt(a);
                }
                if v["eventType"] == "LaneChange" && v["lane"]["change"]["kind"] == "pause" {
                    let p = v["lane"]["provider"].as_str().unwrap_or("other").to_string();
                    let reason = v["lane"]["change"]["reason"].as_str().unwrap_or("").to_string();
                    let provider = provider_named(&p);
                    self.providers.entry(provider.as_str()).or_default().pauses.push(reason);
                }
            }
        } else if let Some(a) = postfix_line(line) {
            self.understood += 1;
            self.attempt(a);
        }
    }

    fn attempt(&mut self, a: Attempt) {
        let r = self.providers.entry(a.provider.as_str()).or_default();
        let first = !self.seen.contains_key(&a.key);
        if first {
            r.first_attempts += 1;
            if a.status == Status::Deferred {
                r.first_deferred += 1;
            }
        }
        match a.status {
            Status::Delivered => r.delivered += 1,
            Status::Bounced => r.bounced += 1,
            Status::Deferred => r.deferrals += 1,
        }
        if a.status != Status::Delivered
            && let Some(reply) = &a.reply
        {
            let (cat, rule) = category(reply, a.provider);
            let name = format!("{cat:?} ({rule})");
            r.categories.insert(name.clone(), cat);
            let e = r.classes.entry(name).or_default();
            e.0 += 1;
            if e.1.len() < 2 && !e.1.contains(&reply.to_string()) {
                e.1.push(reply.to_string());
            }
        }
        self.seen.insert(a.key, a.status);
    }
}

fn provider_named(name: &str) -> Provider {
    [Provider::Google, Provider::Microsoft, Provider::Yahoo, Provider::Apple]
        .into_iter()
        .find(|p| p.as_str() == name)
        .unwrap_or(Provider::Other)
}

fn domain_provider(rcpt: &str) -> Provider {
    let domain = rcpt.rsplit_once('@').map_or("", |(_, d)| d);
    // Mailbox domains resolve to their provider's MX names (gmail.com → google.com and so on).
    match domain.to_ascii_lowercase().as_str() {
        "gmail.com" | "googlemail.com" => Provider::Google,
        "outlook.com" | "hotmail.com" | "live.com" | "msn.com" => Provider::Microsoft,
        "yahoo.com" | "aol.com" | "ymail.com" => Provider::Yahoo,
        "icloud.com" | "me.com" | "mac.com" => Provider::Apple,
        d => of_host(d),
    }
}

/// `smtp; 451 4.7.500 …` → the reply.
fn diagnostic(v: &Value) -> Option<Reply> {
    let d = v["diagnosticCode"].as_str()?;
    Reply::parse(d.strip_prefix("smtp; ").unwrap_or(d))
}

fn weir_event(v: &Value) -> Vec<Attempt> {
    let id = v["mail"]["messageId"].as_str().unwrap_or("");
    let make = |rcpt: &str, status, reply, mta: Option<&str>| Attempt {
        key: format!("{id} {rcpt}"),
        provider: mta
            .map(|m| of_host(m.rsplit_once(':').map_or(m, |(h, _)| h)))
            .filter(|p| *p != Provider::Other)
            .unwrap_or_else(|| domain_provider(rcpt)),
        status,
        reply,
    };
    match v["eventType"].as_str() {
        Some("Delivery") => v["delivery"]["recipients"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str())
            .map(|r| make(r, Status::Delivered, None, v["delivery"]["reportingMTA"].as_str()))
            .collect(),
        Some("DeliveryDelay") => v["deliveryDelay"]["delayedRecipients"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| make(r["emailAddress"].as_str().unwrap_or(""), Status::Deferred, diagnostic(r), None))
            .collect(),
        Some("Bounce") => v["bounce"]["bouncedRecipients"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| make(r["emailAddress"].as_str().unwrap_or(""), Status::Bounced, diagnostic(r), None))
            .collect(),
        _ => Vec::new(),
    }
}

/// `… postfix/smtp[1]: QID: to=<r@d>, relay=host[ip]:25, …, dsn=4.7.28, status=deferred (host … said: 421 … (in reply to RCPT TO command))`.
fn postfix_line(line: &str) -> Option<Attempt> {
    if !line.contains("postfix/") {
        return None;
    }
    let (head, rest) = line.split_once(": to=<")?;
    let qid = head.rsplit(' ').next()?;
    let (rcpt, rest) = rest.split_once('>')?;
    let field =
        |name: &str| rest.split(", ").find_map(|f| f.strip_prefix(name)).map(|v| v.split(' ').next().unwrap_or(v));
    let status = match field("status=")? {
        "sent" => Status::Delivered,
        "deferred" => Status::Deferred,
        "bounced" | "expired" => Status::Bounced,
        _ => return None,
    };
    let relay = field("relay=").unwrap_or("none");
    let relay_host = relay.split('[').next().unwrap_or(relay);
    let provider = Some(of_host(relay_host)).filter(|p| *p != Provider::Other).unwrap_or_else(|| domain_provider(rcpt));
    let text = rest.split_once("status=").and_then(|(_, s)| s.split_once(" (")).map(|(_, t)| t.trim_end_matches(')'));
    let reply = text.and_then(|t| {
        let said = t.split_once(" said: ").map(|(_, s)| s.split(" (in reply to ").next().unwrap_or(s));
        said.and_then(Reply::parse).or_else(|| {
            // No server reply (connection refused, timeout): the DSN code stands for it.
            let dsn = parse_enhanced(field("dsn=")?)?;
            Some(Reply::new(if dsn.0 == 5 { 550 } else { 451 }, Some(dsn), t))
        })
    });
    Some(Attempt { key: format!("{qid} {rcpt}"), provider, status, reply })
}

/// The action bands for the first-deferral rate.
fn band(rate: f64) -> &'static str {
    if rate < 0.005 {
        "normal (under 0.5 %)"
    } else if rate <= 0.02 {
        "watch (0.5–2 %)"
    } else {
        "act (over 2 %)"
    }
}

fn pct(n: u64, d: u64) -> f64 {
    if d == 0 { 0.0 } else { n as f64 / d as f64 }
}

/// One provider's findings, in the order a report shows them.
struct Finding<'a> {
    name: &'a str,
    r: &'a ProviderReport,
    first: f64,
    final_: f64,
    /// (class, replies, examples), most frequent first.
    classes: Vec<(&'a str, u64, &'a [String])>,
    remedies: Vec<&'static str>,
}

fn findings(d: &Doctor) -> Vec<Finding<'_>> {
    d.providers
        .iter()
        .map(|(name, r)| {
            let mut classes: Vec<_> = r.classes.iter().map(|(c, (n, e))| (c.as_str(), *n, e.as_slice())).collect();
            classes.sort_by_key(|c| std::cmp::Reverse(c.1));
            let mut remedies: Vec<&'static str> = Vec::new();
            for m in r.categories.values().filter_map(|c| Category::remedy(*c)) {
                if !remedies.contains(&m) {
                    remedies.push(m);
                }
            }
            Finding {
                name,
                r,
                first: pct(r.first_deferred, r.first_attempts),
                final_: pct(r.delivered, r.delivered + r.bounced),
                classes,
                remedies,
            }
        })
        .collect()
}

fn text_report(d: &Doctor) -> String {
    let mut out = format!("weir doctor: {} lines read, {} understood\n", d.lines, d.understood);
    for f in findings(d) {
        let r = f.r;
        out += &format!(
            "\n== {}\n  first attempts {}, first-deferral {:.2} % — {}\n  delivered {}, bounced {}: final delivery {:.2} %\n  deferral replies {}\n",
            f.name,
            r.first_attempts,
            f.first * 100.0,
            band(f.first),
            r.delivered,
            r.bounced,
            f.final_ * 100.0,
            r.deferrals
        );
        if !f.classes.is_empty() {
            out += "  replies by class:\n";
            for (class, n, examples) in &f.classes {
                out += &format!("    {n:>7}  {class}\n");
                for e in *examples {
                    out += &format!("             e.g. {e}\n");
                }
            }
        }
        if !r.pauses.is_empty() {
            out += &format!("  pauses: {}\n", r.pauses.len());
            for p in r.pauses.iter().take(3) {
                out += &format!("    {p}\n");
            }
        }
        if !f.remedies.is_empty() {
            out += "  what to change:\n";
            for m in &f.remedies {
                out += &format!("    - {m}\n");
            }
        }
    }
    out
}

/// The same findings as a page: a summary table with the rates in their bands, then per provider
/// a bar chart of the reply classes with examples, the pauses and what to change.
fn html_report(d: &Doctor) -> String {
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
    let band_class = |rate: f64| match band(rate) {
        b if b.starts_with("normal") => "normal",
        b if b.starts_with("watch") => "watch",
        _ => "act",
    };
    let all = findings(d);
    let mut out = String::from(concat!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>weir doctor</title><style>",
        "body{font:14px system-ui,sans-serif;margin:24px;color:#1f2933}table{border-collapse:collapse}",
        "td,th{padding:4px 10px;border-bottom:1px solid #e4e7eb;text-align:left}.num{text-align:right}",
        ".normal{color:#15803d}.watch{color:#b45309}.act{color:#b91c1c;font-weight:600}",
        ".bar{display:inline-block;height:10px;background:#f59e0b;vertical-align:middle}",
        ".ex{color:#52606d;font-size:12px}h2{margin-top:28px}</style></head><body>\n",
    ));
    out += &format!(
        "<h1>weir doctor</h1><p>{} lines read, {} understood. First-deferral bands: under 0.5 % \
         normal, 0.5–2 % watch, over 2 % act.</p>\n",
        d.lines, d.understood
    );
    out += "<table id=\"summary\"><tr><th>provider</th><th>first attempts</th><th>first-deferral</th>\
            <th>delivered</th><th>bounced</th><th>final delivery</th><th>deferral replies</th><th>pauses</th></tr>\n";
    for f in &all {
        out += &format!(
            "<tr data-provider=\"{}\"><td>{}</td><td class=\"num\">{}</td><td class=\"{}\">{:.2} % ({})</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.2} %</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td></tr>\n",
            esc(f.name),
            esc(f.name),
            f.r.first_attempts,
            band_class(f.first),
            f.first * 100.0,
            band_class(f.first),
            f.r.delivered,
            f.r.bounced,
            f.final_ * 100.0,
            f.r.deferrals,
            f.r.pauses.len()
        );
    }
    out += "</table>\n";
    for f in &all {
        out += &format!("<h2>{}</h2>\n", esc(f.name));
        if let Some(max) = f.classes.iter().map(|c| c.1).max() {
            out += "<table class=\"classes\"><tr><th>replies</th><th></th><th>class (rule) and examples</th></tr>\n";
            for (class, n, examples) in &f.classes {
                let width = (*n as f64 / max as f64 * 200.0).round().max(1.0);
                let ex: String = examples.iter().map(|e| format!("<div class=\"ex\">{}</div>", esc(e))).collect();
                out += &format!(
                    "<tr><td class=\"num\">{n}</td><td><span class=\"bar\" style=\"width:{width}px\"></span></td>\
                     <td>{}{ex}</td></tr>\n",
                    esc(class)
                );
            }
            out += "</table>\n";
        }
        if !f.r.pauses.is_empty() {
            out += &format!("<p>Pauses: {}</p><ul class=\"pauses\">", f.r.pauses.len());
            for p in f.r.pauses.iter().take(5) {
                out += &format!("<li>{}</li>", esc(p));
            }
            out += "</ul>\n";
        }
        if !f.remedies.is_empty() {
            out += "<p>What to change:</p><ul class=\"remedies\">";
            for m in &f.remedies {
                out += &format!("<li>{}</li>", esc(m));
            }
            out += "</ul>\n";
        }
    }
    out += "</body></html>\n";
    out
}

/// Run `weir doctor`.
pub fn run(args: DoctorArgs) -> anyhow::Result<()> {
    let mut d = Doctor::default();
    let progress = std::io::stderr().is_terminal();
    for path in &args.logs {
        let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let size = f.metadata().map(|m| m.len()).unwrap_or(0);
        let mut read = 0u64;
        for line in std::io::BufReader::new(f).lines() {
            let line = line.with_context(|| format!("cannot read {}", path.display()))?;
            read += line.len() as u64 + 1;
            d.line(&line);
            if progress && d.lines.is_multiple_of(100_000) {
                eprint!("\r{}: {:.0} %", path.display(), pct(read, size.max(1)) * 100.0);
            }
        }
        if progress {
            eprintln!("\r{}: done ({} lines so far)", path.display(), d.lines);
        }
    }
    let report = if args.html { html_report(&d) } else { text_report(&d) };
    std::io::stdout().write_all(report.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postfix_deferral_with_gmail_s_multi_line_reply_is_read_whole() {
        let l = "Dec 02 04:58:21 bench postfix/smtp[20671]: 1C12F98C02B: to=<user@gmail.com>, \
                 relay=gmail-smtp-in.l.google.com[142.250.0.26]:25, delay=48, delays=48/0.1/0.02/0.01, dsn=4.7.28, \
                 status=deferred (host gmail-smtp-in.l.google.com[142.250.0.26] said: 421-4.7.28 Gmail has detected \
                 an unusual rate of unsolicited mail originating 421 4.7.28 from your IP address. (in reply to RCPT TO command))";
        let a = postfix_line(l).expect("parsed");
        assert_eq!((a.provider, a.status), (Provider::Google, Status::Deferred));
        let r = a.reply.expect("reply");
        assert_eq!((r.code, r.enhanced), (421, Some((4, 7, 28))));
        assert_eq!(category(&r, Provider::Google).0, Category::UnusualRate);
    }

    #[test]
    fn first_deferral_and_final_delivery_are_counted_per_recipient() {
        let mut d = Doctor::default();
        for l in [
            "x postfix/smtp[1]: A1: to=<a@gmail.com>, relay=mx[1.2.3.4]:25, dsn=4.7.28, status=deferred (host mx[1.2.3.4] said: 421 4.7.28 unusual rate (in reply to RCPT TO command))",
            "x postfix/smtp[1]: A1: to=<a@gmail.com>, relay=mx[1.2.3.4]:25, dsn=2.0.0, status=sent (250 ok)",
            "x postfix/smtp[1]: B2: to=<b@gmail.com>, relay=mx[1.2.3.4]:25, dsn=2.0.0, status=sent (250 ok)",
            "x postfix/smtp[1]: C3: to=<c@gmail.com>, relay=mx[1.2.3.4]:25, dsn=5.1.1, status=bounced (host mx said: 550 5.1.1 no such user (in reply to RCPT TO command))",
        ] {
            d.line(l);
        }
        let r = &d.providers["google"];
        assert_eq!((r.first_attempts, r.first_deferred, r.delivered, r.bounced), (3, 1, 2, 1));
        let text = text_report(&d);
        assert!(text.contains("first-deferral 33.33 % — act"), "{text}");
        assert!(text.contains("clean the list"), "{text}");
        assert!(text.contains("pause this provider"), "{text}");
    }
}
