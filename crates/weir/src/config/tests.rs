use super::*;

/// The configuration example in README.md is a valid configuration.
#[test]
fn readme_example_parses() {
    let readme = include_str!("../../../../README.md");
    let start = readme.find("## Configuration").expect("section");
    let block = &readme[start..];
    let open = block.find("```toml\n").expect("toml block") + 8;
    let close = block[open..].find("```").expect("end of block") + open;
    let cfg: Config = toml::from_str(&block[open..close]).expect("README example parses");
    cfg.validate().expect("README example is valid");
    assert_eq!(cfg.smtp.listen.port(), 2587);
    // The block runs to the end of the example: the last sections are in it too.
    assert_eq!(cfg.delivery.lanes["google"].max_connections, 5);
    assert_eq!(cfg.http.max_inflight_body_bytes, 512 * 1024 * 1024);
}

#[test]
fn listen_addresses_take_host_names() {
    assert_eq!(listen_addr("localhost:8788"), Ok(SocketAddr::from(([127, 0, 0, 1], 8788))));
    assert_eq!(listen_addr("[::1]:25").map(|a| a.port()), Ok(25));
    let e = listen_addr("8788").expect_err("no host");
    assert!(e.contains("not a listen address such as 127.0.0.1:8787"), "{e}");
    let c: Config = toml::from_str("[http]\nlisten = \"localhost:9001\"\n").expect("host name in config");
    assert_eq!(c.http.listen, SocketAddr::from(([127, 0, 0, 1], 9001)));
}

#[test]
fn defaults_and_unknown_keys() {
    let c: Config = toml::from_str("").expect("empty config");
    assert_eq!(c.http.listen.port(), 8787);
    let c: Config = toml::from_str("[http]\nlisten = \"127.0.0.1:9000\"\n").expect("partial config");
    assert_eq!(c.http.listen.port(), 9000);
    assert_eq!(c.defaults.max_24h, 200);
    assert!(toml::from_str::<Config>("[http]\nlisten_on = 1\n").is_err());
}
