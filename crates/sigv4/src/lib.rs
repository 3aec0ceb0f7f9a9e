//! AWS Signature Version 4, verified the way AWS services verify it, plus the SES SMTP password.
//!
//! # Layout
//! - [`verify`]: checks a request's `Authorization` header against a secret (pure: the caller
//!   passes the clock and a key lookup).
//! - [`canonical`]: canonical URI, query and headers exactly as botocore and the AWS SDKs build
//!   them (double-encoded URI for non-S3 services).
//! - [`time`]: `X-Amz-Date` parsing and formatting without a calendar crate.
//! - [`smtp_password`]: the SES SMTP password derived from a secret key for a region.

pub mod canonical;
pub mod time;

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Default allowed clock skew between client and server (SES: five minutes).
pub const DEFAULT_MAX_SKEW_SECS: u64 = 300;

/// HMAC-SHA256 of `data` under `key`.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Lower-case hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The SigV4 signing key for (secret, yyyymmdd, region, service).
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    hmac_sha256(&k_service, b"aws4_request")
}

/// The SES SMTP password for `secret` in `region` (version byte 0x04, SigV4-derived).
pub fn smtp_password(secret: &str, region: &str) -> String {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), b"11111111");
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, b"ses");
    let k_terminal = hmac_sha256(&k_service, b"aws4_request");
    let k_message = hmac_sha256(&k_terminal, b"SendRawEmail");
    let mut raw = Vec::with_capacity(33);
    raw.push(0x04);
    raw.extend_from_slice(&k_message);
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// Constant-time equality of two byte strings.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a request's signature was not accepted. The API layer maps each to the AWS error code of
/// its API version (v1 Query or v2 REST-JSON).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    /// No `Authorization` header at all.
    #[error("Request is missing Authentication Token")]
    Missing,
    /// The header is there but lacks a part, or the scope is malformed.
    #[error("{0}")]
    Incomplete(String),
    /// The access key id is not known.
    #[error("The security token included in the request is invalid.")]
    UnknownKey,
    /// The request time is outside the allowed skew, or the scope is wrong.
    #[error("{0}")]
    Rejected(String),
    /// The signature does not match.
    #[error(
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
    )]
    Mismatch,
}

/// The parts of an `AWS4-HMAC-SHA256` Authorization header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthHeader {
    /// Access key id from the credential scope.
    pub access_key: String,
    /// `yyyymmdd` from the credential scope.
    pub date: String,
    /// Region from the credential scope.
    pub region: String,
    /// Service from the credential scope (`ses` for SES).
    pub service: String,
    /// Lower-case signed header names, in the order given.
    pub signed_headers: Vec<String>,
    /// Hex signature.
    pub signature: String,
}

/// Parse an `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…` value.
pub fn parse_authorization(value: &str) -> Result<AuthHeader, SigError> {
    let rest = value.trim_start();
    let Some(rest) = rest.strip_prefix("AWS4-HMAC-SHA256") else {
        let algo = rest.split_whitespace().next().unwrap_or("");
        return Err(SigError::Incomplete(format!(
            "Unsupported authorization type '{algo}': only AWS4-HMAC-SHA256 is accepted."
        )));
    };
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some((k, v)) = part.split_once('=') {
            let slot = match k.trim() {
                "Credential" => &mut credential,
                "SignedHeaders" => &mut signed,
                "Signature" => &mut signature,
                _ => continue,
            };
            if slot.replace(v.trim()).is_some() {
                return Err(SigError::Incomplete(format!(
                    "Authorization header has more than one '{}' parameter.",
                    k.trim()
                )));
            }
        }
    }
    let mut missing = Vec::new();
    if credential.is_none() {
        missing.push("Authorization header requires 'Credential' parameter.");
    }
    if signature.is_none() {
        missing.push("Authorization header requires 'Signature' parameter.");
    }
    if signed.is_none() {
        missing.push("Authorization header requires 'SignedHeaders' parameter.");
    }
    let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature) else {
        return Err(SigError::Incomplete(format!("{} Authorization={}", missing.join(" "), value.trim())));
    };
    let parts: Vec<&str> = credential.split('/').collect();
    if parts.len() != 5 || parts[4] != "aws4_request" || parts.iter().any(|p| p.is_empty()) {
        return Err(SigError::Incomplete(format!(
            "Credential should be scoped to a valid region, not '{}'. Expected format: ACCESS_KEY/YYYYMMDD/REGION/SERVICE/aws4_request, got '{credential}'.",
            parts.get(2).copied().unwrap_or("")
        )));
    }
    let signed_headers: Vec<String> = signed.split(';').map(str::to_string).collect();
    // The canonical request lists signed headers lower-case, sorted and once each; a header that
    // says otherwise was not made by a SigV4 signer.
    let canonical = signed_headers.iter().all(|h| !h.is_empty() && !h.bytes().any(|b| b.is_ascii_uppercase()))
        && signed_headers.windows(2).all(|w| w[0] < w[1]);
    if !canonical {
        return Err(SigError::Rejected(format!(
            "SignedHeaders must be lower-case header names, sorted and without repeats; got '{signed}'."
        )));
    }
    // Hex, lower-case, 64 digits: exactly what HMAC-SHA256 yields.
    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(SigError::Rejected("Signature must be 64 lower-case hexadecimal digits.".to_string()));
    }
    Ok(AuthHeader {
        access_key: parts[0].to_string(),
        date: parts[1].to_string(),
        region: parts[2].to_string(),
        service: parts[3].to_string(),
        signed_headers,
        signature: signature.to_string(),
    })
}

/// An HTTP request as received, borrowed from the server's own types.
pub struct RequestParts<'a> {
    /// Upper-case method.
    pub method: &'a str,
    /// Path exactly as sent on the wire (still percent-encoded).
    pub raw_path: &'a str,
    /// Query string exactly as sent (without `?`), or empty.
    pub raw_query: &'a str,
    /// Every header as (name, value); names in any case.
    pub headers: &'a [(&'a str, &'a str)],
    /// The raw body.
    pub body: &'a [u8],
}

impl RequestParts<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
    }
}

/// What a verified request proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The access key that signed.
    pub access_key: String,
    /// The region of the credential scope: the SES region the request is for.
    pub region: String,
}

/// What the headers of a request prove before its body is read: a well-formed signature header
/// from a known key, dated within the allowed skew, for this service.
#[derive(Debug, Clone)]
pub struct HeaderCheck {
    /// The parsed `Authorization` header.
    pub auth: AuthHeader,
    /// The `X-Amz-Date` value.
    pub amz_date: String,
    secret: String,
}

/// Check the header part of a SigV4 request at `now_secs`: everything but the signature itself,
/// which needs the body. Order of checks, as AWS does: header present, single and complete → key
/// known → time within `max_skew_secs` → scope date and service.
pub fn check_headers<F>(
    headers: &[(&str, &str)],
    now_secs: u64,
    max_skew_secs: u64,
    secret_for: F,
) -> Result<HeaderCheck, SigError>
where
    F: FnOnce(&str) -> Option<String>,
{
    fn named<'h>(headers: &'h [(&'h str, &'h str)], name: &'static str) -> impl Iterator<Item = &'h str> {
        headers.iter().filter(move |(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
    }
    let mut auths = named(headers, "authorization");
    let auth = auths.next().ok_or(SigError::Missing)?;
    if auths.next().is_some() {
        return Err(SigError::Incomplete("The request has more than one Authorization header.".to_string()));
    }
    let auth = parse_authorization(auth)?;
    let mut dates = named(headers, "x-amz-date");
    let amz_date = dates.next().ok_or_else(|| {
        SigError::Incomplete(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.".to_string(),
        )
    })?;
    if dates.next().is_some() {
        return Err(SigError::Incomplete("The request has more than one X-Amz-Date header.".to_string()));
    }
    let secret = secret_for(&auth.access_key).ok_or(SigError::UnknownKey)?;
    let t = time::parse_amz_date(amz_date)
        .ok_or_else(|| SigError::Incomplete(format!("Date must be in ISO-8601 'basic format'. Got '{amz_date}'.")))?;
    if t + max_skew_secs < now_secs {
        return Err(SigError::Rejected(format!(
            "Signature expired: {} is now earlier than {} ({} - {} min.)",
            amz_date,
            time::format_amz_date(now_secs - max_skew_secs),
            time::format_amz_date(now_secs),
            max_skew_secs / 60
        )));
    }
    if t > now_secs + max_skew_secs {
        return Err(SigError::Rejected(format!(
            "Signature not yet current: {} is still later than {} ({} + {} min.)",
            amz_date,
            time::format_amz_date(now_secs + max_skew_secs),
            time::format_amz_date(now_secs),
            max_skew_secs / 60
        )));
    }
    if !amz_date.starts_with(&auth.date) || auth.date.len() != 8 {
        return Err(SigError::Rejected(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}', from '{}'.",
            auth.date,
            amz_date.get(..8).unwrap_or(amz_date),
            amz_date
        )));
    }
    if auth.service != "ses" && auth.service != "email" {
        return Err(SigError::Rejected(format!(
            "Credential should be scoped to correct service: 'ses'. Got '{}'.",
            auth.service
        )));
    }
    if !auth.signed_headers.iter().any(|h| h == "host") {
        return Err(SigError::Rejected("'Host' must be a signed header.".to_string()));
    }
    Ok(HeaderCheck { auth, amz_date: amz_date.to_string(), secret })
}

/// Verify a SigV4-signed request at `now_secs` (Unix seconds), looking secrets up with `secret_for`:
/// [`check_headers`], then the signature over the whole request (constant-time).
pub fn verify<F>(req: &RequestParts<'_>, now_secs: u64, max_skew_secs: u64, secret_for: F) -> Result<Verified, SigError>
where
    F: FnOnce(&str) -> Option<String>,
{
    let HeaderCheck { auth, amz_date, secret } = check_headers(req.headers, now_secs, max_skew_secs, secret_for)?;
    let payload_hash = match req.header("x-amz-content-sha256") {
        Some(h) if h == "UNSIGNED-PAYLOAD" => h.to_string(),
        Some(h) => {
            if !h.eq_ignore_ascii_case(&sha256_hex(req.body)) {
                return Err(SigError::Rejected(
                    "The provided 'x-amz-content-sha256' header does not match what was computed.".to_string(),
                ));
            }
            h.to_string()
        }
        None => sha256_hex(req.body),
    };
    let canonical_request = canonical::canonical_request(req, &auth.signed_headers, &payload_hash);
    let scope = format!("{}/{}/{}/aws4_request", auth.date, auth.region, auth.service);
    let string_to_sign = format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", sha256_hex(canonical_request.as_bytes()));
    let key = signing_key(&secret, &auth.date, &auth.region, &auth.service);
    let expected = hex::encode(hmac_sha256(&key, string_to_sign.as_bytes()));
    if !constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()) {
        return Err(SigError::Mismatch);
    }
    Ok(Verified { access_key: auth.access_key, region: auth.region })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_password_matches_reference_vectors() {
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        assert_eq!(smtp_password(secret, "us-east-1"), "BLBM/9hSUELfq8Gw+rU1YcBjkOxGbhT2XG763xVLGWL9");
        assert_eq!(smtp_password(secret, "eu-west-1"), "BMW5RDrXmmVs0lV7GpI4oLkHXpZ4stDsk6q91z1g38Pk");
        assert_eq!(smtp_password(secret, "us-east-1").len(), 44);
    }

    #[test]
    fn parses_authorization_header() {
        let h = "AWS4-HMAC-SHA256 Credential=AKID/20261123/eu-west-1/ses/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let a = parse_authorization(h).expect("parses");
        assert_eq!(a.access_key, "AKID");
        assert_eq!(a.region, "eu-west-1");
        assert_eq!(a.signed_headers, vec!["content-type", "host", "x-amz-date"]);
    }

    #[test]
    fn headers_no_signer_would_make_are_refused() {
        let sig = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let h = |signed: &str, signature: &str| {
            parse_authorization(&format!(
                "AWS4-HMAC-SHA256 Credential=A/20261123/us-east-1/ses/aws4_request, SignedHeaders={signed}, Signature={signature}"
            ))
        };
        assert!(h("host;x-amz-date", sig).is_ok());
        assert!(matches!(h("x-amz-date;host", sig), Err(SigError::Rejected(_))), "unsorted");
        assert!(matches!(h("host;host;x-amz-date", sig), Err(SigError::Rejected(_))), "repeated");
        assert!(matches!(h("Host;x-amz-date", sig), Err(SigError::Rejected(_))), "upper-case name");
        assert!(
            matches!(h("host;x-amz-date", &sig.to_ascii_uppercase()), Err(SigError::Rejected(_))),
            "upper-case hex"
        );
        assert!(matches!(h("host;x-amz-date", &sig[..63]), Err(SigError::Rejected(_))), "short");
        let twice = format!(
            "AWS4-HMAC-SHA256 Credential=A/20261123/us-east-1/ses/aws4_request, SignedHeaders=host, Signature={sig}, Signature={sig}"
        );
        assert!(matches!(parse_authorization(&twice), Err(SigError::Incomplete(_))));
        let headers = [("authorization", twice.as_str()), ("Authorization", twice.as_str())];
        assert!(matches!(check_headers(&headers, 0, 300, |_| None), Err(SigError::Incomplete(_))));
    }

    #[test]
    fn incomplete_headers_name_the_missing_part() {
        let e = parse_authorization("AWS4-HMAC-SHA256 Credential=A/20261123/us-east-1/ses/aws4_request").unwrap_err();
        let SigError::Incomplete(msg) = e else { panic!("wrong kind") };
        assert!(msg.contains("'Signature'") && msg.contains("'SignedHeaders'"), "{msg}");
        assert!(matches!(parse_authorization("AWS Foo:bar"), Err(SigError::Incomplete(_))));
        assert!(matches!(
            parse_authorization("AWS4-HMAC-SHA256 Credential=A/b, SignedHeaders=host, Signature=x"),
            Err(SigError::Incomplete(_))
        ));
    }
}
