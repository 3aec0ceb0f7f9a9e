//! Reading a request body without letting a client hold memory or time: a size limit known
//! before the first byte when `Content-Length` is sent, a deadline for the whole body, and a
//! budget of body bytes held by all requests at once, drawn as bytes arrive.
//!
//! A body's signature can only be checked once all of it is here, so anyone who knows an access
//! key ID can send a body that will fail. Two rules keep such bodies from starving everyone else:
//! the first [`FREE`] bytes of a body (every ordinary SES request) never draw on the budget; no
//! client address may hold more than a quarter of it; and the bodies of an access key sent from
//! addresses where that key has not yet signed a request correctly hold at most a quarter
//! together, so that someone who only knows a key ID can take neither the whole budget (from
//! many addresses) nor anything of what its owner's own addresses use.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use http_body_util::BodyExt;
use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Granularity of the in-flight body budget.
const UNIT: usize = 1024;
/// Bytes of each body read without drawing on the budget; their memory is bounded by the
/// connection caps instead.
pub const FREE: usize = 64 * 1024;

/// Why a body was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Over the per-request limit.
    #[error("Request body is larger than {0} bytes.")]
    TooLarge(usize),
    /// Not complete within the body deadline.
    #[error("Request body was not received within {0} seconds.")]
    TimedOut(u64),
    /// The in-flight body budget is spent: other requests hold it.
    #[error("Too many large requests are in progress; retry later.")]
    Busy,
    /// The connection failed mid-body.
    #[error("Request body could not be read: {0}")]
    Broken(String),
}

/// Whose share a body counts against: an IPv4 address, or an IPv6 /64 (one host's usual
/// allocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Client(u128);

/// Who holds a share: an address, or an access key claimed where it is not proven.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Holder {
    Address(Client),
    UnprovenKey(String),
}

/// Everyone a request's body counts against.
#[derive(Debug, Clone)]
pub struct Holders(Vec<Holder>);

/// Most (key, address) pairs remembered as proven; the oldest are forgotten first.
const PROVEN_PAIRS: usize = 16_384;

impl Client {
    /// The share key of `ip`.
    pub fn of(ip: IpAddr) -> Client {
        match ip {
            IpAddr::V4(v4) => Client(u128::from(u32::from(v4))),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Client(u128::from(u32::from(v4))),
                None => Client((u128::from(v6) >> 64) << 64 | 1 << 32),
            },
        }
    }
}

/// The budget of body bytes held by every request at once.
#[derive(Clone)]
pub struct BodyBudget {
    pool: Arc<Semaphore>,
    /// Units one holder may hold at once.
    share: u32,
    held: Arc<Mutex<HashMap<Holder, u32>>>,
    /// (key, address) pairs that signed a request correctly, with when (a counter).
    proven: Arc<Mutex<Proven>>,
}

/// Per address, the keys that signed correctly from it with the tick each last did; the count of
/// pairs; and the tick.
type Proven = (HashMap<Client, HashMap<String, u64>>, usize, u64);

/// A share of the budget, given back when dropped.
struct Held {
    _permit: OwnedSemaphorePermit,
    holders: Holders,
    units: u32,
    held: Arc<Mutex<HashMap<Holder, u32>>>,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut held = self.held.lock();
        for h in &self.holders.0 {
            if let Some(n) = held.get_mut(h) {
                *n = n.saturating_sub(self.units);
                if *n == 0 {
                    held.remove(h);
                }
            }
        }
    }
}

impl BodyBudget {
    /// A budget of `bytes`.
    pub fn new(bytes: usize) -> Self {
        let units = (bytes / UNIT).clamp(1, Semaphore::MAX_PERMITS);
        BodyBudget {
            pool: Arc::new(Semaphore::new(units)),
            share: u32::try_from((units / 4).max(1)).unwrap_or(u32::MAX),
            held: Arc::new(Mutex::new(HashMap::new())),
            proven: Arc::new(Mutex::new((HashMap::new(), 0, 0))),
        }
    }

    /// Who a body from `ip` claiming access key `key` (the SES APIs) counts against.
    pub fn holders(&self, ip: IpAddr, key: Option<&str>) -> Holders {
        let client = Client::of(ip);
        let mut v = vec![Holder::Address(client)];
        if let Some(k) = key
            && !self.proven.lock().0.get(&client).is_some_and(|keys| keys.contains_key(k))
        {
            v.push(Holder::UnprovenKey(k.to_string()));
        }
        Holders(v)
    }

    /// `key` signed a request from `ip` correctly: its bodies from there are its owner's. On
    /// every signed request, so a known pair costs a lookup and no allocation.
    pub fn prove(&self, key: &str, ip: IpAddr) {
        let mut proven = self.proven.lock();
        let (pairs, count, clock) = &mut *proven;
        *clock += 1;
        let keys = pairs.entry(Client::of(ip)).or_default();
        match keys.get_mut(key) {
            Some(at) => *at = *clock,
            None => {
                keys.insert(key.to_string(), *clock);
                *count += 1;
            }
        }
        if *count > PROVEN_PAIRS {
            // Forget the older half.
            let mut ages: Vec<u64> = pairs.values().flat_map(|k| k.values().copied()).collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            pairs.retain(|_, keys| {
                keys.retain(|_, at| *at > cut);
                !keys.is_empty()
            });
            *count = pairs.values().map(HashMap::len).sum();
        }
    }

    fn take(&self, holders: &Holders, bytes: usize) -> Result<Held, BodyError> {
        let units = u32::try_from(bytes.div_ceil(UNIT)).map_err(|_| BodyError::Busy)?;
        let mut held = self.held.lock();
        if holders.0.iter().any(|h| held.get(h).copied().unwrap_or(0).saturating_add(units) > self.share) {
            return Err(BodyError::Busy);
        }
        let permit = self.pool.clone().try_acquire_many_owned(units).map_err(|_| BodyError::Busy)?;
        for h in &holders.0 {
            *held.entry(h.clone()).or_insert(0) += units;
        }
        Ok(Held { _permit: permit, holders: holders.clone(), units, held: self.held.clone() })
    }
}

/// A body read in full, with its share of the budget (released when dropped).
pub struct ReadBody {
    /// The bytes.
    pub bytes: Bytes,
    _held: Vec<Held>,
}

/// Read `body` (announced as `content_length`, if known) for `holders` within `limit` bytes
/// and `deadline`.
pub async fn read(
    body: Body,
    content_length: Option<u64>,
    limit: usize,
    deadline: Duration,
    budget: &BodyBudget,
    holders: &Holders,
) -> Result<ReadBody, BodyError> {
    if content_length.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge(limit));
    }
    let mut held = Vec::new();
    let collect = async {
        let mut body = body;
        // What the client declares is not reserved, nor allocated: only what it sends counts.
        let mut buf = Vec::with_capacity(content_length.map_or(0, |n| n as usize).min(FREE));
        let mut covered = FREE;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| BodyError::Broken(e.to_string()))?;
            let Ok(data) = frame.into_data() else { continue };
            if buf.len() + data.len() > limit {
                return Err(BodyError::TooLarge(limit));
            }
            if buf.len() + data.len() > covered {
                // Drawn in steps of at least 64 KiB: fewer trips to the budget.
                let want = (buf.len() + data.len() - covered).max(FREE);
                held.push(budget.take(holders, want)?);
                covered += want;
            }
            buf.extend_from_slice(&data);
        }
        Ok(buf)
    };
    match tokio::time::timeout(deadline, collect).await {
        Ok(Ok(buf)) => Ok(ReadBody { bytes: Bytes::from(buf), _held: held }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(BodyError::TimedOut(deadline.as_secs())),
    }
}

/// Decode a base64 blob member (botocore sends standard base64; line breaks are tolerated).
pub fn decode_blob(data: &str, member: &str) -> Result<Vec<u8>, crate::error::ApiError> {
    use base64::Engine as _;
    let cleaned: String = data.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(cleaned.as_bytes())
        .map_err(|e| crate::error::ApiError::invalid(format!("{member} is not valid base64: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a() -> Holders {
        Holders(vec![Holder::Address(Client(1))])
    }

    fn b() -> Holders {
        Holders(vec![Holder::Address(Client(2))])
    }

    fn one_second() -> Duration {
        Duration::from_secs(1)
    }

    #[tokio::test]
    async fn declared_length_over_the_limit_is_refused_before_reading() {
        let budget = BodyBudget::new(1 << 20);
        let r = read(Body::from("x".repeat(10)), Some(1_000_000_000_000), 100, one_second(), &budget, &a()).await;
        assert_eq!(r.err(), Some(BodyError::TooLarge(100)));
    }

    #[tokio::test]
    async fn small_bodies_never_wait_on_the_budget() {
        let budget = BodyBudget::new(1024);
        let _big = budget.take(&a(), 1024).expect("all of it");
        let r = read(Body::from(vec![b'a'; FREE]), Some(FREE as u64), 1 << 20, one_second(), &budget, &b()).await;
        assert_eq!(r.expect("small body").bytes.len(), FREE);
    }

    #[tokio::test]
    async fn one_client_holds_at_most_a_quarter_and_others_still_get_theirs() {
        let budget = BodyBudget::new(4 << 20);
        let body = || Body::from(vec![b'a'; FREE + 900_000]);
        let first = read(body(), None, 4 << 20, one_second(), &budget, &a()).await.expect("first large body");
        let again = read(body(), None, 4 << 20, one_second(), &budget, &a()).await;
        assert_eq!(again.err(), Some(BodyError::Busy));
        let other = read(body(), None, 4 << 20, one_second(), &budget, &b()).await.expect("another client's");
        drop((first, other));
        assert!(budget.held.lock().is_empty());
        read(body(), None, 4 << 20, one_second(), &budget, &a()).await.expect("given back");
    }

    #[tokio::test]
    async fn a_key_claimed_where_it_is_not_proven_holds_at_most_a_quarter_and_never_its_owners_share() {
        let budget = BodyBudget::new(4 << 20);
        let body = || Body::from(vec![b'a'; FREE + 900_000]);
        let owner: IpAddr = "10.0.9.9".parse().expect("ip");
        budget.prove("AKIAVICTIM", owner);
        let from = |i: u8| budget.holders(format!("10.0.1.{i}").parse().expect("ip"), Some("AKIAVICTIM"));
        let _first = read(body(), None, 4 << 20, one_second(), &budget, &from(1)).await.expect("first");
        let second = read(body(), None, 4 << 20, one_second(), &budget, &from(2)).await;
        assert_eq!(second.err(), Some(BodyError::Busy), "a second address claiming the same key");
        let mine = budget.holders(owner, Some("AKIAVICTIM"));
        read(body(), None, 4 << 20, one_second(), &budget, &mine).await.expect("the owner's own address");
    }

    #[test]
    fn proven_pairs_are_bounded_and_the_recent_kept() {
        let budget = BodyBudget::new(4 << 20);
        for i in 0..(PROVEN_PAIRS as u32 + 10) {
            budget.prove(&format!("AKIA{i}"), std::net::Ipv4Addr::from(i).into());
        }
        {
            let (pairs, count, _) = &*budget.proven.lock();
            assert!(*count <= PROVEN_PAIRS && *count == pairs.values().map(HashMap::len).sum::<usize>());
        }
        let last = PROVEN_PAIRS as u32 + 9;
        let recent = budget.holders(std::net::Ipv4Addr::from(last).into(), Some(&format!("AKIA{last}")));
        assert_eq!(recent.0.len(), 1, "the latest pair is still proven");
    }

    #[test]
    fn ipv6_hosts_share_by_slash_64() {
        let a: IpAddr = "2001:db8::1".parse().expect("ip");
        let b: IpAddr = "2001:db8::ffff:2".parse().expect("ip");
        let c: IpAddr = "2001:db8:0:1::1".parse().expect("ip");
        assert_eq!(Client::of(a), Client::of(b));
        assert_ne!(Client::of(a), Client::of(c));
        assert_eq!(Client::of("::ffff:10.0.0.1".parse().expect("ip")), Client::of("10.0.0.1".parse().expect("ip")));
    }
}
