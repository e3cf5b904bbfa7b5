//! The object store: SQLite (WAL, synchronous=FULL) is the durable record, an in-memory copy of every object
//! serves reads and lists, and an in-memory event history (reloaded from SQLite on start) serves watches.
//! One writer thread owns the SQLite connection and commits writes in batches, so concurrent clients share fsyncs.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, RwLock};

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;
use tokio::sync::{broadcast, mpsc, oneshot};

/// How many past events the store keeps for watches that resume from a resourceVersion.
const HISTORY: usize = 10_000;
/// How many queued writes one SQLite transaction takes at most.
const BATCH: usize = 256;
/// Watchers that fall this far behind are disconnected and re-watch from their last resourceVersion.
const FANOUT_CAPACITY: usize = 8_192;

/// Where a kind of object is stored: its API group and plural resource name (not its version).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceKey {
    pub group: String,
    pub resource: String,
}

impl ResourceKey {
    pub fn new(group: &str, resource: &str) -> Self {
        Self {
            group: group.to_owned(),
            resource: resource.to_owned(),
        }
    }
}

/// `(namespace, name)`; the namespace is empty for cluster-scoped objects.
pub type ObjectKey = (String, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }

    fn from_db(s: &str) -> Option<Self> {
        match s {
            "ADDED" => Some(EventType::Added),
            "MODIFIED" => Some(EventType::Modified),
            "DELETED" => Some(EventType::Deleted),
            _ => None,
        }
    }
}

/// One committed change. `object` carries the new resourceVersion (for deletions: the deletion's).
#[derive(Debug, Clone)]
pub struct Event {
    pub rv: u64,
    pub kind: EventType,
    pub resource: ResourceKey,
    pub namespace: String,
    pub object: Arc<Value>,
    /// The object before this change, when the store still had it (used to turn label-selector
    /// transitions into ADDED/DELETED for filtered watches).
    pub previous: Option<Arc<Value>>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("already exists")]
    AlreadyExists,
    #[error("not found")]
    NotFound,
    #[error(
        "the object has been modified; please apply your changes to the latest version and try again"
    )]
    Conflict,
    #[error("precondition failed: UID in precondition: {expected}, UID in object meta: {actual}")]
    UidMismatch { expected: String, actual: String },
    #[error("storage error: {0}")]
    Storage(String),
    #[error("too old resource version: {requested} ({oldest})")]
    TooOld { requested: u64, oldest: u64 },
    #[error("Too large resource version: {requested}, current: {current}")]
    TooNew { requested: u64, current: u64 },
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        StoreError::Storage(err.to_string())
    }
}

pub enum Action {
    /// Fails with AlreadyExists when the key is taken.
    Create(Value),
    /// Fails with NotFound when absent and Conflict when `expected_rv` is set and stale.
    /// Writing an object identical to the stored one (resourceVersion aside) is a no-op.
    Update {
        object: Value,
        expected_rv: Option<u64>,
    },
    Delete {
        expected_rv: Option<u64>,
        expected_uid: Option<String>,
    },
}

pub struct WriteOp {
    pub resource: ResourceKey,
    pub namespace: String,
    pub name: String,
    pub action: Action,
}

struct Pending {
    op: WriteOp,
    reply: oneshot::Sender<Result<Arc<Value>, StoreError>>,
}

#[derive(Default)]
struct State {
    rv: u64,
    objects: HashMap<ResourceKey, BTreeMap<ObjectKey, Arc<Value>>>,
    history: VecDeque<Arc<Event>>,
    /// The oldest resourceVersion from which a watch can still resume with no gap.
    history_floor: u64,
}

/// Where a watch starts.
pub enum WatchFrom {
    /// Synthetic ADDED events for every current object, then changes (resourceVersion unset or "0").
    Now,
    /// Changes strictly after this resourceVersion.
    After(u64),
}

/// What one watch is about: a resource, in one namespace or all of them.
#[derive(Debug, Clone)]
pub struct Scope {
    pub resource: ResourceKey,
    pub namespace: Option<String>,
}

impl Scope {
    /// Whether an event of the shared fan-out belongs to this watch.
    pub fn includes(&self, event: &Event) -> bool {
        event.resource == self.resource
            && self
                .namespace
                .as_deref()
                .is_none_or(|ns| ns == event.namespace)
    }
}

pub struct Subscription {
    pub scope: Scope,
    /// The resourceVersion the backlog brings the watcher up to.
    pub rv: u64,
    pub backlog: Vec<Arc<Event>>,
    pub live: broadcast::Receiver<Arc<Event>>,
}

#[derive(Clone)]
pub struct Store {
    state: Arc<RwLock<State>>,
    writes: mpsc::UnboundedSender<Pending>,
    fanout: broadcast::Sender<Arc<Event>>,
}

impl Store {
    /// Opens (or creates) the database at `path` and starts the writer thread.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS objects (
                 grp TEXT NOT NULL, resource TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
                 rv INTEGER NOT NULL, data TEXT NOT NULL,
                 PRIMARY KEY (grp, resource, namespace, name));
             CREATE TABLE IF NOT EXISTS changes (
                 rv INTEGER PRIMARY KEY, kind TEXT NOT NULL, grp TEXT NOT NULL, resource TEXT NOT NULL,
                 namespace TEXT NOT NULL, data TEXT NOT NULL);",
        )?;
        let state = load(&conn)?;
        let state = Arc::new(RwLock::new(state));
        let (fanout, _) = broadcast::channel(FANOUT_CAPACITY);
        let (writes, queue) = mpsc::unbounded_channel();
        let writer = Writer {
            conn,
            state: state.clone(),
            fanout: fanout.clone(),
        };
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run(queue))
            .map_err(|e| StoreError::Storage(format!("starting the writer thread: {e}")))?;
        Ok(Store {
            state,
            writes,
            fanout,
        })
    }

    pub fn current_rv(&self) -> u64 {
        self.read().rv
    }

    pub fn get(&self, resource: &ResourceKey, namespace: &str, name: &str) -> Option<Arc<Value>> {
        let state = self.read();
        state
            .objects
            .get(resource)?
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Every object of a resource (in one namespace when given), sorted by namespace and name, with the
    /// resourceVersion the list is consistent with.
    pub fn list(&self, resource: &ResourceKey, namespace: Option<&str>) -> (u64, Vec<Arc<Value>>) {
        let state = self.read();
        let items = match state.objects.get(resource) {
            None => Vec::new(),
            Some(objects) => match namespace {
                None => objects.values().cloned().collect(),
                Some(ns) => objects
                    .range((ns.to_owned(), String::new())..)
                    .take_while(|((n, _), _)| n == ns)
                    .map(|(_, v)| v.clone())
                    .collect(),
            },
        };
        (state.rv, items)
    }

    /// Whether any object of the resource exists in the namespace (or anywhere, for `None`).
    pub fn count(&self, resource: &ResourceKey, namespace: Option<&str>) -> usize {
        self.list(resource, namespace).1.len()
    }

    pub async fn write(&self, op: WriteOp) -> Result<Arc<Value>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.writes
            .send(Pending { op, reply })
            .map_err(|_| StoreError::Storage("the store writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Storage("the store writer has stopped".into()))?
    }

    /// Subscribes to the changes of one resource (all of them; callers filter). The backlog and the live
    /// channel together see every event after the start exactly once.
    pub fn watch(
        &self,
        resource: &ResourceKey,
        namespace: Option<&str>,
        from: WatchFrom,
    ) -> Result<Subscription, StoreError> {
        let scope = Scope {
            resource: resource.clone(),
            namespace: namespace.map(str::to_owned),
        };
        let state = self.read();
        let live = self.fanout.subscribe();
        let backlog = match from {
            WatchFrom::Now => {
                let objects = state.objects.get(resource);
                let iter = objects.into_iter().flat_map(|m| m.iter());
                iter.filter(|((ns, _), _)| namespace.is_none_or(|want| want == ns))
                    .map(|((ns, _), object)| {
                        Arc::new(Event {
                            rv: state.rv,
                            kind: EventType::Added,
                            resource: resource.clone(),
                            namespace: ns.clone(),
                            object: object.clone(),
                            previous: None,
                        })
                    })
                    .collect()
            }
            WatchFrom::After(rv) => {
                if rv > state.rv {
                    return Err(StoreError::TooNew {
                        requested: rv,
                        current: state.rv,
                    });
                }
                if rv < state.history_floor && rv < state.rv {
                    return Err(StoreError::TooOld {
                        requested: rv,
                        oldest: state.history_floor,
                    });
                }
                let start = state.history.partition_point(|e| e.rv <= rv);
                state
                    .history
                    .range(start..)
                    .filter(|e| scope.includes(e))
                    .cloned()
                    .collect()
            }
        };
        Ok(Subscription {
            scope,
            rv: state.rv,
            backlog,
            live,
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // A panic while holding the lock cannot leave State half-updated: the writer mutates it only
        // after a successful commit, with infallible map operations. So a poisoned lock is still sound.
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn load(conn: &Connection) -> Result<State, StoreError> {
    let mut state = State {
        rv: conn
            .query_row("SELECT value FROM meta WHERE key = 'rv'", [], |row| {
                row.get::<_, i64>(0)
            })
            .optional()?
            .unwrap_or(0) as u64,
        ..State::default()
    };
    let mut stmt = conn.prepare("SELECT grp, resource, namespace, name, data FROM objects")?;
    let rows = stmt.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, String>(3)?,
            row.get::<_, String>(4)?,
        ))
    })?;
    for row in rows {
        let (group, resource, namespace, name, data) = row?;
        let object: Value = serde_json::from_str(&data).map_err(|e| {
            StoreError::Storage(format!(
                "corrupt object {group}/{resource} {namespace}/{name}: {e}"
            ))
        })?;
        state
            .objects
            .entry(ResourceKey { group, resource })
            .or_default()
            .insert((namespace, name), Arc::new(object));
    }
    let mut stmt = conn.prepare(
        "SELECT rv, kind, grp, resource, namespace, data FROM changes WHERE rv > ?1 ORDER BY rv",
    )?;
    let floor = state.rv.saturating_sub(HISTORY as u64);
    let rows = stmt.query_map(params![floor as i64], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, String>(3)?,
            row.get::<_, String>(4)?,
            row.get::<_, String>(5)?,
        ))
    })?;
    for row in rows {
        let (rv, kind, group, resource, namespace, data) = row?;
        let (Some(kind), Ok(object)) = (
            EventType::from_db(&kind),
            serde_json::from_str::<Value>(&data),
        ) else {
            return Err(StoreError::Storage(format!(
                "corrupt change record at resourceVersion {rv}"
            )));
        };
        state.history.push_back(Arc::new(Event {
            rv: rv as u64,
            kind,
            resource: ResourceKey { group, resource },
            namespace,
            object: Arc::new(object),
            previous: None,
        }));
    }
    // A watch may resume from any rv at or after the change just before the oldest one we still hold.
    state.history_floor = state.history.front().map_or(state.rv, |e| e.rv - 1);
    Ok(state)
}

struct Writer {
    conn: Connection,
    state: Arc<RwLock<State>>,
    fanout: broadcast::Sender<Arc<Event>>,
}

/// What one op will do once its batch commits.
struct Planned {
    event: Option<Arc<Event>>,
    result: Result<Arc<Value>, StoreError>,
}

impl Writer {
    fn run(mut self, mut queue: mpsc::UnboundedReceiver<Pending>) {
        while let Some(first) = queue.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match queue.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            self.commit(batch);
        }
    }

    fn commit(&mut self, batch: Vec<Pending>) {
        let (rv, floor_rv) = {
            let state = self.state.read().unwrap_or_else(|p| p.into_inner());
            (state.rv, state.rv)
        };
        let mut next_rv = rv;
        // Later ops in a batch must see earlier ones: an overlay over the committed state.
        let mut overlay: HashMap<(ResourceKey, ObjectKey), Option<Arc<Value>>> = HashMap::new();
        let mut planned = Vec::with_capacity(batch.len());
        let outcome = (|| -> Result<(), rusqlite::Error> {
            let tx = self.conn.transaction()?;
            for pending in &batch {
                let op = &pending.op;
                let key = (op.resource.clone(), (op.namespace.clone(), op.name.clone()));
                let current = match overlay.get(&key) {
                    Some(v) => v.clone(),
                    None => {
                        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
                        state
                            .objects
                            .get(&op.resource)
                            .and_then(|m| m.get(&key.1))
                            .cloned()
                    }
                };
                let plan = plan(op, current.as_ref(), next_rv + 1);
                if let Some(event) = &plan.event {
                    next_rv = event.rv;
                    let data = event.object.to_string();
                    match event.kind {
                        EventType::Deleted => {
                            tx.execute(
                                "DELETE FROM objects WHERE grp=?1 AND resource=?2 AND namespace=?3 AND name=?4",
                                params![op.resource.group, op.resource.resource, op.namespace, op.name],
                            )?;
                            overlay.insert(key, None);
                        }
                        _ => {
                            tx.execute(
                                "INSERT OR REPLACE INTO objects (grp, resource, namespace, name, rv, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                                params![op.resource.group, op.resource.resource, op.namespace, op.name, event.rv as i64, data],
                            )?;
                            overlay.insert(key, Some(event.object.clone()));
                        }
                    }
                    tx.execute(
                        "INSERT INTO changes (rv, kind, grp, resource, namespace, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        params![event.rv as i64, event.kind.as_str(), op.resource.group, op.resource.resource, op.namespace, data],
                    )?;
                }
                planned.push(plan);
            }
            if next_rv != floor_rv {
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('rv', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    params![next_rv as i64],
                )?;
                // Keep the change log about as long as the in-memory history.
                if next_rv / 1000 != floor_rv / 1000 {
                    tx.execute(
                        "DELETE FROM changes WHERE rv <= ?1",
                        params![next_rv.saturating_sub(HISTORY as u64) as i64],
                    )?;
                }
            }
            tx.commit()
        })();

        if let Err(err) = outcome {
            tracing::error!(error = %err, "store commit failed");
            for pending in batch {
                let _ = pending
                    .reply
                    .send(Err(StoreError::Storage(err.to_string())));
            }
            return;
        }

        {
            let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
            for plan in &planned {
                let Some(event) = &plan.event else { continue };
                let name = event.object["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let objects = state.objects.entry(event.resource.clone()).or_default();
                let key = (event.namespace.clone(), name);
                match event.kind {
                    EventType::Deleted => {
                        objects.remove(&key);
                    }
                    _ => {
                        objects.insert(key, event.object.clone());
                    }
                }
                state.rv = event.rv;
                state.history.push_back(event.clone());
                if state.history.len() > HISTORY
                    && let Some(dropped) = state.history.pop_front()
                {
                    state.history_floor = dropped.rv;
                }
                // No receivers is fine: nobody is watching.
                let _ = self.fanout.send(event.clone());
            }
        }
        for (pending, plan) in batch.into_iter().zip(planned) {
            let _ = pending.reply.send(plan.result);
        }
    }
}

fn plan(op: &WriteOp, current: Option<&Arc<Value>>, rv: u64) -> Planned {
    let fail = |err| Planned {
        event: None,
        result: Err(err),
    };
    let event = |kind, mut object: Value, previous: Option<&Arc<Value>>| {
        // Handlers always hand over objects whose metadata is a map (see object::meta_mut).
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
        }
        let object = Arc::new(object);
        Planned {
            event: Some(Arc::new(Event {
                rv,
                kind,
                resource: op.resource.clone(),
                namespace: op.namespace.clone(),
                object: object.clone(),
                previous: previous.cloned(),
            })),
            result: Ok(object),
        }
    };
    match (&op.action, current) {
        (Action::Create(_), Some(_)) => fail(StoreError::AlreadyExists),
        (Action::Create(object), None) => event(EventType::Added, object.clone(), None),
        (Action::Update { .. } | Action::Delete { .. }, None) => fail(StoreError::NotFound),
        (
            Action::Update {
                object,
                expected_rv,
            },
            Some(current),
        ) => {
            if expected_rv.is_some_and(|want| Some(want) != stored_rv(current)) {
                return fail(StoreError::Conflict);
            }
            if same_but_rv(object, current) {
                return Planned {
                    event: None,
                    result: Ok(current.clone()),
                };
            }
            event(EventType::Modified, object.clone(), Some(current))
        }
        (
            Action::Delete {
                expected_rv,
                expected_uid,
            },
            Some(current),
        ) => {
            if let Some(uid) = expected_uid {
                let actual = current["metadata"]["uid"].as_str().unwrap_or_default();
                if actual != uid {
                    return fail(StoreError::UidMismatch {
                        expected: uid.clone(),
                        actual: actual.to_owned(),
                    });
                }
            }
            if expected_rv.is_some_and(|want| Some(want) != stored_rv(current)) {
                return fail(StoreError::Conflict);
            }
            event(EventType::Deleted, current.as_ref().clone(), Some(current))
        }
    }
}

pub fn stored_rv(object: &Value) -> Option<u64> {
    object["metadata"]["resourceVersion"].as_str()?.parse().ok()
}

fn same_but_rv(new: &Value, current: &Value) -> bool {
    let (Some(new_obj), Some(cur_obj)) = (new.as_object(), current.as_object()) else {
        return new == current;
    };
    if new_obj.len() != cur_obj.len() {
        return false;
    }
    new_obj.iter().all(|(k, v)| {
        let Some(other) = cur_obj.get(k) else {
            return false;
        };
        if k != "metadata" {
            return v == other;
        }
        let (Some(a), Some(b)) = (v.as_object(), other.as_object()) else {
            return v == other;
        };
        let relevant = |m: &serde_json::Map<String, Value>| {
            m.iter()
                .filter(|(k, _)| *k != "resourceVersion")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<BTreeMap<_, _>>()
        };
        relevant(a) == relevant(b)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cm(name: &str, data: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"}, "data": {"k": data}})
    }

    fn key() -> ResourceKey {
        ResourceKey::new("", "configmaps")
    }

    fn op(name: &str, action: Action) -> WriteOp {
        WriteOp {
            resource: key(),
            namespace: "default".into(),
            name: name.into(),
            action,
        }
    }

    #[tokio::test]
    async fn writes_survive_reopen_and_rv_continues() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let store = Store::open(&path).unwrap();
            let a = store
                .write(op("a", Action::Create(cm("a", "1"))))
                .await
                .unwrap();
            assert_eq!(stored_rv(&a), Some(1));
            store
                .write(op("b", Action::Create(cm("b", "1"))))
                .await
                .unwrap();
            store
                .write(op(
                    "b",
                    Action::Delete {
                        expected_rv: None,
                        expected_uid: None,
                    },
                ))
                .await
                .unwrap();
            assert_eq!(store.current_rv(), 3);
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.current_rv(), 3);
        assert!(store.get(&key(), "default", "a").is_some());
        assert!(store.get(&key(), "default", "b").is_none());
        let sub = store.watch(&key(), None, WatchFrom::After(1)).unwrap();
        let kinds: Vec<_> = sub.backlog.iter().map(|e| (e.rv, e.kind)).collect();
        assert_eq!(kinds, vec![(2, EventType::Added), (3, EventType::Deleted)]);
        let c = store
            .write(op("c", Action::Create(cm("c", "1"))))
            .await
            .unwrap();
        assert_eq!(stored_rv(&c), Some(4));
    }

    #[tokio::test]
    async fn stale_update_is_a_conflict_and_identical_update_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let a = store
            .write(op("a", Action::Create(cm("a", "1"))))
            .await
            .unwrap();
        let same = store
            .write(op(
                "a",
                Action::Update {
                    object: a.as_ref().clone(),
                    expected_rv: Some(1),
                },
            ))
            .await
            .unwrap();
        assert_eq!(
            stored_rv(&same),
            Some(1),
            "no-op update must not bump the resourceVersion"
        );
        store
            .write(op(
                "a",
                Action::Update {
                    object: cm("a", "2"),
                    expected_rv: Some(1),
                },
            ))
            .await
            .unwrap();
        let stale = store
            .write(op(
                "a",
                Action::Update {
                    object: cm("a", "3"),
                    expected_rv: Some(1),
                },
            ))
            .await;
        assert_eq!(stale.unwrap_err(), StoreError::Conflict);
        let dup = store.write(op("a", Action::Create(cm("a", "1")))).await;
        assert_eq!(dup.unwrap_err(), StoreError::AlreadyExists);
    }

    #[tokio::test]
    async fn a_namespaced_watch_includes_only_its_namespace() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let mut sub = store
            .watch(&key(), Some("default"), WatchFrom::After(0))
            .unwrap();
        let mut elsewhere = cm("x", "1");
        elsewhere["metadata"]["namespace"] = json!("other");
        store
            .write(WriteOp {
                resource: key(),
                namespace: "other".into(),
                name: "x".into(),
                action: Action::Create(elsewhere),
            })
            .await
            .unwrap();
        store
            .write(op("a", Action::Create(cm("a", "1"))))
            .await
            .unwrap();
        let first = sub.live.recv().await.unwrap();
        assert!(
            !sub.scope.includes(&first),
            "the other namespace's event is not this watch's"
        );
        let second = sub.live.recv().await.unwrap();
        assert!(sub.scope.includes(&second));
    }

    #[tokio::test]
    async fn watch_from_the_future_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        store
            .write(op("a", Action::Create(cm("a", "1"))))
            .await
            .unwrap();
        let err = store
            .watch(&key(), None, WatchFrom::After(7))
            .err()
            .unwrap();
        assert_eq!(
            err,
            StoreError::TooNew {
                requested: 7,
                current: 1
            }
        );
    }

    #[tokio::test]
    async fn watch_from_now_replays_state_then_streams_changes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        store
            .write(op("a", Action::Create(cm("a", "1"))))
            .await
            .unwrap();
        let mut sub = store
            .watch(&key(), Some("default"), WatchFrom::Now)
            .unwrap();
        assert_eq!(sub.backlog.len(), 1);
        assert_eq!(sub.backlog[0].kind, EventType::Added);
        store
            .write(op("b", Action::Create(cm("b", "1"))))
            .await
            .unwrap();
        let live = sub.live.recv().await.unwrap();
        assert_eq!((live.rv, live.kind), (2, EventType::Added));
    }

    #[tokio::test]
    async fn concurrent_writes_get_distinct_increasing_versions() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let mut tasks = Vec::new();
        for i in 0..64 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let name = format!("cm{i}");
                store
                    .write(op(&name, Action::Create(cm(&name, "x"))))
                    .await
                    .unwrap()
            }));
        }
        let mut rvs = Vec::new();
        for t in tasks {
            rvs.push(stored_rv(&t.await.unwrap()).unwrap());
        }
        rvs.sort();
        assert_eq!(rvs, (1..=64).collect::<Vec<_>>());
        assert_eq!(store.count(&key(), Some("default")), 64);
    }
}
