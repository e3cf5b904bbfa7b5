//! A scripted fake API server for tests: a kube `Client` whose every request must match the next expected call
//! (method and path), answered with the scripted response. The script runs in a task that returns what was
//! sent, so a test can look at request bodies after the fact; an unexpected call fails the test.

use std::collections::VecDeque;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

/// One expected request and the answer to give.
pub struct Call {
    method: Method,
    path: String,
    status: StatusCode,
    /// None answers with the request's body when it is an object (as a create or an apply would), else `{}`.
    response: Option<Value>,
}

impl Call {
    pub fn new(method: Method, path: impl Into<String>) -> Call {
        Call {
            method,
            path: path.into(),
            status: StatusCode::OK,
            response: None,
        }
    }

    pub fn get(path: impl Into<String>) -> Call {
        Call::new(Method::GET, path)
    }

    pub fn patch(path: impl Into<String>) -> Call {
        Call::new(Method::PATCH, path)
    }

    pub fn post(path: impl Into<String>) -> Call {
        Call::new(Method::POST, path)
    }

    pub fn delete(path: impl Into<String>) -> Call {
        Call::new(Method::DELETE, path)
    }

    /// Answers with `body`.
    pub fn returns(mut self, body: Value) -> Call {
        self.response = Some(body);
        self
    }

    /// Answers with an error Status of `code`, as the API server does.
    pub fn fails(mut self, code: u16) -> Call {
        self.status = StatusCode::from_u16(code).unwrap();
        let reason = match code {
            404 => "NotFound",
            409 => "Conflict",
            _ => "InternalError",
        };
        self.response = Some(json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("scripted {code}"), "reason": reason, "code": code,
        }));
        self
    }
}

/// A request as it was received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub body: Value,
}

/// A client talking to a script; `verify` waits for the script to finish and returns what was sent.
pub struct FakeApi {
    handle: tokio::task::JoinHandle<Vec<Received>>,
}

impl FakeApi {
    pub fn new(calls: Vec<Call>) -> (Client, FakeApi) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let mut script: VecDeque<Call> = calls.into();
        let task = tokio::spawn(async move {
            let mut received = Vec::new();
            while let Some(call) = script.pop_front() {
                let (request, respond) = handle.next_request().await.unwrap_or_else(|| {
                    panic!(
                        "expected {} {} but the client is gone",
                        call.method, call.path
                    )
                });
                let (parts, body) = request.into_parts();
                let bytes = body.collect_bytes().await.unwrap();
                let got = Received {
                    method: parts.method.clone(),
                    path: parts.uri.path().to_owned(),
                    query: parts.uri.query().unwrap_or_default().to_owned(),
                    content_type: parts
                        .headers
                        .get(http::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned(),
                    body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                };
                assert_eq!(
                    (&got.method, got.path.as_str()),
                    (&call.method, call.path.as_str()),
                    "unexpected call (query {:?}, body {})",
                    got.query,
                    got.body
                );
                let answer = call.response.unwrap_or_else(|| match &got.body {
                    Value::Object(_) => got.body.clone(),
                    _ => json!({}),
                });
                let response = Response::builder()
                    .status(call.status)
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                    .unwrap();
                respond.send_response(response);
                received.push(got);
            }
            received
        });
        (Client::new(service, "default"), FakeApi { handle: task })
    }

    /// Waits for every scripted call to have been made.
    pub async fn verify(self) -> Vec<Received> {
        tokio::time::timeout(Duration::from_secs(5), self.handle)
            .await
            .expect("the scripted calls were not all made")
            .expect("the script failed")
    }
}
