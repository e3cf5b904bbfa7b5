//! Ownership, apply and conflicts over whole objects, as the handlers drive the field manager.

use serde_json::{Value, json};

use super::*;
use crate::registry::Registry;

fn manager(resource: &str) -> FieldManager {
    let rt = Registry::new().lookup("", "v1", resource).unwrap();
    FieldManager::new(&rt, None)
}

fn entries(object: &Value) -> Vec<(String, String)> {
    object["metadata"]["managedFields"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|e| {
                    (
                        e["manager"].as_str().unwrap().to_owned(),
                        e["operation"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn config_map(data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "default"}, "data": data})
}

#[test]
fn a_create_records_an_update_entry_with_the_fields_it_set() {
    let fm = manager("configmaps");
    let mut object = config_map(json!({"a": "1"}));
    object["metadata"]["uid"] = json!("u");
    fm.update(None, &mut object, "kubectl-client-side-apply");
    let entry = &object["metadata"]["managedFields"][0];
    assert_eq!(entry["manager"], "kubectl-client-side-apply");
    assert_eq!(entry["operation"], "Update");
    assert_eq!(entry["apiVersion"], "v1");
    assert_eq!(entry["fieldsType"], "FieldsV1");
    assert_eq!(entry["fieldsV1"], json!({"f:data": {".": {}, "f:a": {}}}));
    assert!(entry["time"].is_string());
}

#[test]
fn an_update_moves_changed_fields_to_the_updater() {
    let fm = manager("configmaps");
    let mut live = config_map(json!({"a": "1", "b": "2"}));
    fm.update(None, &mut live, "first");
    let mut new = live.clone();
    new["data"]["a"] = json!("9");
    fm.update(Some(&live), &mut new, "second");
    let managed = decode(&new["metadata"]["managedFields"]).unwrap();
    let owner = |name: &str| {
        managed
            .iter()
            .find(|(k, _)| k.manager == name)
            .map(|(_, e)| e.set.to_fields_v1())
    };
    assert_eq!(owner("second").unwrap(), json!({"f:data": {"f:a": {}}}));
    assert_eq!(
        owner("first").unwrap(),
        json!({"f:data": {".": {}, "f:b": {}}})
    );
}

#[test]
fn an_unchanged_update_keeps_managed_fields_as_they_were() {
    let fm = manager("configmaps");
    let mut live = config_map(json!({"a": "1"}));
    fm.update(None, &mut live, "first");
    let mut new = live.clone();
    fm.update(Some(&live), &mut new, "second");
    assert_eq!(new, live);
}

#[test]
fn apply_creates_and_applying_again_changes_nothing() {
    let fm = manager("configmaps");
    let config = config_map(json!({"a": "1"}));
    let created = fm.apply(None, config.clone(), "ssa", false).unwrap();
    assert_eq!(created["data"], json!({"a": "1"}));
    assert_eq!(entries(&created), [("ssa".to_owned(), "Apply".to_owned())]);
    assert_eq!(
        created["metadata"]["managedFields"][0]["fieldsV1"],
        json!({"f:data": {"f:a": {}}})
    );
    let again = fm.apply(Some(&created), config, "ssa", false).unwrap();
    assert_eq!(again, created);
}

#[test]
fn a_field_another_manager_set_conflicts_unless_forced() {
    let fm = manager("configmaps");
    let mut live = config_map(json!({"key": "from-csa"}));
    fm.update(None, &mut live, "kubectl-client-side-apply");
    let err = fm
        .apply(
            Some(&live),
            config_map(json!({"key": "mine"})),
            "other",
            false,
        )
        .unwrap_err();
    assert_eq!(err.code, http::StatusCode::CONFLICT);
    assert_eq!(err.reason, "Conflict");
    assert_eq!(
        err.message,
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using v1: .data.key"
    );
    assert_eq!(err.causes[0].reason, "FieldManagerConflict");
    assert_eq!(err.causes[0].field, ".data.key");
    let forced = fm
        .apply(
            Some(&live),
            config_map(json!({"key": "mine"})),
            "other",
            true,
        )
        .unwrap();
    assert_eq!(forced["data"]["key"], "mine");
    let managed = decode(&forced["metadata"]["managedFields"]).unwrap();
    let fields = |name: &str| {
        managed
            .iter()
            .find(|(k, _)| k.manager == name)
            .map(|(_, e)| e.set.to_fields_v1())
            .unwrap()
    };
    assert_eq!(fields("other"), json!({"f:data": {"f:key": {}}}));
    // The client-side manager keeps the map it created, not the key.
    assert_eq!(fields("kubectl-client-side-apply"), json!({"f:data": {}}));
}

#[test]
fn equal_values_are_shared_without_a_conflict() {
    let fm = manager("configmaps");
    let one = fm
        .apply(None, config_map(json!({"k": "v"})), "one", false)
        .unwrap();
    let two = fm
        .apply(Some(&one), config_map(json!({"k": "v"})), "two", false)
        .unwrap();
    assert_eq!(entries(&two).len(), 2);
}

#[test]
fn fields_a_manager_stops_applying_are_removed_unless_someone_else_owns_them() {
    let fm = manager("configmaps");
    let live = fm
        .apply(None, config_map(json!({"a": "1", "b": "2"})), "one", false)
        .unwrap();
    let shared = fm
        .apply(Some(&live), config_map(json!({"b": "2"})), "two", false)
        .unwrap();
    let out = fm
        .apply(Some(&shared), config_map(json!({})), "one", false)
        .unwrap();
    assert_eq!(
        out["data"],
        json!({"b": "2"}),
        "a goes, b stays (two owns it)"
    );
}

#[test]
fn containers_are_owned_by_name_and_a_dropped_container_goes() {
    let fm = manager("pods");
    let pod = |containers: Value| json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": containers}});
    let live = fm
        .apply(
            None,
            pod(json!([{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}])),
            "ssa",
            false,
        )
        .unwrap();
    assert_eq!(
        live["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:containers"]["k:{\"name\":\"a\"}"],
        json!({".": {}, "f:image": {}, "f:name": {}})
    );
    let out = fm
        .apply(
            Some(&live),
            pod(json!([{"name": "a", "image": "a:2"}])),
            "ssa",
            false,
        )
        .unwrap();
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name": "a", "image": "a:2"}])
    );
}

#[test]
fn kubectl_takes_over_what_client_side_apply_set_with_the_same_values() {
    let fm = manager("configmaps");
    let mut live = config_map(json!({"key": "v"}));
    live["metadata"]["annotations"] =
        json!({LAST_APPLIED: config_map(json!({"key": "v"})).to_string()});
    fm.update(None, &mut live, "kubectl-client-side-apply");
    let out = fm
        .apply(
            Some(&live),
            config_map(json!({"key": "v2"})),
            KUBECTL,
            false,
        )
        .unwrap();
    assert_eq!(out["data"]["key"], "v2");
    let annotation = out["metadata"]["annotations"][LAST_APPLIED]
        .as_str()
        .unwrap();
    let recorded: Value = serde_json::from_str(annotation).unwrap();
    assert_eq!(recorded["data"]["key"], "v2");
    assert!(annotation.ends_with('\n'));
}

#[test]
fn the_first_apply_to_an_untracked_object_leaves_its_fields_to_before_first_apply() {
    let fm = manager("configmaps");
    let live = config_map(json!({"old": "x"}));
    let out = fm
        .apply(Some(&live), config_map(json!({"new": "y"})), "ssa", false)
        .unwrap();
    assert_eq!(out["data"], json!({"new": "y", "old": "x"}));
    let names: Vec<String> = entries(&out).into_iter().map(|(m, _)| m).collect();
    assert_eq!(names, ["ssa", "before-first-apply"]);
}

#[test]
fn apply_checks_kind_and_rejects_managed_fields_and_duplicate_keys() {
    let fm = manager("configmaps");
    let mut wrong = config_map(json!({}));
    wrong["kind"] = json!("Secret");
    assert_eq!(
        fm.apply(None, wrong, "m", false).unwrap_err().code,
        http::StatusCode::BAD_REQUEST
    );
    let mut managed = config_map(json!({}));
    managed["metadata"]["managedFields"] = json!([]);
    assert_eq!(
        fm.apply(None, managed, "m", false).unwrap_err().message,
        "metadata.managedFields must be nil"
    );
    let pods = manager("pods");
    let dup = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "a"}, {"name": "a"}]}});
    assert_eq!(
        pods.apply(None, dup, "m", false).unwrap_err().code,
        http::StatusCode::BAD_REQUEST
    );
}

#[test]
fn status_applies_own_only_status() {
    let rt = Registry::new().lookup("", "v1", "pods").unwrap();
    let fm = FieldManager::new(&rt, Some("status"));
    let live = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "managedFields": []}, "spec": {"containers": [{"name": "a"}]}});
    let config = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "status": {"phase": "Running"}});
    let out = fm.apply(Some(&live), config, "kubelet", false).unwrap();
    let entry = out["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == "kubelet")
        .unwrap()
        .clone();
    assert_eq!(entry["subresource"], "status");
    assert_eq!(entry["fieldsV1"], json!({"f:status": {"f:phase": {}}}));
}

#[test]
fn update_managers_beyond_ten_merge_into_ancient_changes() {
    let fm = manager("configmaps");
    let mut live = config_map(json!({}));
    fm.update(None, &mut live, "m0");
    let mut live = {
        let mut first = live.clone();
        first["data"] = json!({"k0": "v"});
        fm.update(Some(&live), &mut first, "m0");
        first
    };
    for i in 1..12 {
        let mut next = live.clone();
        next["data"][format!("k{i}")] = json!("v");
        fm.update(Some(&live), &mut next, &format!("m{i}"));
        live = next;
    }
    let names: Vec<String> = entries(&live).into_iter().map(|(m, _)| m).collect();
    assert_eq!(names.len(), 10, "{names:?}");
    assert!(names.contains(&"ancient-changes".to_owned()), "{names:?}");
}

#[test]
fn managers_come_from_the_parameter_or_the_user_agent() {
    assert_eq!(
        manager_of(None, Some("kubectl/v1.32.4 (linux/amd64)")).unwrap(),
        "kubectl"
    );
    assert_eq!(
        manager_of(Some("flux"), Some("kubectl/v1")).unwrap(),
        "flux"
    );
    assert_eq!(
        manager_of(Some(&"x".repeat(129)), None).unwrap_err().code,
        http::StatusCode::UNPROCESSABLE_ENTITY
    );
}

#[test]
fn service_ports_are_keyed_by_port_and_protocol_with_tcp_as_the_default() {
    let fm = manager("services");
    let service = |ports: Value| json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dns"}, "spec": {"ports": ports}});
    let live = fm
        .apply(
            None,
            service(json!([{"port": 53, "protocol": "UDP"}, {"port": 53}])),
            "ssa",
            false,
        )
        .unwrap();
    let ports = &live["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:ports"];
    assert!(
        ports.get("k:{\"port\":53,\"protocol\":\"UDP\"}").is_some(),
        "{ports}"
    );
    assert!(
        ports.get("k:{\"port\":53,\"protocol\":\"TCP\"}").is_some(),
        "{ports}"
    );
    let out = fm
        .apply(
            Some(&live),
            service(json!([{"port": 53, "protocol": "TCP"}])),
            "ssa",
            false,
        )
        .unwrap();
    assert_eq!(
        out["spec"]["ports"],
        json!([{"port": 53, "protocol": "TCP"}]),
        "the UDP port goes; the TCP one is the same item"
    );
}
