//! `get` and `list`: served from the store's in-memory copy, filtered by label and field selectors, as the
//! objects themselves or as a `meta.k8s.io` Table when the client asks for one (`kubectl get`).

use axum::response::Response;
use http::StatusCode;
use serde_json::{Value, json};

use super::{Ctx, json_response};
use crate::error::{ApiError, Result};
use crate::object;
use crate::registry::ResourceType;
use crate::request::Query;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::table::{self, Tabulator};

pub fn get(ctx: Ctx) -> Result<Response> {
    let target = &ctx.target;
    let table = table::requested(ctx.accept.as_deref(), &ctx.query)?;
    let name = target.name.as_deref().unwrap_or_default();
    let object = ctx
        .app
        .store
        .get(&target.rt.key(), target.store_namespace(), name)
        .ok_or_else(|| ApiError::not_found(target.subject()))?;
    let body = match table {
        Some(request) => {
            Tabulator::new(&ctx.app.store, target.rt.clone(), request).object(&object, true)
        }
        None => object::served(&target.rt, &object),
    };
    Ok(json_response(StatusCode::OK, &body))
}

/// Label and field selectors of a list or watch, checked against what the resource supports.
pub struct Filter {
    labels: Option<LabelSelector>,
    fields: Option<FieldSelector>,
    /// Field-selector labels mapped to the JSON paths they read.
    paths: Vec<(String, String)>,
}

impl Filter {
    pub fn from_query(rt: &ResourceType, query: &Query) -> Result<Filter> {
        let labels = query
            .get("labelSelector")
            .map(|s| {
                LabelSelector::parse(s)
                    .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))
            })
            .transpose()?
            .filter(|s| !s.is_empty());
        let fields = query
            .get("fieldSelector")
            .map(|s| {
                FieldSelector::parse(s)
                    .map_err(|e| ApiError::bad_request(format!("invalid field selector: {e}")))
            })
            .transpose()?
            .filter(|s| !s.is_empty());
        let mut paths = Vec::new();
        for label in fields.iter().flat_map(|f| f.fields()) {
            let path = rt.field_path(label).ok_or_else(|| {
                ApiError::bad_request(format!("field label not supported: {label}"))
            })?;
            paths.push((label.to_owned(), path));
        }
        Ok(Filter {
            labels,
            fields,
            paths,
        })
    }

    pub fn matches(&self, object: &Value) -> bool {
        if let Some(labels) = &self.labels
            && !labels.matches(object["metadata"]["labels"].as_object())
        {
            return false;
        }
        match &self.fields {
            None => true,
            Some(fields) => fields.matches(&self.field_view(object)),
        }
    }

    /// An object with each selectable field at the path its label names (`source` reads `source.component`).
    fn field_view(&self, object: &Value) -> Value {
        let mut view = json!({});
        for (label, path) in &self.paths {
            let value = path.split('.').fold(object, |v, part| &v[part]);
            if value.is_null() {
                continue;
            }
            let mut slot = &mut view;
            for part in label.split('.') {
                slot = &mut slot[part];
            }
            *slot = value.clone();
        }
        view
    }
}

pub fn list(ctx: Ctx) -> Result<Response> {
    let rt = &ctx.target.rt;
    let filter = Filter::from_query(rt, &ctx.query)?;
    let table = table::requested(ctx.accept.as_deref(), &ctx.query)?;
    let (rv, items) = ctx
        .app
        .store
        .list(&rt.key(), ctx.target.namespace.as_deref());
    if let Some(request) = table {
        let tabulator = Tabulator::new(&ctx.app.store, rt.clone(), request);
        let matching = items
            .iter()
            .map(|o| o.as_ref())
            .filter(|o| filter.matches(o));
        return Ok(json_response(StatusCode::OK, &tabulator.list(rv, matching)));
    }
    let items: Vec<Value> = items
        .iter()
        .filter(|o| filter.matches(o))
        .map(|o| object::served(rt, o))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "kind": rt.list_kind,
            "apiVersion": rt.api_version(),
            "metadata": {"resourceVersion": rv.to_string()},
            "items": items,
        }),
    ))
}
