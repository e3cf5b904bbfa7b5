//! Keeps the CRD small by trimming the documentation that the embedded core/v1 types (Probe,
//! ResourceRequirements, EnvVar, volume sources) bring along: in full it makes the CRD half again
//! as large, and `kubectl explain pod.spec.containers` shows all of it anyway.

use schemars::Schema;
use serde_json::{Map, Value};

/// Properties nested deeper than this, counted from `spec` or `status` (depth 0), lose their
/// description: `spec.app.readinessProbe.periodSeconds` (3) keeps it, `...httpGet.path` (4) not.
/// Every field berth defines itself sits at depth 3 or less.
const MAX_DESCRIBED_DEPTH: usize = 3;

/// Descriptions longer than this keep their first sentence only.
const MAX_DESCRIPTION_LEN: usize = 120;

/// Schemars transform for `StackSpec` and `StackStatus` (so `Stack::crd()` is the small CRD too).
pub(crate) fn trim_descriptions(schema: &mut Schema) {
    if let Some(node) = schema.as_object_mut() {
        trim(node, 0);
    }
}

fn trim(node: &mut Map<String, Value>, depth: usize) {
    if depth > MAX_DESCRIBED_DEPTH {
        node.remove("description");
    } else if let Some(Value::String(description)) = node.get_mut("description")
        && description.len() > MAX_DESCRIPTION_LEN
        && let Some(end) = first_sentence_end(description)
    {
        description.truncate(end);
    }
    // Only schema keywords lead to subschemas; `default`, `enum` and extensions hold plain data.
    for (keyword, value) in node.iter_mut() {
        match (keyword.as_str(), value) {
            ("properties", Value::Object(properties)) => {
                for property in properties.values_mut() {
                    if let Value::Object(property) = property {
                        trim(property, depth + 1);
                    }
                }
            }
            ("items" | "additionalProperties" | "not", Value::Object(subschema)) => {
                trim(subschema, depth);
            }
            ("allOf" | "anyOf" | "oneOf", Value::Array(subschemas)) => {
                for subschema in subschemas.iter_mut().filter_map(Value::as_object_mut) {
                    trim(subschema, depth);
                }
            }
            _ => {}
        }
    }
}

/// Byte length of the first sentence: up to a period followed by whitespace, skipping the periods
/// of "e.g." and "i.e.".
fn first_sentence_end(text: &str) -> Option<usize> {
    text.match_indices('.')
        .map(|(i, _)| i + 1)
        .filter(|&end| text[end..].starts_with(char::is_whitespace))
        .find(|&end| !(text[..end].ends_with("e.g.") || text[..end].ends_with("i.e.")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn trimmed(value: Value) -> Value {
        let mut schema = Schema::try_from(value).unwrap();
        trim_descriptions(&mut schema);
        schema.to_value()
    }

    #[test]
    fn first_sentence_does_not_end_at_an_abbreviation() {
        assert_eq!(
            first_sentence_end("Use e.g. 1Gi here. Then more."),
            Some(18)
        );
        assert_eq!(
            first_sentence_end("See a.b.c and i.e. this.\nMore."),
            Some(24)
        );
        assert_eq!(first_sentence_end("No end"), None);
    }

    #[test]
    fn long_descriptions_keep_their_first_sentence_and_short_ones_stay_whole() {
        let long = format!("First sentence. {}", "More words. ".repeat(20));
        let short = "Two sentences. Both stay.";

        let schema = trimmed(json!({
            "type": "object",
            "properties": {
                "long": {"type": "string", "description": long},
                "short": {"type": "string", "description": short},
            },
        }));

        assert_eq!(
            schema["properties"]["long"]["description"],
            "First sentence."
        );
        assert_eq!(schema["properties"]["short"]["description"], short);
    }

    #[test]
    fn deep_properties_lose_their_description_but_not_their_data() {
        let leaf =
            json!({"type": "string", "description": "deep", "default": {"description": "data"}});
        let schema = trimmed(json!({
            "description": "spec",
            "properties": {"a": {"description": "1", "items": {"properties": {"b": {
                "description": "2",
                "properties": {"c": {"description": "3", "properties": {"d": leaf}}},
            }}}}},
        }));

        let c = &schema["properties"]["a"]["items"]["properties"]["b"]["properties"]["c"];
        assert_eq!(c["description"], "3");
        assert_eq!(c["properties"]["d"].get("description"), None);
        assert_eq!(
            c["properties"]["d"]["default"],
            json!({"description": "data"})
        );
        assert_eq!(schema["description"], "spec");
    }
}
