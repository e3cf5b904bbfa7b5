//! Cell formatting shared by the printers: names, ages as upstream words them (`5m`, `3h12m`, `<unknown>`),
//! label maps, container lists. Objects are untrusted JSON, so every accessor tolerates a missing or odd field.

use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

/// A string field, or "" when absent or not a string.
pub fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// The string, or `<none>` when it is empty.
pub fn or_none(value: &str) -> String {
    if value.is_empty() {
        "<none>".to_owned()
    } else {
        value.to_owned()
    }
}

pub fn name(object: &Value) -> &str {
    text(&object["metadata"]["name"])
}

/// An integer field, 0 when absent.
pub fn int(value: &Value) -> i64 {
    value.as_i64().unwrap_or(0)
}

/// How many entries a map or list has.
pub fn len(value: &Value) -> i64 {
    let n = match value {
        Value::Object(map) => map.len(),
        Value::Array(list) => list.len(),
        _ => 0,
    };
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub fn items(value: &Value) -> &[Value] {
    value.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// A timestamp field, when it holds one.
pub fn timestamp(value: &Value) -> Option<Timestamp> {
    value.as_str()?.parse().ok()
}

/// The object's age, as the AGE column shows it.
pub fn age(object: &Value, now: Timestamp) -> String {
    since(&object["metadata"]["creationTimestamp"], now)
}

/// Time elapsed since a timestamp field, or `<unknown>` when there is none.
pub fn since(value: &Value, now: Timestamp) -> String {
    match timestamp(value) {
        Some(then) => human_duration(now.duration_since(then)),
        None => "<unknown>".to_owned(),
    }
}

/// `metadata.creationTimestamp` as RFC 3339 in UTC (the zero time when absent), as upstream's default columns.
pub fn created_at(object: &Value) -> String {
    match timestamp(&object["metadata"]["creationTimestamp"]) {
        Some(t) => t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        None => "0001-01-01T00:00:00Z".to_owned(),
    }
}

/// A duration with two or three significant figures (`90s`, `5m3s`, `3h`, `2d4h`, `3y12d`), the way kubectl
/// users read ages. A clock a second behind still reads `0s`; further in the future is `<invalid>`.
pub fn human_duration(d: SignedDuration) -> String {
    let seconds = d.as_secs();
    if seconds < -1 {
        return "<invalid>".to_owned();
    }
    if seconds < 0 {
        return "0s".to_owned();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return with_remainder(minutes, "m", seconds % 60, "s");
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return with_remainder(hours, "h", minutes % 60, "m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return with_remainder(hours / 24, "d", hours % 24, "h");
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        return with_remainder(hours / 24 / 365, "y", (hours / 24) % 365, "d");
    }
    format!("{}y", hours / 24 / 365)
}

fn with_remainder(major: i64, major_unit: &str, minor: i64, minor_unit: &str) -> String {
    if minor == 0 {
        format!("{major}{major_unit}")
    } else {
        format!("{major}{major_unit}{minor}{minor_unit}")
    }
}

/// `k=v,k2=v2` sorted by key, or `<none>`.
pub fn labels(map: &Value) -> String {
    let mut pairs: Vec<(&String, &Value)> = map.as_object().into_iter().flatten().collect();
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let pairs: Vec<String> = pairs
        .into_iter()
        .map(|(k, v)| format!("{k}={}", text(v)))
        .collect();
    or_none(&pairs.join(","))
}

/// A metav1.LabelSelector as upstream prints it: requirements sorted by key (`app=web,tier in (a,b)`), and
/// `<none>` for an absent or empty selector.
pub fn label_selector(selector: &Value) -> String {
    let mut parts: Vec<(&str, String)> = selector["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.as_str(), format!("{k}={}", text(v))))
                .collect()
        })
        .unwrap_or_default();
    for expr in items(&selector["matchExpressions"]) {
        let key = text(&expr["key"]);
        let mut values: Vec<&str> = items(&expr["values"]).iter().map(text).collect();
        values.sort_unstable();
        let part = match text(&expr["operator"]) {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_owned(),
            "DoesNotExist" => format!("!{key}"),
            other => format!("{key} {other} ({})", values.join(",")),
        };
        parts.push((key, part));
    }
    parts.sort_by(|a, b| a.0.cmp(b.0));
    let parts: Vec<String> = parts.into_iter().map(|(_, p)| p).collect();
    or_none(&parts.join(","))
}

/// The names and images of a list of containers, comma-separated (the wide CONTAINERS and IMAGES columns).
pub fn containers(list: &Value) -> (String, String) {
    let containers = items(list);
    let names: Vec<&str> = containers.iter().map(|c| text(&c["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| text(&c["image"])).collect();
    (names.join(","), images.join(","))
}

/// The status of the condition of a type in a `conditions` list.
pub fn condition<'a>(conditions: &'a Value, kind: &str) -> Option<&'a Value> {
    items(conditions)
        .iter()
        .find(|c| c["type"].as_str() == Some(kind))
}

/// Whether a condition of that type is `True`.
pub fn condition_true(conditions: &Value, kind: &str) -> bool {
    condition(conditions, kind).is_some_and(|c| c["status"] == "True")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn d(seconds: i64) -> String {
        human_duration(SignedDuration::from_secs(seconds))
    }

    #[test]
    fn durations_read_like_kubectl_ages() {
        assert_eq!(d(-5), "<invalid>");
        assert_eq!(d(-1), "0s");
        assert_eq!(d(0), "0s");
        assert_eq!(d(119), "119s");
        assert_eq!(d(120), "2m");
        assert_eq!(d(5 * 60 + 3), "5m3s");
        assert_eq!(d(10 * 60 + 59), "10m");
        assert_eq!(d(179 * 60), "179m");
        assert_eq!(d(3 * 3600), "3h");
        assert_eq!(d(3 * 3600 + 12 * 60), "3h12m");
        assert_eq!(d(47 * 3600), "47h");
        assert_eq!(d(50 * 3600), "2d2h");
        assert_eq!(d(72 * 3600), "3d");
        assert_eq!(d(400 * 86400), "400d");
        assert_eq!(d(3 * 365 * 86400 + 12 * 86400), "3y12d");
        assert_eq!(d(9 * 365 * 86400), "9y");
    }

    #[test]
    fn age_of_an_object_without_timestamp_is_unknown() {
        let now = Timestamp::now();
        assert_eq!(age(&json!({"metadata": {}}), now), "<unknown>");
        let then = now - SignedDuration::from_secs(30);
        let object = json!({"metadata": {"creationTimestamp": then.to_string()}});
        assert_eq!(age(&object, now), "30s");
    }

    #[test]
    fn created_at_is_rfc3339_utc_or_the_zero_time() {
        let object = json!({"metadata": {"creationTimestamp": "2024-05-01T12:00:00+02:00"}});
        assert_eq!(created_at(&object), "2024-05-01T10:00:00Z");
        assert_eq!(created_at(&json!({})), "0001-01-01T00:00:00Z");
    }

    #[test]
    fn selectors_print_sorted_or_none() {
        assert_eq!(labels(&json!({"b": "2", "a": "1"})), "a=1,b=2");
        assert_eq!(labels(&Value::Null), "<none>");
        let selector = json!({"matchLabels": {"app": "web"}, "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["b", "a"]},
            {"key": "canary", "operator": "DoesNotExist"}
        ]});
        assert_eq!(label_selector(&selector), "app=web,!canary,tier in (a,b)");
        assert_eq!(label_selector(&Value::Null), "<none>");
    }
}
