//! Where a domain's mail goes: static routes and a smarthost from config first, else the MX
//! records (RFC 5321 §5: preference order, equal preferences shuffled, implicit MX, null MX).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::seq::SliceRandom;
use weir_classify::provider::{self, Provider};

/// One server to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host name or IP literal.
    pub host: String,
    /// Port.
    pub port: u16,
}

/// Where a domain's mail goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Servers in the order to try.
    pub targets: Vec<Target>,
    /// Recognised provider.
    pub provider: Provider,
    /// Lane key: the provider, or the MX set, or the static route.
    pub lane: String,
}

/// Why there is no route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The domain publishes a null MX (`0 .`): it accepts no mail. Bounce at once.
    #[error("550 5.1.10 Domain {0} does not accept mail (null MX)")]
    NullMx(String),
    /// The domain does not exist.
    #[error("550 5.1.2 Domain {0} does not exist")]
    NoSuchDomain(String),
    /// DNS failed for now.
    #[error("451 4.4.3 DNS lookup for {0} failed: {1}")]
    Temporary(String, String),
}

/// The future of an MX look-up.
pub type MxFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<(u16, String)>, RouteError>> + Send + 'a>>;

/// The future of an address look-up.
pub type AddrFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Vec<std::net::IpAddr>> + Send + 'a>>;

/// MX and address look-ups, behind a trait so tests and air-gapped installs need no DNS.
pub trait Resolver: Send + Sync {
    /// MX records of `domain` as (preference, exchange). `Ok(empty)` means no MX records
    /// (implicit MX applies); `Err(NoSuchDomain)` means NXDOMAIN.
    fn mx<'a>(&'a self, domain: &'a str) -> MxFuture<'a>;

    /// Addresses of an MX host (IP literals are returned as they are).
    fn addrs<'a>(&'a self, host: &'a str) -> AddrFuture<'a> {
        Box::pin(async move {
            if let Ok(ip) = host.parse::<std::net::IpAddr>() {
                return vec![ip];
            }
            tokio::net::lookup_host((host, 0)).await.map(|it| it.map(|sa| sa.ip()).collect()).unwrap_or_default()
        })
    }
}

/// DNS through hickory: the system's resolvers, or configured servers.
pub struct HickoryResolver(hickory_resolver::TokioResolver);

impl HickoryResolver {
    /// Use /etc/resolv.conf.
    pub fn system() -> Result<Self, String> {
        let r = hickory_resolver::Resolver::builder_tokio()
            .map_err(|e| e.to_string())?
            .build()
            .map_err(|e| e.to_string())?;
        Ok(HickoryResolver(r))
    }

    /// Use these name servers (`ip:port`, UDP and TCP) instead of the system's.
    pub fn with_servers(servers: &[std::net::SocketAddr]) -> Result<Self, String> {
        use hickory_resolver::config::{NameServerConfig, ResolverConfig};
        let ns = servers
            .iter()
            .map(|sa| {
                let mut n = NameServerConfig::udp_and_tcp(sa.ip());
                for c in &mut n.connections {
                    c.port = sa.port();
                }
                n
            })
            .collect();
        let provider = hickory_resolver::net::runtime::TokioRuntimeProvider::default();
        let r = hickory_resolver::Resolver::builder_with_config(ResolverConfig::from_name_servers(ns), provider)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(HickoryResolver(r))
    }
}

impl HickoryResolver {
    /// TXT records at `name`, each as its strings joined. `Ok(empty)` when the name has none
    /// (or does not exist); `Err` when DNS did not answer.
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, String> {
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        match self.0.txt_lookup(fqdn.as_str()).await {
            Ok(lookup) => Ok(lookup
                .answers()
                .iter()
                .filter_map(|rec| match &rec.data {
                    hickory_resolver::proto::rr::RData::TXT(txt) => Some(
                        txt.txt_data.iter().map(|part| String::from_utf8_lossy(part).into_owned()).collect::<String>(),
                    ),
                    _ => None,
                })
                .collect()),
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => Ok(vec![]),
            Err(e) => Err(e.to_string()),
        }
    }
}

impl Resolver for HickoryResolver {
    fn addrs<'a>(&'a self, host: &'a str) -> AddrFuture<'a> {
        Box::pin(async move {
            if let Ok(ip) = host.parse::<std::net::IpAddr>() {
                return vec![ip];
            }
            let fqdn = format!("{}.", host.trim_end_matches('.'));
            self.0.lookup_ip(fqdn.as_str()).await.map(|l| l.iter().collect()).unwrap_or_default()
        })
    }

    fn mx<'a>(&'a self, domain: &'a str) -> MxFuture<'a> {
        Box::pin(async move {
            let fqdn = format!("{}.", domain.trim_end_matches('.'));
            match self.0.mx_lookup(fqdn.as_str()).await {
                Ok(lookup) => Ok(lookup
                    .answers()
                    .iter()
                    .filter_map(|rec| match &rec.data {
                        hickory_resolver::proto::rr::RData::MX(mx) => Some((mx.preference, mx.exchange.to_utf8())),
                        _ => None,
                    })
                    .collect()),
                Err(e) if e.is_nx_domain() => Err(RouteError::NoSuchDomain(domain.to_string())),
                Err(e) if e.is_no_records_found() => Ok(vec![]),
                Err(e) => Err(RouteError::Temporary(domain.to_string(), e.to_string())),
            }
        })
    }
}

/// No DNS at all (the system has no usable resolver configuration): every look-up is a
/// temporary failure, so mail waits in the queue instead of the server refusing to start.
pub struct NoDns(pub String);

impl Resolver for NoDns {
    fn mx<'a>(&'a self, domain: &'a str) -> MxFuture<'a> {
        Box::pin(async move { Err(RouteError::Temporary(domain.to_string(), self.0.clone())) })
    }
}

/// A fixed table of MX records (tests, air-gapped installs).
#[derive(Default)]
pub struct StaticResolver(pub HashMap<String, Vec<(u16, String)>>);

impl Resolver for StaticResolver {
    fn mx<'a>(&'a self, domain: &'a str) -> MxFuture<'a> {
        let r = self
            .0
            .get(&domain.to_ascii_lowercase())
            .cloned()
            .ok_or_else(|| RouteError::NoSuchDomain(domain.to_string()));
        Box::pin(async move { r })
    }
}

/// Order MX records per RFC 5321 §5.1: by preference, equal preferences shuffled; a single
/// `0 .` record is a null MX; no records means the domain itself (implicit MX).
pub fn order_mx(domain: &str, mut mx: Vec<(u16, String)>, rng: &mut impl rand::Rng) -> Result<Vec<String>, RouteError> {
    if mx.len() == 1 && mx[0].1.trim_end_matches('.').is_empty() {
        return Err(RouteError::NullMx(domain.to_string()));
    }
    if mx.is_empty() {
        return Ok(vec![domain.to_string()]);
    }
    mx.shuffle(rng);
    mx.sort_by_key(|(p, _)| *p); // stable: shuffled order kept within a preference
    Ok(mx.into_iter().map(|(_, h)| h.trim_end_matches('.').to_ascii_lowercase()).filter(|h| !h.is_empty()).collect())
}

/// Parse `host:port` (port 25 when absent; `[v6]:port` accepted).
pub fn parse_target(s: &str) -> Option<Target> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest.split_once(']')?;
        let port = p.strip_prefix(':').map_or(Some(25), |p| p.parse().ok())?;
        return Some(Target { host: h.to_string(), port });
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some(Target { host: h.to_string(), port: p.parse().ok()? }),
        _ => Some(Target { host: s.to_string(), port: 25 }),
    }
}

/// A cached routing answer and when it was found.
type Cached = (Instant, Result<Route, RouteError>);

/// Routes with a cache.
pub struct Router {
    routes: HashMap<String, Target>,
    smarthost: Option<Target>,
    resolver: Arc<dyn Resolver>,
    mx_port: u16,
    cache: Mutex<HashMap<String, Cached>>,
    ttl: Duration,
}

impl Router {
    /// A router with static `routes` (domain → target), an optional smarthost, and a resolver.
    pub fn new(
        routes: HashMap<String, Target>,
        smarthost: Option<Target>,
        resolver: Arc<dyn Resolver>,
        mx_port: u16,
    ) -> Self {
        let routes = routes.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
        Router {
            routes,
            smarthost,
            resolver,
            mx_port,
            cache: Mutex::new(HashMap::new()),
            ttl: Duration::from_secs(300),
        }
    }

    /// Addresses of a target host, through the same resolver as the MX records.
    pub async fn addrs(&self, host: &str) -> Vec<std::net::IpAddr> {
        self.resolver.addrs(host).await
    }

    /// The route of `domain`.
    pub async fn route(&self, domain: &str) -> Result<Route, RouteError> {
        let domain = domain.to_ascii_lowercase();
        if let Some(t) = self.routes.get(&domain).or(self.smarthost.as_ref()) {
            return Ok(Route {
                lane: format!("route:{}:{}", t.host, t.port),
                provider: Provider::Other,
                targets: vec![t.clone()],
            });
        }
        if let Some((at, r)) = self.cache.lock().get(&domain)
            && at.elapsed() < self.ttl
        {
            return r.clone();
        }
        let result = match self.resolver.mx(&domain).await {
            Ok(mx) => order_mx(&domain, mx, &mut rand::rng()).map(|hosts| {
                let provider = provider::of_mx_set(hosts.iter().map(String::as_str));
                let lane = if provider == Provider::Other {
                    let mut set = hosts.clone();
                    set.sort();
                    format!("mx:{}", set.join(","))
                } else {
                    provider.as_str().to_string()
                };
                Route {
                    targets: hosts.into_iter().map(|host| Target { host, port: self.mx_port }).collect(),
                    provider,
                    lane,
                }
            }),
            Err(e) => Err(e),
        };
        if !matches!(result, Err(RouteError::Temporary(..))) {
            self.cache.lock().insert(domain, (Instant::now(), result.clone()));
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mx_ordering_per_rfc_5321() {
        let mut rng = rand::rng();
        let mx = vec![(20, "b.example.".into()), (10, "a1.example.".into()), (10, "a2.example.".into())];
        let mut seen_first = std::collections::HashSet::new();
        for _ in 0..200 {
            let hosts = order_mx("example.com", mx.clone(), &mut rng).unwrap();
            assert_eq!(hosts[2], "b.example");
            seen_first.insert(hosts[0].clone());
        }
        assert_eq!(seen_first.len(), 2, "equal preferences are shuffled");
        assert_eq!(order_mx("x.test", vec![], &mut rng).unwrap(), vec!["x.test"]);
        assert_eq!(order_mx("x.test", vec![(0, ".".into())], &mut rng), Err(RouteError::NullMx("x.test".into())));
    }

    #[tokio::test]
    async fn routes_lanes_and_providers() {
        let mut mx = HashMap::new();
        mx.insert(
            "gmail.test".to_string(),
            vec![(5, "gmail-smtp-in.l.google.com.".into()), (10, "alt1.gmail-smtp-in.l.google.com.".into())],
        );
        mx.insert("a.test".to_string(), vec![(10, "mx.shared.test.".into())]);
        mx.insert("b.test".to_string(), vec![(10, "mx.shared.test.".into())]);
        mx.insert("null.test".to_string(), vec![(0, ".".into())]);
        let mut routes = HashMap::new();
        routes.insert("sink.test".to_string(), parse_target("127.0.0.1:2526").unwrap());
        let r = Router::new(routes, None, Arc::new(StaticResolver(mx)), 25);
        let g = r.route("Gmail.test").await.unwrap();
        assert_eq!((g.provider, g.lane.as_str()), (Provider::Google, "google"));
        assert_eq!(g.targets[0], Target { host: "gmail-smtp-in.l.google.com".into(), port: 25 });
        assert_eq!(
            r.route("a.test").await.unwrap().lane,
            r.route("b.test").await.unwrap().lane,
            "shared MX, shared lane"
        );
        assert_eq!(r.route("sink.test").await.unwrap().targets, vec![Target { host: "127.0.0.1".into(), port: 2526 }]);
        assert!(matches!(r.route("null.test").await, Err(RouteError::NullMx(_))));
        assert!(matches!(r.route("nowhere.test").await, Err(RouteError::NoSuchDomain(_))));
        assert_eq!(parse_target("[::1]:2525"), Some(Target { host: "::1".into(), port: 2525 }));
        assert_eq!(parse_target("mx.test"), Some(Target { host: "mx.test".into(), port: 25 }));
    }
}
