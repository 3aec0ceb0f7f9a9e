//! Reading a request body without letting a client hold memory or time: a size limit known
//! before the first byte when `Content-Length` is sent, a deadline for the whole body, and a
//! budget of body bytes held by all requests at once.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Granularity of the in-flight body budget.
const UNIT: usize = 1024;

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

/// The budget of body bytes held by every request at once.
#[derive(Clone)]
pub struct BodyBudget(Arc<Semaphore>);

impl BodyBudget {
    /// A budget of `bytes`.
    pub fn new(bytes: usize) -> Self {
        BodyBudget(Arc::new(Semaphore::new((bytes / UNIT).clamp(1, Semaphore::MAX_PERMITS))))
    }

    fn take(&self, bytes: usize) -> Result<OwnedSemaphorePermit, BodyError> {
        let units = u32::try_from(bytes.div_ceil(UNIT)).map_err(|_| BodyError::Busy)?;
        self.0.clone().try_acquire_many_owned(units).map_err(|_| BodyError::Busy)
    }
}

/// A body read in full, with its share of the budget (released when dropped).
pub struct ReadBody {
    /// The bytes.
    pub bytes: Bytes,
    _held: Vec<OwnedSemaphorePermit>,
}

/// Read `body` (announced as `content_length`, if known) within `limit` bytes and `deadline`.
pub async fn read(
    body: Body,
    content_length: Option<u64>,
    limit: usize,
    deadline: Duration,
    budget: &BodyBudget,
) -> Result<ReadBody, BodyError> {
    if content_length.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge(limit));
    }
    let mut held = Vec::new();
    // A declared length is reserved up front, so that a request over budget is refused before
    // its body is read at all.
    let reserved = content_length.map_or(0, |n| n as usize);
    if reserved > 0 {
        held.push(budget.take(reserved)?);
    }
    let collect = async {
        let mut body = body;
        let mut buf = Vec::with_capacity(reserved);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| BodyError::Broken(e.to_string()))?;
            let Ok(data) = frame.into_data() else { continue };
            if buf.len() + data.len() > limit {
                return Err(BodyError::TooLarge(limit));
            }
            if buf.len() + data.len() > reserved {
                held.push(budget.take(buf.len() + data.len() - reserved.max(buf.len()))?);
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

    #[tokio::test]
    async fn declared_length_over_the_limit_is_refused_before_reading() {
        let budget = BodyBudget::new(1 << 20);
        let r = read(Body::from("x".repeat(10)), Some(1_000_000_000_000), 100, Duration::from_secs(1), &budget).await;
        assert_eq!(r.err(), Some(BodyError::TooLarge(100)));
    }

    #[tokio::test]
    async fn budget_is_shared_and_released() {
        let budget = BodyBudget::new(4096);
        let a =
            read(Body::from(vec![b'a'; 3000]), Some(3000), 10_000, Duration::from_secs(1), &budget).await.expect("a");
        let b = read(Body::from(vec![b'b'; 3000]), Some(3000), 10_000, Duration::from_secs(1), &budget).await;
        assert_eq!(b.err(), Some(BodyError::Busy));
        drop(a);
        let c = read(Body::from(vec![b'c'; 3000]), None, 10_000, Duration::from_secs(1), &budget).await.expect("c");
        assert_eq!(c.bytes.len(), 3000);
    }
}
