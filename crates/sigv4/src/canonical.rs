//! Canonical request construction (the server side of SigV4).

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::RequestParts;

/// RFC 3986 unreserved characters stay as they are; everything else is encoded.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
/// For paths, `/` also stays.
const PATH: &AsciiSet = &UNRESERVED.remove(b'/');

/// The canonical URI of a non-S3 service: the path as sent, encoded once more (so `%40`
/// becomes `%2540`), which is what botocore and the AWS SDKs sign.
pub fn canonical_uri(raw_path: &str) -> String {
    if raw_path.is_empty() {
        return "/".to_string();
    }
    utf8_percent_encode(raw_path, PATH).to_string()
}

/// The canonical query string: pairs decoded, re-encoded with the unreserved set, sorted.
pub fn canonical_query(raw_query: &str) -> String {
    let mut pairs: Vec<(String, String)> = raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (encode(k), encode(v))
        })
        .collect();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

fn encode(s: &str) -> String {
    let decoded = percent_decode_str(s).collect::<Vec<u8>>();
    percent_encoding::percent_encode(&decoded, UNRESERVED).to_string()
}

/// Trim a header value and collapse runs of spaces, as SigV4 requires.
fn trim_all(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for word in v.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// The full canonical request for the listed signed headers.
pub fn canonical_request(req: &RequestParts<'_>, signed: &[String], payload_hash: &str) -> String {
    let mut out = String::with_capacity(256 + req.raw_path.len() + req.raw_query.len());
    out.push_str(req.method);
    out.push('\n');
    out.push_str(&canonical_uri(req.raw_path));
    out.push('\n');
    out.push_str(&canonical_query(req.raw_query));
    out.push('\n');
    let mut names: Vec<&String> = signed.iter().collect();
    names.sort();
    names.dedup();
    for name in &names {
        let values: Vec<String> =
            req.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| trim_all(v)).collect();
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&names.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(";"));
    out.push('\n');
    out.push_str(payload_hash);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_is_double_encoded() {
        assert_eq!(
            canonical_uri("/v2/email/identities/missing%40example.com"),
            "/v2/email/identities/missing%2540example.com"
        );
        assert_eq!(canonical_uri("/"), "/");
        assert_eq!(canonical_uri(""), "/");
    }

    #[test]
    fn query_is_sorted_and_reencoded() {
        assert_eq!(
            canonical_query("Reason=BOUNCE&Reason=COMPLAINT&PageSize=10"),
            "PageSize=10&Reason=BOUNCE&Reason=COMPLAINT"
        );
        assert_eq!(canonical_query("NextToken=a%20b%2Fc%2Bd%3D"), "NextToken=a%20b%2Fc%2Bd%3D");
        assert_eq!(canonical_query("a=b:c"), "a=b%3Ac");
    }
}
