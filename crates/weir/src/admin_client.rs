//! The operator commands' client of the running server's admin API.

use std::path::Path;

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// Client of the running server's admin API.
pub struct Client {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl Client {
    /// Find the server and the admin token through the data dir.
    pub fn new(data_dir: &Path, server: Option<String>) -> anyhow::Result<Client> {
        let token_path = data_dir.join("admin-token");
        let token = std::fs::read_to_string(&token_path)
            .with_context(|| {
                format!(
                    "cannot read the admin token {}: no weir server has used the data dir {} \
                     (give the server's data dir with --data-dir or WEIR_DATA_DIR; it is \
                     relative to the current directory)",
                    token_path.display(),
                    data_dir.display()
                )
            })?
            .trim()
            .to_string();
        let base = match server {
            Some(s) => s,
            None => {
                let path = data_dir.join("server.json");
                let text = std::fs::read_to_string(&path).with_context(|| {
                    if crate::data_dir::server_running(data_dir) {
                        format!(
                            "a weir server holds {} but {} is missing: give its address with --server",
                            data_dir.display(),
                            path.display()
                        )
                    } else {
                        format!(
                            "no weir server is running on data dir {} (start one with `weir serve --data-dir {}`)",
                            data_dir.display(),
                            data_dir.display()
                        )
                    }
                })?;
                let v: Value = serde_json::from_str(&text).with_context(|| format!("invalid {}", path.display()))?;
                v["http"].as_str().context("server.json has no http address")?.to_string()
            }
        };
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        Ok(Client { base: base.trim_end_matches('/').to_string(), token, agent })
    }

    /// One admin API call; an error status becomes the error's message.
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let url = format!("{}{}", self.base, path);
        let auth = format!("Bearer {}", self.token);
        let resp = match (method, body) {
            ("GET", _) => self.agent.get(&url).header("Authorization", &auth).call(),
            ("POST", b) => self
                .agent
                .post(&url)
                .header("Authorization", &auth)
                .content_type("application/json")
                .send(b.unwrap_or(json!({})).to_string()),
            ("PUT", b) => self
                .agent
                .put(&url)
                .header("Authorization", &auth)
                .content_type("application/json")
                .send(b.unwrap_or(json!({})).to_string()),
            _ => bail!("unsupported method {method}"),
        };
        let mut resp =
            resp.with_context(|| format!("cannot reach weir at {} (is `weir serve` running?)", self.base))?;
        let status = resp.status();
        let text = resp.body_mut().read_to_string()?;
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            bail!("{}", v["error"].as_str().map(str::to_string).unwrap_or_else(|| v.to_string()));
        }
        Ok(v)
    }
}

/// A path segment, percent-encoded.
pub fn seg(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.~@".contains(c) { c.to_string() } else { format!("%{:02X}", c as u32) }
        })
        .collect()
}
