//! Test harness: the real `weir serve` binary on a loopback port, and a SigV4-signing HTTP client
//! built on the official `aws-sigv4` signer (an implementation we did not write).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_weir");

pub struct Server {
    pub dir: PathBuf,
    pub base: String,
    pub smtp: String,
    pub smtps: String,
    pub child: Child,
}

impl Server {
    /// Start `weir serve` on a free port with `dir` as its data dir.
    pub fn start(dir: &Path) -> Server {
        Self::start_with(dir, &["--no-delivery"])
    }

    /// Start with extra `weir serve` arguments (e.g. `--config FILE`).
    pub fn start_with(dir: &Path, extra: &[&str]) -> Server {
        let _ = std::fs::remove_file(dir.join("server.json"));
        let child = Command::new(BIN)
            .args(["serve", "--http", "127.0.0.1:0", "--smtp", "127.0.0.1:0", "--smtps", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .args(extra)
            .env("WEIR_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn weir");
        // Owned by `Server` at once, so that its `Drop` reaps the process on any panic below.
        let mut server =
            Server { dir: dir.to_path_buf(), base: String::new(), smtp: String::new(), smtps: String::new(), child };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let info = std::fs::read_to_string(dir.join("server.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
            if let Some(v) = info {
                let field = |k: &str| v[k].as_str().unwrap_or("").to_string();
                server.base = field("http");
                server.smtp = field("smtp");
                server.smtps = field("smtps");
                return server;
            }
            assert!(Instant::now() < deadline, "weir did not start within 20 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Run a `weir` CLI command against this server; returns stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(BIN).args(args).arg("--data-dir").arg(&self.dir).output().expect("run weir");
        assert!(out.status.success(), "weir {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf8")
    }

    /// Create an account and return its keys.
    pub fn account(&self, name: &str) -> Keys {
        let v: serde_json::Value =
            serde_json::from_str(&self.cli(&["account", "create", name, "--json"])).expect("json");
        Keys {
            akid: v["access_key_id"].as_str().expect("akid").to_string(),
            secret: v["secret_access_key"].as_str().expect("secret").to_string(),
            smtp_password: v["smtp_password"].as_str().expect("smtp password").to_string(),
        }
    }

    /// SIGTERM and wait.
    pub fn stop(mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }

    /// SIGKILL and wait.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// Each test file uses its own part of the client.
#[allow(unused_imports)]
pub use weir_testkit::{Keys, Reply, form_body, request, send_email_form};

/// A v1 Query call signed for `region` now.
pub fn v1(s: &Server, keys: &Keys, region: &str, form: &[(&str, &str)]) -> Reply {
    weir_testkit::v1(&s.base, keys, region, form)
}

/// A v2 REST call signed for `region` now.
pub fn v2(s: &Server, keys: &Keys, region: &str, method: &str, path: &str, json: Option<serde_json::Value>) -> Reply {
    weir_testkit::v2(&s.base, keys, region, method, path, json)
}
