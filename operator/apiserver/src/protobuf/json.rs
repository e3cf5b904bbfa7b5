//! A small builder for JSON objects in the shape Go's `encoding/json` gives upstream's types, so that a decoded
//! protobuf message reads exactly like the JSON body an older client would have sent.
//!
//! Go's tags decide what is left out: a plain field with `omitempty` disappears when it holds its zero value,
//! a pointer field only when it is nil, and a field without `omitempty` is always written. gogo-protobuf writes
//! plain fields on the wire even when zero and pointer fields only when set, so `Option` from prost maps onto
//! Go's pointer and plain fields as the methods below say.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::{Map, Value};

use super::Error;

#[derive(Default)]
pub(super) struct Obj(Map<String, Value>);

impl Obj {
    pub(super) fn new() -> Self {
        Obj::default()
    }

    /// A Go `string` with `omitempty`.
    pub(super) fn string(mut self, key: &str, value: &Option<String>) -> Self {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            self.0.insert(key.to_owned(), Value::from(v));
        }
        self
    }

    /// A Go `string` without `omitempty`: always written.
    pub(super) fn required_string(mut self, key: &str, value: &Option<String>) -> Self {
        self.0.insert(
            key.to_owned(),
            Value::from(value.as_deref().unwrap_or_default()),
        );
        self
    }

    /// A Go pointer (`*string`, `*bool`, `*int32`…) with `omitempty`: written whenever it is set.
    pub(super) fn pointer<T: Into<Value> + Clone>(mut self, key: &str, value: &Option<T>) -> Self {
        if let Some(v) = value {
            self.0.insert(key.to_owned(), v.clone().into());
        }
        self
    }

    /// A Go integer with `omitempty`.
    pub(super) fn int<T: Into<Value> + Copy + Default + PartialEq>(
        mut self,
        key: &str,
        value: Option<T>,
    ) -> Self {
        if let Some(v) = value.filter(|v| *v != T::default()) {
            self.0.insert(key.to_owned(), v.into());
        }
        self
    }

    /// A Go integer without `omitempty`.
    pub(super) fn required_int<T: Into<Value> + Default>(
        mut self,
        key: &str,
        value: Option<T>,
    ) -> Self {
        self.0
            .insert(key.to_owned(), value.unwrap_or_default().into());
        self
    }

    /// A Go `bool` with `omitempty`.
    pub(super) fn flag(mut self, key: &str, value: Option<bool>) -> Self {
        if value == Some(true) {
            self.0.insert(key.to_owned(), Value::Bool(true));
        }
        self
    }

    /// A `[]string` with `omitempty`.
    pub(super) fn strings(self, key: &str, values: &[String]) -> Self {
        self.list(
            key,
            values.iter().map(|v| Value::from(v.as_str())).collect(),
        )
    }

    /// A `[]string` without `omitempty`: a nil slice is `null`, as Go writes it.
    pub(super) fn required_strings(mut self, key: &str, values: &[String]) -> Self {
        let value = if values.is_empty() {
            Value::Null
        } else {
            Value::Array(values.iter().map(|v| Value::from(v.as_str())).collect())
        };
        self.0.insert(key.to_owned(), value);
        self
    }

    /// A slice with `omitempty`.
    pub(super) fn list(mut self, key: &str, values: Vec<Value>) -> Self {
        if !values.is_empty() {
            self.0.insert(key.to_owned(), Value::Array(values));
        }
        self
    }

    /// A slice without `omitempty`: a nil slice is `null`.
    pub(super) fn required_list(mut self, key: &str, values: Vec<Value>) -> Self {
        let value = if values.is_empty() {
            Value::Null
        } else {
            Value::Array(values)
        };
        self.0.insert(key.to_owned(), value);
        self
    }

    /// A `map[string]string` with `omitempty`.
    pub(super) fn string_map(mut self, key: &str, map: &BTreeMap<String, String>) -> Self {
        if !map.is_empty() {
            let object = map
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                .collect();
            self.0.insert(key.to_owned(), Value::Object(object));
        }
        self
    }

    /// A `map[string][]byte` with `omitempty`: Go writes `[]byte` as standard base64.
    pub(super) fn bytes_map(mut self, key: &str, map: &BTreeMap<String, Vec<u8>>) -> Self {
        if !map.is_empty() {
            let engine = base64::engine::general_purpose::STANDARD;
            let object = map
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(engine.encode(v))))
                .collect();
            self.0.insert(key.to_owned(), Value::Object(object));
        }
        self
    }

    /// Any value, always written (nested structs, which `omitempty` never drops, and `null` times).
    pub(super) fn value(mut self, key: &str, value: Value) -> Self {
        self.0.insert(key.to_owned(), value);
        self
    }

    /// A nested pointer converted on demand: written only when set.
    pub(super) fn nested<T>(
        mut self,
        key: &str,
        value: Option<&T>,
        convert: impl FnOnce(&T) -> Result<Value, Error>,
    ) -> Result<Self, Error> {
        if let Some(v) = value {
            self.0.insert(key.to_owned(), convert(v)?);
        }
        Ok(self)
    }

    pub(super) fn build(self) -> Value {
        Value::Object(self.0)
    }
}

/// Converts each element of a repeated field.
pub(super) fn each<T>(
    items: &[T],
    convert: impl Fn(&T) -> Result<Value, Error>,
) -> Result<Vec<Value>, Error> {
    items.iter().map(convert).collect()
}
