//! SigV4 authentication of SES API requests and the error each failure gets per API version.

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use weir_sigv4::{RequestParts, SigError};
use weir_store::model::Account;

use crate::error::{ApiError, Flavor};
use crate::{AppState, RawRequest};

/// The authenticated caller of an API request.
pub struct Caller {
    /// The account whose key signed the request.
    pub account: Arc<Account>,
    /// Region of the credential scope: the SES region the request acts on.
    pub region: String,
}

/// Whether `r` looks like an AWS region name (`us-east-1`, `ap-southeast-2`, `us-gov-west-1`).
pub fn is_region(r: &str) -> bool {
    let parts: Vec<&str> = r.split('-').collect();
    parts.len() >= 3
        && parts.len() <= 4
        && parts[0].len() == 2
        && parts[0].bytes().all(|b| b.is_ascii_lowercase())
        && parts[1..parts.len() - 1].iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts.last().is_some_and(|p| !p.is_empty() && p.len() <= 2 && p.bytes().all(|b| b.is_ascii_digit()))
}

fn error_for(e: SigError, flavor: Flavor) -> ApiError {
    let v1 = flavor == Flavor::V1;
    match e {
        SigError::Missing if v1 => ApiError::new(StatusCode::FORBIDDEN, "MissingAuthenticationToken", e.to_string()),
        SigError::Missing => {
            ApiError::new(StatusCode::FORBIDDEN, "MissingAuthenticationTokenException", "Missing Authentication Token")
        }
        SigError::Incomplete(m) => ApiError::new(
            StatusCode::BAD_REQUEST,
            if v1 { "IncompleteSignature" } else { "IncompleteSignatureException" },
            m,
        ),
        SigError::UnknownKey => ApiError::new(
            StatusCode::FORBIDDEN,
            if v1 { "InvalidClientTokenId" } else { "UnrecognizedClientException" },
            e.to_string(),
        ),
        SigError::Rejected(m) => ApiError::new(
            StatusCode::FORBIDDEN,
            if v1 { "SignatureDoesNotMatch" } else { "InvalidSignatureException" },
            m,
        ),
        SigError::Mismatch => ApiError::new(
            StatusCode::FORBIDDEN,
            if v1 { "SignatureDoesNotMatch" } else { "InvalidSignatureException" },
            e.to_string(),
        ),
    }
}

/// A credential scoped to a region this server does not answer for (AWS's words).
fn unknown_region(region: &str, flavor: Flavor) -> ApiError {
    let shown: String = region.chars().take(64).collect();
    error_for(
        SigError::Rejected(format!("Credential should be scoped to a valid region, not '{}'.", shown.escape_debug())),
        flavor,
    )
}

fn owned_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers.iter().map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned())).collect()
}

/// Check what the headers alone can prove (known key, date, scope) before the body is read, so
/// that a stranger cannot make the server hold a large body. Returns the access key ID the
/// request claims (not yet proven: its signature covers the body).
pub fn precheck(st: &AppState, headers: &HeaderMap, query: &str, flavor: Flavor) -> Result<String, ApiError> {
    // weir issues no temporary credentials: a session token is one it cannot vouch for, and
    // ignoring it would accept a request its sender meant to be bound by it.
    let token_in_query = form_urlencoded::parse(query.as_bytes()).any(|(k, _)| k == "X-Amz-Security-Token");
    if headers.contains_key("x-amz-security-token") || token_in_query {
        let code = if flavor == Flavor::V1 { "InvalidClientTokenId" } else { "UnrecognizedClientException" };
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            code,
            "The security token included in the request is invalid.",
        ));
    }
    let owned = owned_headers(headers);
    let borrowed: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let now = st.svc.now_ns() / 1_000_000_000;
    let check = weir_sigv4::check_headers(&borrowed, now, st.cfg.max_skew_secs, |k| {
        st.svc.directory().account_by_key(k).map(|a| a.secret.clone())
    })
    .map_err(|e| error_for(e, flavor))?;
    if !st.svc.directory().region_known(&check.auth.region) {
        return Err(unknown_region(&check.auth.region, flavor));
    }
    Ok(check.auth.access_key)
}

/// Verify the request's signature and find its account.
pub fn authenticate(st: &AppState, raw: &RawRequest, flavor: Flavor) -> Result<Caller, ApiError> {
    let headers = owned_headers(&raw.headers);
    let borrowed: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let parts = RequestParts {
        method: raw.method.as_str(),
        raw_path: &raw.path,
        raw_query: &raw.query,
        headers: &borrowed,
        body: &raw.body,
    };
    let now = st.svc.now_ns() / 1_000_000_000;
    let verified = weir_sigv4::verify(&parts, now, st.cfg.max_skew_secs, |k| {
        st.svc.directory().account_by_key(k).map(|a| a.secret.clone())
    })
    .map_err(|e| error_for(e, flavor))?;
    if !st.svc.directory().region_known(&verified.region) {
        return Err(unknown_region(&verified.region, flavor));
    }
    let account = st
        .svc
        .directory()
        .account_by_key(&verified.access_key)
        .ok_or_else(|| error_for(SigError::UnknownKey, flavor))?;
    Ok(Caller { account, region: verified.region })
}

#[cfg(test)]
mod tests {
    #[test]
    fn regions() {
        for r in ["us-east-1", "eu-west-1", "ap-southeast-2", "us-gov-west-1", "il-central-1"] {
            assert!(super::is_region(r), "{r}");
        }
        for r in ["", "us", "us-east", "US-EAST-1", "us-east-1a", "x-y-1", "us--1"] {
            assert!(!super::is_region(r), "{r}");
        }
    }
}
