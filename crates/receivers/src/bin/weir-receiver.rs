//! `weir-receiver SPEC.toml ADDR STATUS.json`: one modelled receiver listening on a TCP address
//! (loopback), for bench scripts that put other MTAs (Postfix) and weir's server in front of the
//! same hidden limits. Its counters are rewritten to STATUS.json every 100 ms.

use std::time::Duration;

use anyhow::Context;
use weir_receivers::{Receiver, Spec};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [spec, addr, status] = args.as_slice() else {
        anyhow::bail!("usage: weir-receiver SPEC.toml ADDR STATUS.json");
    };
    let text = std::fs::read_to_string(spec).with_context(|| format!("cannot read {spec}"))?;
    let spec: Spec = toml::from_str(&text).with_context(|| format!("invalid receiver spec {spec}"))?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    rt.block_on(async {
        let receiver = Receiver::new(spec);
        let local = receiver.clone().listen(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        eprintln!("weir-receiver listening on {local}");
        let tmp = format!("{status}.tmp");
        loop {
            let json = serde_json::to_string(&receiver.counters())?;
            std::fs::write(&tmp, json)?;
            std::fs::rename(&tmp, status)?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}
