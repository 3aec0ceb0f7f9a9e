//! A redis-server of the test's own, on a free loopback port.
// Each test file uses a part of it.
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use weir_cluster::{EPOCH_KEY, Redis, RedisQuota, RedisTarget};

/// The password every test server requires.
pub const PASSWORD: &str = "test-password";

/// `url` as a target.
pub fn target(url: &str) -> RedisTarget {
    RedisTarget { url: url.to_string(), ca_pem: None, allow_no_password: false }
}

/// A redis-server of its own on a free loopback port, without persistence; killed on drop.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub rt: tokio::runtime::Runtime,
    pub quota: RedisQuota,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn server() -> Server {
    let port = TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("dir");
    let mut child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(["--requirepass", PASSWORD])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server must be installed (apt-get install redis-server, as .ci/run does)");
    let url = format!("redis://:{PASSWORD}@127.0.0.1:{port}/");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let quota = rt.block_on(async {
        for _ in 0..100 {
            let q = RedisQuota::new(Redis::new(&target(&url), Duration::from_secs(2)).expect("url"));
            // The counters are open in epoch "t" (the nodes' gate is tested elsewhere).
            if q.redis().query::<()>(redis::cmd("SET").arg(EPOCH_KEY).arg("t")).await.is_ok() {
                return Some(q);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    });
    let Some(quota) = quota else {
        let _ = child.kill();
        panic!("redis-server did not start on {url}");
    };
    Server { child, url, rt, quota, _dir: dir }
}
