//! `watch`: a stream of JSON lines (`{"type": ..., "object": ...}`) from the store's event history and live
//! fan-out, with BOOKMARKs, `sendInitialEvents`, selector transitions as ADDED/DELETED, and the 410 rule:
//! a resourceVersion older than the history is answered with HTTP 200 and an ERROR event carrying `Expired`.
//! A client that asks for Tables (`kubectl get -w`) gets each object as a one-row Table; only the first carries
//! the column definitions, as upstream sends them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::Ctx;
use super::read::Filter;
use crate::error::{ApiError, Result};
use crate::object;
use crate::registry::ResourceType;
use crate::store::{Event, EventType, Scope, StoreError, WatchFrom};
use crate::table::{self, Tabulator};

/// How often an idle watch that asked for bookmarks gets one.
const BOOKMARK_EVERY: Duration = Duration::from_secs(15);
/// Upstream's annotation on the bookmark that ends the initial events of `sendInitialEvents=true`.
const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

pub async fn watch(ctx: Ctx) -> Result<Response> {
    let rt = ctx.target.rt.clone();
    let mut filter = Filter::from_query(&rt, &ctx.query)?;
    if let Some(name) = &ctx.target.name {
        // `/watch/.../<name>`: the legacy single-object watch.
        filter = Filter::from_query(
            &rt,
            &crate::request::Query::parse(Some(&format!("fieldSelector=metadata.name%3D{name}")))?,
        )?;
    }
    let table = table::requested(ctx.accept.as_deref(), &ctx.query)?
        .map(|request| Tabulator::new(&ctx.app.store, rt.clone(), request));
    let bookmarks = ctx.query.flag("allowWatchBookmarks")?;
    let send_initial = ctx.query.get("sendInitialEvents").map(|v| v == "true");
    let rv_param = ctx.query.get("resourceVersion");
    let from = match (send_initial, rv_param) {
        (Some(true), _) => {
            if ctx.query.get("resourceVersionMatch") != Some("NotOlderThan") {
                return Err(ApiError::invalid(
                    ctx.target.subject(),
                    "ListOptions",
                    vec![crate::error::Cause::new(
                        "FieldValueInvalid",
                        "resourceVersionMatch",
                        "Invalid value: \"\": sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                    )],
                ));
            }
            WatchFrom::Now
        }
        (_, None) | (_, Some("0")) if send_initial != Some(false) => WatchFrom::Now,
        (_, None) => WatchFrom::After(ctx.app.store.current_rv()),
        (_, Some(rv)) => WatchFrom::After(
            rv.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version {rv:?}")))?,
        ),
    };
    let timeout = ctx
        .query
        .number("timeoutSeconds")?
        .filter(|s| *s > 0)
        .map(|s| Duration::from_secs(s as u64));

    let (tx, rx) = mpsc::channel::<Result<Bytes, std::convert::Infallible>>(64);
    match ctx
        .app
        .store
        .watch(&rt.key(), ctx.target.namespace.as_deref(), from)
    {
        Err(StoreError::TooOld { requested, oldest }) => {
            let status =
                ApiError::expired(format!("too old resource version: {requested} ({oldest})"))
                    .to_status();
            let _ = tx.try_send(Ok(line("ERROR", &status)));
        }
        Err(err @ StoreError::TooNew { .. }) => {
            let status = ApiError::too_large_resource_version(err.to_string()).to_status();
            let _ = tx.try_send(Ok(line("ERROR", &status)));
        }
        Err(err) => return Err(ApiError::internal(err.to_string())),
        Ok(sub) => {
            let stream = Stream {
                rt,
                filter,
                tx,
                bookmarks,
                initial_end: send_initial == Some(true),
                table,
                headers_sent: AtomicBool::new(false),
            };
            tokio::spawn(stream.run(sub.scope, sub.rv, sub.backlog, sub.live, timeout));
        }
    }
    let mut response = Response::new(Body::from_stream(ReceiverStream::new(rx)));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut text = json!({"type": kind, "object": object}).to_string();
    text.push('\n');
    Bytes::from(text)
}

struct Stream {
    rt: Arc<ResourceType>,
    filter: Filter,
    tx: mpsc::Sender<Result<Bytes, std::convert::Infallible>>,
    bookmarks: bool,
    initial_end: bool,
    /// Set when the client asked for Tables.
    table: Option<Tabulator>,
    /// Whether a Table with column definitions went out already.
    headers_sent: AtomicBool,
}

impl Stream {
    async fn run(
        self,
        scope: Scope,
        start_rv: u64,
        backlog: Vec<Arc<Event>>,
        mut live: broadcast::Receiver<Arc<Event>>,
        timeout: Option<Duration>,
    ) {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut last_rv = start_rv;
        for event in &backlog {
            if !self.send_event(event).await {
                return;
            }
            last_rv = last_rv.max(event.rv);
        }
        if self.initial_end && !self.bookmark(last_rv, true).await {
            return;
        }
        let mut ticker = tokio::time::interval(BOOKMARK_EVERY);
        ticker.tick().await;
        loop {
            let expired = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                received = live.recv() => match received {
                    Ok(event) => {
                        if event.rv <= last_rv {
                            continue;
                        }
                        last_rv = event.rv;
                        if scope.includes(&event) && !self.send_event(&event).await {
                            return;
                        }
                    }
                    // A watcher that fell behind is closed; it re-watches from its last resourceVersion.
                    Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = ticker.tick() => {
                    if self.bookmarks && !self.bookmark(last_rv, false).await {
                        return;
                    }
                }
                _ = self.tx.closed() => return,
                _ = expired => return,
            }
        }
    }

    /// Sends an event if it passes the filter, turning selector transitions into ADDED/DELETED.
    /// Returns false once the client is gone.
    async fn send_event(&self, event: &Event) -> bool {
        let now = self.filter.matches(&event.object);
        let before = event.previous.as_deref().map(|p| self.filter.matches(p));
        let kind = match (event.kind, before, now) {
            (EventType::Deleted, _, true) => EventType::Deleted,
            (EventType::Deleted, _, false) => return true,
            (EventType::Added, _, true) => EventType::Added,
            (EventType::Modified, Some(false), true) => EventType::Added,
            (EventType::Modified, _, true) => EventType::Modified,
            (EventType::Modified, Some(true), false) => EventType::Deleted,
            _ => return true,
        };
        let object = match &self.table {
            Some(table) => {
                let first = !self.headers_sent.swap(true, Ordering::Relaxed);
                table.object(&event.object, first)
            }
            None => object::served(&self.rt, &event.object),
        };
        self.tx.send(Ok(line(kind.as_str(), &object))).await.is_ok()
    }

    async fn bookmark(&self, rv: u64, initial_end: bool) -> bool {
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            metadata["annotations"] = json!({INITIAL_EVENTS_END: "true"});
        }
        let object = match &self.table {
            // A Table's metadata has no annotations: a bookmark is a Table without rows.
            Some(table) => table.bookmark(rv),
            None => {
                json!({"kind": self.rt.kind, "apiVersion": self.rt.api_version(), "metadata": metadata})
            }
        };
        self.tx.send(Ok(line("BOOKMARK", &object))).await.is_ok()
    }
}
