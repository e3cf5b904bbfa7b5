//! Would a server-side apply change anything? An object already holds what the controller applies when every
//! field the controller sets is there with the same value; fields the API server or others add (defaults, uid,
//! status, managedFields) do not count. Skipping such applies is what makes a steady state write nothing.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use serde_json::Value;

/// True when `existing` has every field of `desired` with an equal value. Lists match element by element;
/// a zero value in `desired` (false, 0, "", [], {}) also matches a missing field, since the API server omits them.
pub fn contains(existing: &Value, desired: &Value) -> bool {
    match (existing, desired) {
        (Value::Object(have), Value::Object(want)) => {
            want.iter().all(|(key, want)| match have.get(key) {
                Some(have) => contains(have, want),
                None => zero(want),
            })
        }
        (Value::Array(have), Value::Array(want)) => {
            have.len() == want.len() && have.iter().zip(want).all(|(h, w)| contains(h, w))
        }
        (Value::Number(have), Value::Number(want)) => have.as_f64() == want.as_f64(),
        (Value::Null, want) => zero(want),
        (have, want) => have == want,
    }
}

fn zero(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(zero),
    }
}

/// A Secret as the API server stores it: `stringData` is write-only and lands in `data`.
pub fn stored_secret(mut secret: Secret) -> Secret {
    if let Some(strings) = secret.string_data.take() {
        let data = secret.data.get_or_insert_with(Default::default);
        for (key, value) in strings {
            data.insert(key, ByteString(value.into_bytes()));
        }
    }
    secret
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    #[test]
    fn fields_the_server_adds_do_not_count() {
        let desired =
            json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"clusterIP": "None"}});
        let existing = json!({
            "metadata": {"name": "a", "uid": "u", "labels": {"x": "1"}, "managedFields": []},
            "spec": {"clusterIP": "None", "clusterIPs": ["None"], "type": "ClusterIP"},
        });
        assert!(contains(&existing, &desired));
    }

    #[test]
    fn a_changed_or_missing_field_counts() {
        let desired = json!({"spec": {"ports": [{"port": 80, "name": "http"}]}});
        assert!(!contains(
            &json!({"spec": {"ports": [{"port": 81, "name": "http"}]}}),
            &desired
        ));
        assert!(!contains(&json!({"spec": {}}), &desired));
        assert!(!contains(
            &json!({"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 81}]}}),
            &desired
        ));
    }

    #[test]
    fn zero_values_match_missing_fields_as_the_server_omits_them() {
        let desired = json!({"spec": {"publishNotReadyAddresses": false, "ports": []}});
        assert!(contains(&json!({"spec": {}}), &desired));
        assert!(!contains(
            &json!({"spec": {}}),
            &json!({"spec": {"publishNotReadyAddresses": true}})
        ));
    }

    #[test]
    fn string_data_is_compared_as_the_data_it_becomes() {
        let desired = Secret {
            string_data: Some(BTreeMap::from([("password".into(), "pw".into())])),
            ..Secret::default()
        };
        let stored = Secret {
            data: Some(BTreeMap::from([(
                "password".into(),
                ByteString(b"pw".to_vec()),
            )])),
            ..Secret::default()
        };
        let desired = serde_json::to_value(stored_secret(desired)).unwrap();
        assert!(contains(&serde_json::to_value(&stored).unwrap(), &desired));
        let other = Secret {
            data: Some(BTreeMap::from([(
                "password".into(),
                ByteString(b"other".to_vec()),
            )])),
            ..Secret::default()
        };
        assert!(!contains(&serde_json::to_value(&other).unwrap(), &desired));
    }
}
