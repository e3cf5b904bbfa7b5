//! Resources served from another resource's storage, as upstream serves events.k8s.io/v1 Events from the core
//! Events' storage: one object, two views, so that the clients of either API see every Event (the kube-rs
//! `Recorder` writes events.k8s.io; `kubectl get events` and `kubectl describe` read core/v1). Objects are
//! converted to the storage form before they are stored and to the served form whenever they are served.

use serde_json::{Map, Value};

use crate::store::ResourceKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    /// events.k8s.io/v1 Event over the core/v1 Event storage.
    EventsV1,
}

/// The core/v1 Event fields events.k8s.io/v1 names differently (upstream's `Convert_v1_Event_To_core_Event`
/// and back; core/v1 serializes the internal `ReportingController` as `reportingComponent`). The other fields
/// (`reason`, `type`, `action`, `eventTime`, `series`, `related`, `reportingInstance`, metadata) are named alike.
const EVENT_RENAMES: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("reportingComponent", "reportingController"),
];

/// events.k8s.io/v1 field-selector labels and the stored (core/v1) fields they select, as upstream's
/// `AddFieldLabelConversionsForEvent` maps them (`source` selects the source's component, as on core/v1).
pub const EVENTS_V1_FIELD_LABELS: &[(&str, &str)] = &[
    ("regarding.kind", "involvedObject.kind"),
    ("regarding.namespace", "involvedObject.namespace"),
    ("regarding.name", "involvedObject.name"),
    ("regarding.uid", "involvedObject.uid"),
    ("regarding.apiVersion", "involvedObject.apiVersion"),
    (
        "regarding.resourceVersion",
        "involvedObject.resourceVersion",
    ),
    ("regarding.fieldPath", "involvedObject.fieldPath"),
    ("reason", "reason"),
    ("reportingController", "reportingComponent"),
    ("source", "source.component"),
    ("type", "type"),
];

impl Conversion {
    /// Where the objects live.
    pub fn storage(self) -> ResourceKey {
        match self {
            Conversion::EventsV1 => ResourceKey::new("", "events"),
        }
    }

    /// A served object (a client's create, update or patch result) in the storage form.
    pub fn to_storage(self, object: &Value) -> Value {
        match self {
            Conversion::EventsV1 => {
                let mut core = rename(object, Direction::ToCore);
                // core/v1 always has an involvedObject (upstream serializes the empty reference as `{}`).
                core.entry("involvedObject")
                    .or_insert_with(|| Value::Object(Map::new()));
                core.insert("apiVersion".into(), Value::String("v1".into()));
                core.insert("kind".into(), Value::String("Event".into()));
                Value::Object(core)
            }
        }
    }

    /// A stored object in the served form (apiVersion and kind are set by the caller, which knows the version).
    pub fn to_served(self, object: &Value) -> Value {
        match self {
            Conversion::EventsV1 => Value::Object(rename(object, Direction::ToEvents)),
        }
    }
}

#[derive(Clone, Copy)]
enum Direction {
    ToCore,
    ToEvents,
}

/// `object` with each field of `EVENT_RENAMES` renamed the way `direction` goes. A field that already carries
/// a target name is not a field of the source version (only an unknown field a client sent can be there) and
/// is dropped rather than allowed to collide.
fn rename(object: &Value, direction: Direction) -> Map<String, Value> {
    let mut out = Map::new();
    let Some(fields) = object.as_object() else {
        return out;
    };
    let renames: Vec<(&str, &str)> = EVENT_RENAMES
        .iter()
        .map(|&(core, events)| match direction {
            Direction::ToCore => (events, core),
            Direction::ToEvents => (core, events),
        })
        .collect();
    for (key, value) in fields {
        if renames.iter().any(|(_, to)| to == key) {
            continue;
        }
        let name = renames
            .iter()
            .find(|(from, _)| from == key)
            .map_or(key.as_str(), |(_, to)| to);
        out.insert(name.to_owned(), value.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Event as CoreEvent;
    use k8s_openapi::api::events::v1::Event;
    use serde_json::json;

    use super::*;

    /// An Event as the kube-rs Recorder writes it, repeated once (a series).
    fn recorded() -> Value {
        json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "shop.1", "namespace": "default", "resourceVersion": "7"},
            "eventTime": "2026-01-01T00:00:00.000000Z",
            "series": {"count": 2, "lastObservedTime": "2026-01-01T00:01:00.000000Z"},
            "reportingController": "berth.dev/stack-controller",
            "reportingInstance": "host-1",
            "action": "Reconcile",
            "reason": "Created",
            "note": "Created database Pod shop-db",
            "type": "Normal",
            "regarding": {"apiVersion": "berth.dev/v1alpha1", "kind": "Stack", "name": "shop",
                          "namespace": "default", "uid": "u-1"},
            "related": {"apiVersion": "v1", "kind": "Pod", "name": "shop-db", "namespace": "default"},
        })
    }

    #[test]
    fn an_events_k8s_io_event_is_stored_as_the_core_event_upstream_makes_of_it() {
        let core = Conversion::EventsV1.to_storage(&recorded());
        assert_eq!(
            core,
            json!({
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": "shop.1", "namespace": "default", "resourceVersion": "7"},
                "eventTime": "2026-01-01T00:00:00.000000Z",
                "series": {"count": 2, "lastObservedTime": "2026-01-01T00:01:00.000000Z"},
                "reportingComponent": "berth.dev/stack-controller",
                "reportingInstance": "host-1",
                "action": "Reconcile",
                "reason": "Created",
                "message": "Created database Pod shop-db",
                "type": "Normal",
                "involvedObject": {"apiVersion": "berth.dev/v1alpha1", "kind": "Stack", "name": "shop",
                                   "namespace": "default", "uid": "u-1"},
                "related": {"apiVersion": "v1", "kind": "Pod", "name": "shop-db", "namespace": "default"},
            })
        );
        // The typed core/v1 Event (what kubectl and client-go decode) reads it.
        let typed: CoreEvent = serde_json::from_value(core).unwrap();
        assert_eq!(typed.involved_object.name.as_deref(), Some("shop"));
        assert_eq!(
            typed.reporting_component.as_deref(),
            Some("berth.dev/stack-controller")
        );
        assert_eq!(typed.series.unwrap().count, Some(2));
    }

    #[test]
    fn a_core_event_is_served_with_the_events_k8s_io_names() {
        let core = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "web.1", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default"},
            "reason": "Scheduled", "message": "Successfully assigned default/web to n1",
            "source": {"component": "default-scheduler", "host": "n1"},
            "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:02:00Z",
            "count": 3, "type": "Normal",
        });
        let mut served = Conversion::EventsV1.to_served(&core);
        served["apiVersion"] = json!("events.k8s.io/v1");
        let typed: Event = serde_json::from_value(served.clone()).unwrap();
        assert_eq!(typed.regarding.unwrap().name.as_deref(), Some("web"));
        assert_eq!(
            typed.note.as_deref(),
            Some("Successfully assigned default/web to n1")
        );
        assert_eq!(
            typed.deprecated_source.unwrap().component.as_deref(),
            Some("default-scheduler")
        );
        assert_eq!(typed.deprecated_count, Some(3));
        assert!(typed.deprecated_first_timestamp.is_some());
        assert!(typed.deprecated_last_timestamp.is_some());
        for core_only in [
            "involvedObject",
            "message",
            "source",
            "count",
            "firstTimestamp",
        ] {
            assert!(served.get(core_only).is_none(), "{core_only} in {served}");
        }
    }

    #[test]
    fn an_event_survives_the_round_trip_through_storage() {
        let event = recorded();
        let mut back = Conversion::EventsV1.to_served(&Conversion::EventsV1.to_storage(&event));
        back["apiVersion"] = event["apiVersion"].clone();
        assert_eq!(back, event);
    }

    #[test]
    fn an_event_about_nothing_still_has_an_involved_object_in_storage() {
        let bare = json!({"metadata": {"name": "e"}, "reason": "Started", "note": "n"});
        let core = Conversion::EventsV1.to_storage(&bare);
        assert_eq!(core["involvedObject"], json!({}));
        serde_json::from_value::<CoreEvent>(core).unwrap();
    }

    #[test]
    fn fields_of_the_other_version_are_dropped_not_mixed_in() {
        // `message` is not an events.k8s.io field: it must not overwrite the `note` converted to `message`.
        let mixed = json!({"metadata": {"name": "e"}, "note": "the note", "message": "stray"});
        let core = Conversion::EventsV1.to_storage(&mixed);
        assert_eq!(core["message"], "the note");
        let core = json!({"metadata": {"name": "e"}, "message": "the message", "note": "stray"});
        assert_eq!(Conversion::EventsV1.to_served(&core)["note"], "the message");
    }
}
