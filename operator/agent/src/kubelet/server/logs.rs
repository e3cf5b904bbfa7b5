//! `GET /containerLogs/<ns>/<pod>/<container>`: the container's CRI log as `kubectl logs` prints it, in a
//! chunked body; with `follow` the body goes on until the container ends or the client goes.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use super::{State as Shared, find, flag, status};
use crate::runtime::log_reader::{self, LogOptions};

pub(super) async fn container_logs(
    State(state): State<Shared>,
    Path(target): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let options = match options(&query) {
        Ok(options) => options,
        Err(message) => return status(StatusCode::BAD_REQUEST, "BadRequest", message),
    };
    let previous = flag(query.get("previous"));
    let container = match find(&state, &target, previous) {
        Ok(container) => container,
        Err(missing) => return missing.into_response(),
    };
    tracing::debug!(container = %container.id, ?options, "streaming a log");
    let runtime = state.runtime.clone();
    let id = container.id.clone();
    let running = container.running;
    // A followed log ends once the container has exited (the shim writes the last records before it
    // records the exit), or at once for an instance that is not running.
    let ended = async move {
        if running {
            let _ = runtime.wait(&id).await;
        }
    };
    let pieces = log_reader::read(container.log_path, options, ended);
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(pieces));
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

/// The log options of a query, with upstream's validation messages.
fn options(query: &HashMap<String, String>) -> Result<LogOptions, String> {
    let number = |key: &str| -> Result<Option<i64>, String> {
        query
            .get(key)
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| format!("{key}: invalid value {v:?}: must be an integer"))
            })
            .transpose()
    };
    let positive = |key: &str, min: i64| -> Result<Option<u64>, String> {
        match number(key)? {
            Some(n) if n < min => Err(format!("{key}: invalid value {n}: must be at least {min}")),
            n => Ok(n.map(|n| n as u64)),
        }
    };
    let since_seconds = positive("sinceSeconds", 1)?;
    let since_time = query
        .get("sinceTime")
        .map(|t| {
            t.parse::<jiff::Timestamp>()
                .map_err(|_| format!("sinceTime: invalid value {t:?}: must be an RFC 3339 time"))
        })
        .transpose()?;
    let since = match (since_seconds, since_time) {
        (Some(_), Some(_)) => {
            return Err("at most one of sinceTime or sinceSeconds may be specified".into());
        }
        (Some(seconds), None) => Some(
            jiff::Timestamp::now()
                .checked_sub(jiff::SignedDuration::from_secs(
                    seconds.min(i64::MAX as u64) as i64,
                ))
                .unwrap_or(jiff::Timestamp::MIN),
        ),
        (None, time) => time,
    };
    Ok(LogOptions {
        tail_lines: positive("tailLines", 0)?,
        since,
        timestamps: flag(query.get("timestamps")),
        limit_bytes: positive("limitBytes", 1)?,
        follow: flag(query.get("follow")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn query_options_are_read_and_checked() {
        let options = options(&query(&[
            ("follow", "true"),
            ("tailLines", "5"),
            ("timestamps", "true"),
            ("limitBytes", "100"),
            ("sinceTime", "2024-01-02T03:04:05Z"),
        ]))
        .unwrap();
        assert_eq!(
            options,
            LogOptions {
                tail_lines: Some(5),
                since: Some("2024-01-02T03:04:05Z".parse().unwrap()),
                timestamps: true,
                limit_bytes: Some(100),
                follow: true,
            }
        );
        let since = options_since(&query(&[("sinceSeconds", "60")]));
        let age = jiff::Timestamp::now().duration_since(since);
        assert!(
            age >= jiff::SignedDuration::from_secs(60) && age < jiff::SignedDuration::from_secs(70)
        );
        assert!(super::options(&query(&[("tailLines", "-1")])).is_err());
        assert!(super::options(&query(&[("limitBytes", "0")])).is_err());
        assert!(super::options(&query(&[("sinceTime", "yesterday")])).is_err());
        assert!(
            super::options(&query(&[
                ("sinceSeconds", "1"),
                ("sinceTime", "2024-01-02T03:04:05Z")
            ]))
            .is_err()
        );
    }

    fn options_since(query: &HashMap<String, String>) -> jiff::Timestamp {
        super::options(query).unwrap().since.unwrap()
    }
}
