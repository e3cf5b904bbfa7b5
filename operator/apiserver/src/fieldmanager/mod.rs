//! Field ownership and server-side apply, as upstream's field manager (apimachinery's managedfields over
//! structured-merge-diff) does them: every write records in `metadata.managedFields` which manager set which
//! fields (`Update` entries); an apply (`Apply` entries) merges a manager's configuration into the object,
//! removes what the manager stopped applying when no one else owns it, and fails with 409 on fields another
//! manager owns unless forced. The schema a resource is walked with comes from [`crate::patchmeta`] for
//! built-in kinds and from the CRD's structural schema for custom resources. No Rust crate implements this.

mod fieldpath;
mod typed;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::error::{ApiError, Cause, Result, Subject};
use crate::object;
use crate::patchmeta::{self, Types};
use crate::registry::{ResourceType, Schema as ResourceSchema};
use fieldpath::{Path, PathElement, Set, path_string};
use typed::Shape;

/// Upstream keeps at most this many `Update` entries; older ones merge into `ancient-changes`.
const MAX_UPDATE_MANAGERS: usize = 10;
const ANCIENT_CHANGES: &str = "ancient-changes";
/// Owns what an object held before its first apply (objects written before ownership was tracked).
const BEFORE_FIRST_APPLY: &str = "before-first-apply";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// kubectl's server-side apply manager, which upstream lets take over fields its client-side apply set.
const KUBECTL: &str = "kubectl";
/// Upstream's limit on `fieldManager`.
const MAX_MANAGER_LENGTH: usize = 128;

/// The manager a write is recorded under: the `fieldManager` parameter, else the client's user agent up to
/// its first `/` (`kubectl`, `kube-rs`), as upstream derives it.
pub fn manager_of(field_manager: Option<&str>, user_agent: Option<&str>) -> Result<String> {
    if let Some(manager) = field_manager {
        let mut causes = Vec::new();
        if manager.len() > MAX_MANAGER_LENGTH {
            causes.push(Cause::new(
                "FieldValueTooLong",
                "fieldManager",
                format!("Too long: may not be more than {MAX_MANAGER_LENGTH} bytes"),
            ));
        }
        if let Some((i, c)) = manager.char_indices().find(|(_, c)| c.is_control()) {
            causes.push(Cause::invalid(
                "fieldManager",
                &json!(manager),
                format!("invalid character {c:?} (at position {i})"),
            ));
        }
        if !causes.is_empty() {
            return Err(options_invalid(causes));
        }
        return Ok(manager.to_owned());
    }
    let prefix = user_agent.unwrap_or("").split('/').next().unwrap_or("");
    let mut manager = String::new();
    for c in prefix.chars().filter(|c| !c.is_control()) {
        if manager.len() + c.len_utf8() > MAX_MANAGER_LENGTH {
            break;
        }
        manager.push(c);
    }
    Ok(manager)
}

/// Whether a write still has to record its manager in managedFields.
#[derive(Debug, Clone, Copy)]
pub enum Tracking<'a> {
    /// An update (create, update, patch) by this manager.
    Update(&'a str),
    /// The object's managedFields are already what they must be (a server-side apply computed them).
    Recorded,
}

/// The 422 upstream answers for bad write options (`PatchOptions.meta.k8s.io "" is invalid: ...`).
pub fn options_invalid(causes: Vec<Cause>) -> ApiError {
    ApiError::invalid(
        Subject {
            group: "meta.k8s.io".into(),
            kind: "PatchOptions".into(),
            name: String::new(),
        },
        "PatchOptions.meta.k8s.io",
        causes,
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Operation {
    Apply,
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// Who owns a set of fields: upstream's manager identity (an Apply entry's identity has no API version).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ManagerKey {
    manager: String,
    operation: Operation,
    api_version: String,
    subresource: String,
}

impl ManagerKey {
    /// How conflict messages name a manager: `"kubectl-client-side-apply" using v1`.
    fn describe(&self) -> String {
        let mut text = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            text.push_str(&format!(" with subresource {:?}", self.subresource));
        }
        if self.operation == Operation::Update {
            text.push_str(&format!(" using {}", self.api_version));
        }
        text
    }
}

#[derive(Debug, Clone)]
struct Entry {
    api_version: String,
    time: Option<String>,
    set: Set,
}

type Managed = BTreeMap<ManagerKey, Entry>;

fn decode(entries: &Value) -> std::result::Result<Managed, String> {
    let mut managed = Managed::new();
    let Some(list) = entries.as_array() else {
        return if entries.is_null() {
            Ok(managed)
        } else {
            Err("managedFields must be a list".into())
        };
    };
    for (i, entry) in list.iter().enumerate() {
        let text = |name: &str| entry.get(name).and_then(Value::as_str).unwrap_or("");
        let operation = match text("operation") {
            "Apply" => Operation::Apply,
            "Update" => Operation::Update,
            _ => return Err("operation must be `Apply` or `Update`".into()),
        };
        let api_version = text("apiVersion");
        if api_version.is_empty() {
            return Err("apiVersion must not be empty".into());
        }
        match text("fieldsType") {
            "FieldsV1" => {}
            "" => return Err(format!("missing fieldsType in managed fields entry {i}")),
            other => {
                return Err(format!(
                    "invalid fieldsType {other:?} in managed fields entry {i}"
                ));
            }
        }
        let set = match entry.get("fieldsV1") {
            None | Some(Value::Null) => Set::new(),
            Some(fields) => Set::from_fields_v1(fields)?,
        };
        let key = ManagerKey {
            manager: text("manager").to_owned(),
            operation,
            api_version: match operation {
                Operation::Apply => String::new(),
                Operation::Update => api_version.to_owned(),
            },
            subresource: text("subresource").to_owned(),
        };
        managed.insert(
            key,
            Entry {
                api_version: api_version.to_owned(),
                time: entry.get("time").and_then(Value::as_str).map(str::to_owned),
                set,
            },
        );
    }
    Ok(managed)
}

fn seconds(time: Option<&str>) -> i64 {
    time.and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map_or(0, |t| t.as_second())
}

fn encode(managed: &Managed) -> Option<Value> {
    if managed.is_empty() {
        return None;
    }
    let mut entries: Vec<(&ManagerKey, &Entry)> = managed.iter().collect();
    entries.sort_by(|(ka, a), (kb, b)| {
        ka.operation
            .cmp(&kb.operation)
            .then_with(|| seconds(a.time.as_deref()).cmp(&seconds(b.time.as_deref())))
            .then_with(|| ka.manager.cmp(&kb.manager))
            .then_with(|| a.api_version.cmp(&b.api_version))
            .then_with(|| ka.subresource.cmp(&kb.subresource))
    });
    let list = entries
        .into_iter()
        .map(|(key, entry)| {
            let mut out = Map::new();
            out.insert("manager".into(), json!(key.manager));
            out.insert("operation".into(), json!(key.operation.as_str()));
            out.insert("apiVersion".into(), json!(entry.api_version));
            if let Some(time) = &entry.time {
                out.insert("time".into(), json!(time));
            }
            out.insert("fieldsType".into(), json!("FieldsV1"));
            out.insert("fieldsV1".into(), entry.set.to_fields_v1());
            if !key.subresource.is_empty() {
                out.insert("subresource".into(), json!(key.subresource));
            }
            Value::Object(out)
        })
        .collect();
    Some(Value::Array(list))
}

/// `managedFields: []` (or one empty entry) in a write asks for ownership to be forgotten.
fn is_reset(entries: &Value) -> bool {
    match entries.as_array().map(Vec::as_slice) {
        Some([]) => true,
        Some([only]) => only.as_object().is_some_and(Map::is_empty),
        _ => false,
    }
}

fn take_managed_fields(object: &mut Value) -> Value {
    object
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .and_then(|m| m.remove("managedFields"))
        .unwrap_or(Value::Null)
}

fn without_managed_fields(object: &Value) -> Value {
    let mut copy = object.clone();
    take_managed_fields(&mut copy);
    copy
}

fn store_managed_fields(object: &mut Value, managed: &Managed) {
    match encode(managed) {
        Some(entries) => {
            object::meta_mut(object).insert("managedFields".into(), entries);
        }
        None => {
            object::meta_mut(object).remove("managedFields");
        }
    }
}

/// Fields no manager owns: identity and system metadata.
fn stripped(set: &Set) -> Set {
    let mut strip = Set::new();
    let field = |name: &str| PathElement::Field(name.into());
    for top in ["apiVersion", "kind", "metadata"] {
        strip.insert(&[field(top)]);
    }
    for meta in [
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "clusterName",
        "generation",
        "managedFields",
        "resourceVersion",
    ] {
        strip.insert(&[field("metadata"), field(meta)]);
    }
    set.difference(&strip)
}

/// A resource's schema, held for walking its objects.
enum Schema {
    Builtin(Arc<Types>),
    Custom(Option<Arc<Value>>),
}

impl Schema {
    fn shape(&self) -> Shape<'_> {
        match self {
            Schema::Builtin(types) => Shape::Builtin(types.root()),
            Schema::Custom(schema) => Shape::custom(schema.as_deref()),
        }
    }
}

/// Which fields a write to this endpoint can own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// The whole object.
    Object,
    /// The object but its status (status is written through `/status`).
    ObjectWithoutStatus,
    /// The status only (`/status`).
    Status,
}

impl Scope {
    fn filter(self, set: Set) -> Set {
        let mut status = Set::new();
        status.insert(&[PathElement::Field("status".into())]);
        match self {
            Scope::Object => set,
            Scope::ObjectWithoutStatus => set.recursive_difference(&status),
            Scope::Status => {
                let mut out = set.intersection(&status);
                let below = set.with_prefix(&PathElement::Field("status".into()));
                out.set_child(PathElement::Field("status".into()), below);
                out
            }
        }
    }
}

/// One manager's conflicting path.
type Conflicts = Vec<(ManagerKey, Path)>;

/// The field manager of one resource endpoint (a resource, or its `/status`).
pub struct FieldManager {
    schema: Schema,
    api_version: String,
    kind: String,
    subresource: String,
    scope: Scope,
}

impl FieldManager {
    pub fn new(rt: &ResourceType, subresource: Option<&str>) -> FieldManager {
        let schema = match &rt.schema {
            ResourceSchema::Typed(_) => {
                match patchmeta::kind_types(&rt.group, &rt.version, &rt.kind) {
                    Some(types) => Schema::Builtin(types),
                    None => Schema::Custom(None),
                }
            }
            ResourceSchema::Structural(schema) => Schema::Custom(schema.clone()),
        };
        let scope = match subresource {
            Some("status") => Scope::Status,
            _ if rt.status_subresource => Scope::ObjectWithoutStatus,
            _ => Scope::Object,
        };
        FieldManager {
            schema,
            api_version: rt.api_version(),
            kind: rt.kind.clone(),
            subresource: subresource.unwrap_or_default().to_owned(),
            scope,
        }
    }

    fn key(&self, manager: &str, operation: Operation) -> ManagerKey {
        ManagerKey {
            // A client that names no manager and sends no user agent is recorded as upstream records it.
            manager: if manager.is_empty() {
                "unknown".to_owned()
            } else {
                manager.to_owned()
            },
            operation,
            api_version: match operation {
                Operation::Apply => String::new(),
                Operation::Update => self.api_version.clone(),
            },
            subresource: self.subresource.clone(),
        }
    }

    /// Records a write (create, update, patch) by `manager` in `new`'s managedFields: the manager takes the
    /// fields it changed from everyone else. `live` is None for a create. A write that carries managedFields
    /// of its own starts from those (that is how clients rewrite or clear ownership), except on `/status`.
    pub fn update(&self, live: Option<&Value>, new: &mut Value, manager: &str) {
        let requested = take_managed_fields(new);
        let from_live = || {
            live.map(|l| decode(&l["metadata"]["managedFields"]).unwrap_or_default())
                .unwrap_or_default()
        };
        let mut managed = if self.scope == Scope::Status {
            from_live()
        } else if is_reset(&requested) {
            Managed::new()
        } else {
            match decode(&requested) {
                Ok(managed) if !managed.is_empty() => managed,
                _ => from_live(),
            }
        };
        // Objects that existed before ownership was tracked stay untracked until their first apply.
        if managed.is_empty() && live.is_some() {
            return;
        }
        let live = live.map_or_else(|| json!({}), without_managed_fields);
        self.record_update(&live, new, &mut managed, manager);
        cap_update_managers(&mut managed);
        store_managed_fields(new, &managed);
    }

    fn record_update(&self, live: &Value, new: &Value, managed: &mut Managed, manager: &str) {
        let comparison = typed::compare(live, new, self.schema.shape());
        let changed = self
            .scope
            .filter(comparison.modified.union(&comparison.added));
        let removed = self.scope.filter(comparison.removed);
        managed.retain(|_, entry| {
            entry.set = entry.set.difference(&changed).difference(&removed);
            !entry.set.is_empty()
        });
        let mine = stripped(&changed);
        if mine.is_empty() {
            return;
        }
        let key = self.key(manager, Operation::Update);
        let set = match managed.remove(&key) {
            Some(previous) => mine.union(&previous.set),
            None => mine,
        };
        managed.insert(
            key,
            Entry {
                api_version: self.api_version.clone(),
                time: Some(object::now()),
                set,
            },
        );
    }

    /// Server-side apply of `config` by `manager` to `live` (None to create). Returns the object to store,
    /// with its managedFields; it equals `live` when the apply changes nothing.
    pub fn apply(
        &self,
        live: Option<&Value>,
        mut config: Value,
        manager: &str,
        force: bool,
    ) -> Result<Value> {
        let (api_version, kind) = (
            config["apiVersion"].as_str().unwrap_or_default(),
            config["kind"].as_str().unwrap_or_default(),
        );
        if api_version != self.api_version || kind != self.kind {
            let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
            return Err(ApiError::bad_request(format!(
                "invalid object type: {group}/{version}, Kind={kind}"
            )));
        }
        if !take_managed_fields(&mut config).is_null() {
            return Err(ApiError::bad_request("metadata.managedFields must be nil"));
        }
        drop_nulls(&mut config);
        typed::validate_keys(&config, self.schema.shape()).map_err(|e| {
            ApiError::bad_request(format!("failed to create typed patch object: {e}"))
        })?;

        let mut managed = live
            .map(|l| decode(&l["metadata"]["managedFields"]).unwrap_or_default())
            .unwrap_or_default();
        let live_value = live.map_or_else(|| json!({}), without_managed_fields);
        if managed.is_empty() && live.is_some() {
            self.record_update(&json!({}), &live_value, &mut managed, BEFORE_FIRST_APPLY);
        }

        let mut result = self.apply_once(&live_value, &config, managed.clone(), manager, force);
        if manager == KUBECTL
            && let Err(conflicts) = &result
            && let Some(allowed) = self.allowed_by_last_applied(&live_value)
        {
            let remaining: Conflicts = conflicts
                .iter()
                .filter(|(_, path)| !allowed.has(path))
                .cloned()
                .collect();
            result = if remaining.is_empty() {
                self.apply_once(&live_value, &config, managed, manager, true)
            } else {
                Err(remaining)
            };
        }
        let (mut object, managed) = result.map_err(conflict_error)?;
        if manager == KUBECTL
            && object["metadata"]["annotations"][LAST_APPLIED]
                .as_str()
                .is_some_and(|a| !a.is_empty())
        {
            let mut applied = config.clone();
            if let Some(annotations) = applied
                .get_mut("metadata")
                .and_then(|m| m.get_mut("annotations"))
                .and_then(Value::as_object_mut)
            {
                annotations.remove(LAST_APPLIED);
            }
            object["metadata"]["annotations"][LAST_APPLIED] = json!(format!("{applied}\n"));
        }
        store_managed_fields(&mut object, &managed);
        Ok(object)
    }

    fn apply_once(
        &self,
        live: &Value,
        config: &Value,
        mut managed: Managed,
        manager: &str,
        force: bool,
    ) -> std::result::Result<(Value, Managed), Conflicts> {
        let shape = self.schema.shape();
        let key = self.key(manager, Operation::Apply);
        let merged = typed::merge(Some(live), Some(config), shape).unwrap_or_else(|| json!({}));
        let last = managed.get(&key).map(|e| e.set.clone());
        let set = self.scope.filter(typed::to_field_set(config, shape));
        let time = managed.get(&key).and_then(|e| e.time.clone());
        managed.insert(
            key.clone(),
            Entry {
                api_version: self.api_version.clone(),
                time,
                set,
            },
        );
        let pruned = match &last {
            Some(last) if !last.is_empty() => self.prune(&merged, &managed, last),
            _ => merged,
        };

        let comparison = typed::compare(live, &pruned, shape);
        let changed = self
            .scope
            .filter(comparison.modified.union(&comparison.added));
        let removed = self.scope.filter(comparison.removed);
        let mut conflicts: Vec<(ManagerKey, Set)> = Vec::new();
        for (other, entry) in &managed {
            if *other == key {
                continue;
            }
            let overlap = entry.set.intersection(&changed);
            if !overlap.is_empty() {
                conflicts.push((other.clone(), overlap));
            }
        }
        if !force && !conflicts.is_empty() {
            return Err(conflicts
                .into_iter()
                .flat_map(|(manager, set)| {
                    set.paths().into_iter().map(move |p| (manager.clone(), p))
                })
                .collect());
        }
        for (other, overlap) in conflicts {
            if let Some(entry) = managed.get_mut(&other) {
                entry.set = entry.set.difference(&overlap);
            }
        }
        for (other, entry) in managed.iter_mut() {
            if *other != key {
                entry.set = entry.set.difference(&removed);
            }
        }
        if let Some(entry) = managed.get_mut(&key) {
            entry.set = stripped(&entry.set);
        }
        managed.retain(|_, entry| !entry.set.is_empty());
        let changed_object = pruned != *live;
        if changed_object && let Some(entry) = managed.get_mut(&key) {
            entry.time = Some(object::now());
        }
        let object = if changed_object { pruned } else { live.clone() };
        Ok((object, managed))
    }

    /// Removes what the applying manager applied last time and not this time, unless someone (the manager
    /// included, through its new configuration) still owns it (upstream's prune, single version).
    fn prune(&self, merged: &Value, managed: &Managed, last: &Set) -> Value {
        let shape = self.schema.shape();
        let named = |set: &Set| typed::ensure_named_fields(set, shape);
        let fields = |value: &Value| named(&typed::to_field_set(value, shape));
        let remove =
            |set: &Set| typed::remove_items(merged, set, shape).unwrap_or_else(|| json!({}));

        let last = named(last);
        let pruned = remove(&last);
        let owned = managed
            .values()
            .fold(Set::new(), |all, entry| all.union(&entry.set));
        let merged_set = fields(merged);
        let pruned = remove(&merged_set.difference(&fields(&pruned).union(&named(&owned))));
        remove(&merged_set.difference(&fields(&pruned)).intersection(&last))
    }

    /// The fields kubectl's client-side apply set (its last-applied annotation) that still hold the applied
    /// values: kubectl's server-side apply may take them over without a conflict.
    fn allowed_by_last_applied(&self, live: &Value) -> Option<Set> {
        let text = live["metadata"]["annotations"][LAST_APPLIED].as_str()?;
        let last: Value = serde_json::from_str(text).ok()?;
        if last["apiVersion"].as_str() != Some(self.api_version.as_str()) {
            return None;
        }
        let shape = self.schema.shape();
        let set = typed::to_field_set(&last, shape);
        let comparison = typed::compare(&last, live, shape);
        Some(
            set.difference(&comparison.modified)
                .difference(&comparison.added)
                .difference(&comparison.removed),
        )
    }
}

/// Nulls in an applied configuration set nothing (typed decoding drops them upstream).
fn drop_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        Value::Array(list) => list.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// Merges the oldest `Update` entries into `ancient-changes` (one per API version) beyond the limit.
fn cap_update_managers(managed: &mut Managed) {
    let mut updaters: Vec<ManagerKey> = managed
        .keys()
        .filter(|k| k.operation == Operation::Update)
        .cloned()
        .collect();
    if updaters.len() <= MAX_UPDATE_MANAGERS {
        return;
    }
    updaters.sort_by(|a, b| {
        let time = |k: &ManagerKey| seconds(managed.get(k).and_then(|e| e.time.as_deref()));
        time(a).cmp(&time(b)).then_with(|| a.cmp(b))
    });
    let mut remaining = updaters.len();
    let mut first_of_version: BTreeMap<String, ManagerKey> = BTreeMap::new();
    for key in updaters {
        if remaining <= MAX_UPDATE_MANAGERS {
            break;
        }
        let Some(entry) = managed.get(&key).cloned() else {
            continue;
        };
        let bucket = ManagerKey {
            manager: ANCIENT_CHANGES.into(),
            operation: Operation::Update,
            api_version: entry.api_version.clone(),
            subresource: String::new(),
        };
        match first_of_version.get(&entry.api_version) {
            Some(first) => {
                if !managed.contains_key(&bucket)
                    && let Some(moved) = managed.remove(first)
                {
                    managed.insert(bucket.clone(), moved);
                }
                managed.remove(&key);
                if let Some(target) = managed.get_mut(&bucket) {
                    target.set = entry.set.union(&target.set);
                    target.time = entry.time.clone();
                }
                remaining -= 1;
            }
            None => {
                first_of_version.insert(entry.api_version.clone(), key);
            }
        }
    }
}

/// Upstream's 409 for an apply that would take fields other managers own.
fn conflict_error(conflicts: Conflicts) -> ApiError {
    let causes: Vec<Cause> = conflicts
        .iter()
        .map(|(manager, path)| {
            Cause::new(
                "FieldManagerConflict",
                path_string(path),
                format!("conflict with {}", manager.describe()),
            )
        })
        .collect();
    let message = match conflicts.as_slice() {
        [(manager, path)] => format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            manager.describe(),
            path_string(path)
        ),
        _ => {
            let mut by_manager: BTreeMap<&ManagerKey, Vec<String>> = BTreeMap::new();
            for (manager, path) in &conflicts {
                by_manager
                    .entry(manager)
                    .or_default()
                    .push(path_string(path));
            }
            let mut lines = Vec::new();
            for (manager, paths) in by_manager {
                lines.push(format!("conflicts with {}:", manager.describe()));
                lines.extend(paths.into_iter().map(|p| format!("- {p}")));
            }
            format!(
                "Apply failed with {} conflicts: {}",
                conflicts.len(),
                lines.join("\n")
            )
        }
    };
    ApiError {
        code: http::StatusCode::CONFLICT,
        reason: "Conflict",
        message,
        subject: None,
        causes,
        retry_after_seconds: None,
    }
}

#[cfg(test)]
mod tests;
