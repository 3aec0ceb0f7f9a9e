//! API errors and their two wire shapes.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use weir_submit::{AdminError, SubmitError};

use crate::xml::escape;

/// Which SES API a request used; decides error codes and shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Query protocol, XML responses.
    V1,
    /// REST-JSON.
    V2,
}

/// An error as the client will see it.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// AWS error code.
    pub code: String,
    /// Message text.
    pub message: String,
    /// Seconds until a retry could pass (throttling only).
    pub retry_after: Option<u64>,
}

/// The SES error code of an error response (a response extension, read by the metrics).
#[derive(Debug, Clone)]
pub struct ErrorCode(pub String);

impl ApiError {
    /// An error with the given status, code and message.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError { status, code: code.to_string(), message: message.into(), retry_after: None }
    }

    /// v1 `InvalidParameterValue` (400). v2 callers convert with [`ApiError::for_v2`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidParameterValue", message)
    }

    /// AWS's missing-member validation error for the named members.
    pub fn missing(members: &[&str]) -> Self {
        let n = members.len();
        let details: Vec<String> = members
            .iter()
            .map(|m| format!("Value null at '{m}' failed to satisfy constraint: Member must not be null"))
            .collect();
        Self::new(
            StatusCode::BAD_REQUEST,
            "ValidationError",
            format!("{n} validation error{} detected: {}", if n == 1 { "" } else { "s" }, details.join("; ")),
        )
    }

    /// AWS's validation error for a value outside an enum, as SES words it.
    pub fn not_in_enum(member: &str, value: &str, allowed: &[&str]) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "ValidationError",
            format!(
                "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: \
                 Member must satisfy enum value set: [{}]",
                allowed.join(", ")
            ),
        )
    }

    /// Storage is failing (a full disk, say): nothing was done and the call may be retried. One
    /// answer for every operation and both API versions, which SDKs retry.
    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "Temporary service failure; nothing was changed, retry later.",
        )
    }

    /// v1 parameter errors become v2 `BadRequestException`s.
    pub fn for_v2(mut self) -> Self {
        if matches!(self.code.as_str(), "InvalidParameterValue" | "ValidationError" | "MissingParameter") {
            self.code = "BadRequestException".into();
        }
        self
    }

    /// Render for `flavor`.
    pub fn render(&self, flavor: Flavor, request_id: &str) -> Response {
        let mut resp = match flavor {
            Flavor::V1 => {
                let kind = if self.status.is_server_error() { "Receiver" } else { "Sender" };
                let body = format!(
                    "<ErrorResponse xmlns=\"{}\"><Error><Type>{kind}</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>",
                    crate::xml::NS,
                    escape(&self.code),
                    escape(&self.message)
                );
                (self.status, [(header::CONTENT_TYPE, "text/xml")], body).into_response()
            }
            Flavor::V2 => {
                let body = serde_json::json!({ "message": self.message, "__type": self.code }).to_string();
                let mut r = (self.status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
                if let Ok(v) = HeaderValue::from_str(&self.code) {
                    r.headers_mut().insert("x-amzn-ErrorType", v);
                }
                r
            }
        };
        if let Ok(v) = HeaderValue::from_str(request_id) {
            resp.headers_mut().insert("x-amzn-RequestId", v);
        }
        // For the request counters: which SES error this was.
        resp.extensions_mut().insert(ErrorCode(self.code.clone()));
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }

    /// Map a send refusal to the code SES uses in `flavor`.
    pub fn from_submit(e: SubmitError, flavor: Flavor, v2_daily_code: &str) -> Self {
        let secs = |d: std::time::Duration| d.as_secs() + u64::from(d.subsec_nanos() > 0);
        match (e, flavor) {
            (SubmitError::InvalidParameter(m), Flavor::V1) => ApiError::invalid(m),
            (SubmitError::InvalidParameter(m), Flavor::V2) => {
                Self::new(StatusCode::BAD_REQUEST, "BadRequestException", m)
            }
            (SubmitError::MessageRejected(m), _) => Self::new(StatusCode::BAD_REQUEST, "MessageRejected", m),
            (SubmitError::SendingPaused, Flavor::V1) => Self::new(
                StatusCode::BAD_REQUEST,
                "AccountSendingPausedException",
                "Email sending is disabled for your entire Amazon SES account.",
            ),
            (SubmitError::SendingPaused, Flavor::V2) => Self::new(
                StatusCode::BAD_REQUEST,
                "SendingPausedException",
                "Email sending is disabled for your entire Amazon SES account.",
            ),
            (e @ SubmitError::MaxSendRateExceeded { retry_after }, Flavor::V1) => {
                let mut a = Self::new(StatusCode::BAD_REQUEST, "Throttling", e.to_string());
                a.retry_after = Some(secs(retry_after).max(1));
                a
            }
            (e @ SubmitError::MaxSendRateExceeded { retry_after }, Flavor::V2) => {
                let mut a = Self::new(StatusCode::TOO_MANY_REQUESTS, "TooManyRequestsException", e.to_string());
                a.retry_after = Some(secs(retry_after).max(1));
                a
            }
            (e @ SubmitError::DailyQuotaExceeded { retry_after }, flavor) => {
                let code = if flavor == Flavor::V1 { "Throttling" } else { v2_daily_code };
                let status = if code == "TooManyRequestsException" {
                    StatusCode::TOO_MANY_REQUESTS
                } else {
                    StatusCode::BAD_REQUEST
                };
                let mut a = Self::new(status, code, e.to_string());
                a.retry_after = Some(retry_after.map_or(86_400, |d| secs(d).max(1)));
                a
            }
            (e @ SubmitError::TemplateDoesNotExist(_), Flavor::V1) => {
                Self::new(StatusCode::BAD_REQUEST, "TemplateDoesNotExist", e.to_string())
            }
            (e @ SubmitError::ConfigurationSetDoesNotExist(_), Flavor::V1) => {
                Self::new(StatusCode::BAD_REQUEST, "ConfigurationSetDoesNotExist", e.to_string())
            }
            (e @ (SubmitError::TemplateDoesNotExist(_) | SubmitError::ConfigurationSetDoesNotExist(_)), Flavor::V2) => {
                Self::new(StatusCode::NOT_FOUND, "NotFoundException", e.to_string())
            }
            (e @ SubmitError::ConfigurationSetSendingPaused(_), Flavor::V1) => {
                Self::new(StatusCode::BAD_REQUEST, "ConfigurationSetSendingPausedException", e.to_string())
            }
            (e @ SubmitError::ConfigurationSetSendingPaused(_), Flavor::V2) => {
                Self::new(StatusCode::BAD_REQUEST, "SendingPausedException", e.to_string())
            }
            (e @ SubmitError::InvalidTemplate(..), Flavor::V1) => {
                Self::new(StatusCode::BAD_REQUEST, "InvalidTemplate", e.to_string())
            }
            (e @ SubmitError::MissingRenderingAttribute(_), Flavor::V1) => {
                Self::new(StatusCode::BAD_REQUEST, "MissingRenderingAttribute", e.to_string())
            }
            (e @ SubmitError::InvalidRenderingParameter(_), Flavor::V1) => {
                Self::new(StatusCode::BAD_REQUEST, "InvalidRenderingParameter", e.to_string())
            }
            (
                e @ (SubmitError::InvalidTemplate(..)
                | SubmitError::MissingRenderingAttribute(_)
                | SubmitError::InvalidRenderingParameter(_)),
                Flavor::V2,
            ) => Self::new(StatusCode::BAD_REQUEST, "BadRequestException", e.to_string()),
            // SES's throttling errors: the client's SDK backs off and retries by itself.
            (SubmitError::Unavailable { retry_after }, Flavor::V1) => {
                let mut a = Self::new(StatusCode::BAD_REQUEST, "Throttling", "Rate exceeded");
                a.retry_after = Some(secs(retry_after).max(1));
                a
            }
            (SubmitError::Unavailable { retry_after }, Flavor::V2) => {
                let mut a = Self::new(StatusCode::TOO_MANY_REQUESTS, "TooManyRequestsException", "Rate exceeded");
                a.retry_after = Some(secs(retry_after).max(1));
                a
            }
            (SubmitError::Busy(m), Flavor::V1) => {
                let mut a = Self::new(StatusCode::BAD_REQUEST, "Throttling", m);
                a.retry_after = Some(1);
                a
            }
            (SubmitError::Busy(m), Flavor::V2) => {
                let mut a = Self::new(StatusCode::TOO_MANY_REQUESTS, "TooManyRequestsException", m);
                a.retry_after = Some(1);
                a
            }
            (SubmitError::Storage(e), _) => {
                tracing::error!(error = %e, "storage failure on send");
                Self::unavailable()
            }
        }
    }

    /// Map a v1 admin failure on a resource whose "not found" and "already exists" have their
    /// own SES codes (`TemplateDoesNotExist`, `ConfigurationSetAlreadyExists`…).
    pub fn from_admin_v1(e: AdminError, not_found: &str, exists: &str) -> Self {
        match e {
            AdminError::NotFound(m) => Self::new(StatusCode::BAD_REQUEST, not_found, m),
            AdminError::Conflict(m) => Self::new(StatusCode::BAD_REQUEST, exists, m),
            other => Self::from_admin(other, Flavor::V1),
        }
    }

    /// Map an identity/suppression failure.
    pub fn from_admin(e: AdminError, flavor: Flavor) -> Self {
        match (e, flavor) {
            (AdminError::NotFound(m), Flavor::V2) => Self::new(StatusCode::NOT_FOUND, "NotFoundException", m),
            (AdminError::NotFound(m), Flavor::V1) => ApiError::invalid(m),
            (AdminError::Conflict(m), Flavor::V2) => Self::new(StatusCode::BAD_REQUEST, "AlreadyExistsException", m),
            (AdminError::Conflict(m), Flavor::V1) => Self::new(StatusCode::BAD_REQUEST, "AlreadyExists", m),
            (AdminError::Invalid(m), Flavor::V2) => Self::new(StatusCode::BAD_REQUEST, "BadRequestException", m),
            (AdminError::Invalid(m), Flavor::V1) => ApiError::invalid(m),
            (AdminError::LimitExceeded(m), Flavor::V1) => Self::new(StatusCode::BAD_REQUEST, "LimitExceeded", m),
            (AdminError::LimitExceeded(m), Flavor::V2) => {
                Self::new(StatusCode::BAD_REQUEST, "LimitExceededException", m)
            }
            (AdminError::Storage(e), _) => {
                tracing::error!(error = %e, "storage failure");
                Self::unavailable()
            }
            (AdminError::Unavailable(m), _) => {
                tracing::warn!(error = %m, "a change was refused: the cluster's shared store is unavailable");
                Self::unavailable()
            }
        }
    }
}
