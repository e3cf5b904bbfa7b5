//! The garbage collector learns of a kind added at run time as soon as its CustomResourceDefinition is
//! established, not at its next 30 s discovery refresh: the dependents of a deleted custom resource go at once.

use std::time::Duration;

use berth_e2e::{Kubectl, Server, wait_for};

/// Well under the collector's 30 s discovery refresh, which this test must not depend on.
const DEADLINE: Duration = Duration::from_secs(12);

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gadgets.gc.example.com}
spec:
  group: gc.example.com
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
"#;

#[test]
fn dependents_of_a_custom_resource_of_a_new_kind_are_collected_without_waiting_for_a_resync() {
    let server = Server::start_up(&["--disable-agent"]);
    let k = Kubectl::new(&server);
    let create = |yaml: &str| {
        let out = k.run(&["create", "-f", "-"], Some(yaml));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // The control plane has run its first discovery before the kind exists.
    wait_for("the control plane's leader Lease", DEADLINE, || {
        k.run(
            &["get", "lease", "berth-controlplane", "-n", "kube-system"],
            None,
        )
        .status
        .success()
        .then_some(())
    });
    create(CRD);
    k.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/gadgets.gc.example.com",
        "--timeout=30s",
    ]);
    create(
        "apiVersion: gc.example.com/v1\nkind: Gadget\nmetadata: {name: owner, namespace: default}\n",
    );
    let uid = k.ok(&["get", "gadget", "owner", "-o", "jsonpath={.metadata.uid}"]);
    create(&format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dependent\n  namespace: default\n  ownerReferences:\n  \
         - {{apiVersion: gc.example.com/v1, kind: Gadget, name: owner, uid: \"{uid}\"}}\ndata: {{k: v}}\n"
    ));
    k.ok(&["delete", "gadget", "owner", "--wait=false"]);
    wait_for("the dependent ConfigMap to be collected", DEADLINE, || {
        (!k.run(&["get", "configmap", "dependent"], None)
            .status
            .success())
        .then_some(())
    });
}
