//! API errors, rendered as `kind: Status` objects the way the Kubernetes API server writes them.
//! Every failure a client can see goes through [`ApiError`], so reasons, codes and causes stay consistent.

use http::StatusCode;
use serde::Serialize;
use serde_json::{Value, json};

/// One field-level cause inside a `Status` (`details.causes[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cause {
    /// Upstream cause type, e.g. `FieldValueRequired`, `FieldValueInvalid`, `FieldValueNotSupported`,
    /// `FieldValueTypeInvalid`, `FieldValueForbidden`, `FieldValueDuplicate`, `FieldValueTooLong`.
    pub reason: String,
    /// Human-readable message, in upstream's `field.Error` form: `spec.app: Required value`.
    pub message: String,
    /// The JSON path of the field, dotted with `[i]` for list indices: `spec.app.ports[0].containerPort`.
    pub field: String,
}

impl Cause {
    pub fn required(field: impl Into<String>) -> Self {
        let field = field.into();
        Self {
            reason: "FieldValueRequired".into(),
            message: "Required value".into(),
            field,
        }
    }

    pub fn invalid(field: impl Into<String>, value: &Value, detail: impl AsRef<str>) -> Self {
        Self {
            reason: "FieldValueInvalid".into(),
            message: format!(
                "Invalid value: {}: {}",
                value_for_message(value),
                detail.as_ref()
            ),
            field: field.into(),
        }
    }

    pub fn new(reason: &str, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            message: message.into(),
            field: field.into(),
        }
    }

    /// The cause as upstream prints it inside an aggregate message: `field: message`.
    pub fn render(&self) -> String {
        if self.field.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.field, self.message)
        }
    }
}

/// Upstream quotes strings and prints other scalars bare in `Invalid value: ...` messages.
fn value_for_message(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Object(_) => "\"object\"".into(),
        Value::Array(_) => "\"array\"".into(),
        other => other.to_string(),
    }
}

/// The resource an error is about (`details.group/kind/name`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    pub group: String,
    /// The resource plural as upstream puts it in `details.kind` (e.g. `pods`, `stacks`).
    pub kind: String,
    pub name: String,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: StatusCode,
    pub reason: &'static str,
    pub message: String,
    /// Boxed to keep `Result<_, ApiError>` small on the hot path.
    pub subject: Option<Box<Subject>>,
    pub causes: Vec<Cause>,
    pub retry_after_seconds: Option<u32>,
}

impl ApiError {
    fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            subject: None,
            causes: Vec::new(),
            retry_after_seconds: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized")
    }

    pub fn forbidden(subject: Subject, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", message).with_subject(subject)
    }

    /// `pods "web" not found`, as upstream words it.
    pub fn not_found(subject: Subject) -> Self {
        let message = qualified(&subject, "not found");
        Self::new(StatusCode::NOT_FOUND, "NotFound", message).with_subject(subject)
    }

    /// A path the server does not serve at all.
    pub fn no_route() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    pub fn already_exists(subject: Subject) -> Self {
        let message = qualified(&subject, "already exists");
        Self::new(StatusCode::CONFLICT, "AlreadyExists", message).with_subject(subject)
    }

    /// A write whose resourceVersion precondition no longer holds.
    pub fn conflict(subject: Subject, why: impl AsRef<str>) -> Self {
        let message = format!(
            "Operation cannot be fulfilled on {}: {}",
            qualified_name(&subject),
            why.as_ref()
        );
        Self::new(StatusCode::CONFLICT, "Conflict", message).with_subject(subject)
    }

    /// 422 with field causes; the message aggregates them the way upstream does.
    pub fn invalid(subject: Subject, kind: &str, causes: Vec<Cause>) -> Self {
        let rendered: Vec<String> = causes.iter().map(Cause::render).collect();
        let joined = if rendered.len() == 1 {
            rendered[0].clone()
        } else {
            format!("[{}]", rendered.join(", "))
        };
        let message = format!("{kind} {:?} is invalid: {joined}", subject.name);
        // Upstream's Invalid names the kind (not the resource) in details, and kubectl prints it:
        // `The ConfigMap "x" is invalid`. `kind` is `Kind` or `Kind.group`.
        let mut subject = subject;
        subject.kind = kind.split('.').next().unwrap_or(kind).to_owned();
        let mut err =
            Self::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", message).with_subject(subject);
        err.causes = causes;
        err
    }

    /// A patch that cannot be applied to the object (a failed JSON patch `test`, a missing path).
    pub fn invalid_patch(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", message)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", message)
    }

    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_ACCEPTABLE, "NotAcceptable", message)
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            message,
        )
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            message,
        )
    }

    /// 410 Gone: a watch or list from a resourceVersion the history no longer holds.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GONE, "Expired", message)
    }

    /// A resourceVersion from the future (for instance, a client that outlived a reset data directory).
    /// Clients recognise the cause and list again.
    pub fn too_large_resource_version(message: impl Into<String>) -> Self {
        let message = message.into();
        let mut err = Self::new(StatusCode::GATEWAY_TIMEOUT, "Timeout", message.clone());
        err.causes = vec![Cause::new("ResourceVersionTooLarge", "", message)];
        err.retry_after_seconds = Some(1);
        err
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        let mut err = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            message,
        );
        err.retry_after_seconds = Some(1);
        err
    }

    pub fn with_subject(mut self, subject: Subject) -> Self {
        self.subject = Some(Box::new(subject));
        self
    }

    pub fn with_causes(mut self, causes: Vec<Cause>) -> Self {
        self.causes = causes;
        self
    }

    /// The `kind: Status` object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code.as_u16(),
        });
        let mut details = serde_json::Map::new();
        if let Some(subject) = &self.subject {
            if !subject.name.is_empty() {
                details.insert("name".into(), json!(subject.name));
            }
            if !subject.group.is_empty() {
                details.insert("group".into(), json!(subject.group));
            }
            if !subject.kind.is_empty() {
                details.insert("kind".into(), json!(subject.kind));
            }
        }
        if !self.causes.is_empty() {
            details.insert("causes".into(), json!(self.causes));
        }
        if let Some(seconds) = self.retry_after_seconds {
            details.insert("retryAfterSeconds".into(), json!(seconds));
        }
        if !details.is_empty() {
            status["details"] = Value::Object(details);
        }
        status
    }
}

/// `pods "web"` or `stacks.berth.dev "demo"`.
fn qualified_name(subject: &Subject) -> String {
    let resource = if subject.group.is_empty() {
        subject.kind.clone()
    } else {
        format!("{}.{}", subject.kind, subject.group)
    };
    format!("{resource} {:?}", subject.name)
}

fn qualified(subject: &Subject, what: &str) -> String {
    format!("{} {what}", qualified_name(subject))
}

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_status_lists_causes_and_aggregates_message() {
        let subject = Subject {
            group: "berth.dev".into(),
            kind: "stacks".into(),
            name: "demo".into(),
        };
        let err = ApiError::invalid(
            subject,
            "Stack.berth.dev",
            vec![Cause::required("spec.app")],
        );
        let status = err.to_status();
        assert_eq!(status["code"], 422);
        assert_eq!(status["reason"], "Invalid");
        assert_eq!(status["details"]["causes"][0]["field"], "spec.app");
        assert_eq!(
            status["details"]["kind"], "Stack",
            "kubectl prints details.kind"
        );
        assert_eq!(status["details"]["group"], "berth.dev");
        assert_eq!(
            status["message"],
            "Stack.berth.dev \"demo\" is invalid: spec.app: Required value"
        );
    }

    #[test]
    fn not_found_names_group_qualified_resource() {
        let subject = Subject {
            group: "berth.dev".into(),
            kind: "stacks".into(),
            name: "x".into(),
        };
        assert_eq!(
            ApiError::not_found(subject).message,
            "stacks.berth.dev \"x\" not found"
        );
    }
}
