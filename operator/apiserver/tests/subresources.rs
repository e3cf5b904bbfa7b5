//! Subresource writes through the API, as a scheduler and other clients make them: `pods/binding`,
//! `namespaces/finalize` and `scale`. Each test runs its own server on a free loopback port.

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

struct Cluster {
    _dir: tempfile::TempDir,
    client: Client,
    serve: tokio::task::JoinHandle<()>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.serve.abort();
    }
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let running = berth_apiserver::start(berth_apiserver::Config {
            data_dir: dir.path().to_owned(),
            listen: "127.0.0.1:0".parse().unwrap(),
        })
        .await
        .unwrap();
        let kubeconfig = kube::config::Kubeconfig::read_from(&running.kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .unwrap();
        Cluster {
            _dir: dir,
            client: Client::try_from(config).unwrap(),
            serve: running.serve,
        }
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    async fn create_pod(&self, name: &str) -> Pod {
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        }))
        .unwrap();
        self.pods()
            .create(&PostParams::default(), &pod)
            .await
            .unwrap()
    }

    async fn bind(&self, name: &str, node: &str, params: &PostParams) {
        let binding = json!({
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": name},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        });
        self.pods()
            .create_subresource::<_, Value>("binding", name, params, &binding)
            .await
            .unwrap();
    }
}

fn scheduled(pod: &Pod) -> Option<(String, Option<String>)> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled")
        .map(|c| (c.status.clone(), c.reason.clone()))
}

#[tokio::test]
async fn binding_assigns_the_node_and_marks_the_pod_scheduled() {
    let cluster = Cluster::start().await;
    cluster.create_pod("web").await;
    // A scheduler that found no node first said so.
    let unschedulable = json!({"status": {"conditions": [{"type": "PodScheduled", "status": "False",
        "reason": "Unschedulable", "message": "0/0 nodes are available"}]}});
    cluster
        .pods()
        .patch_status(
            "web",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&unschedulable),
        )
        .await
        .unwrap();
    cluster.bind("web", "n1", &PostParams::default()).await;
    let pod = cluster.pods().get("web").await.unwrap();
    assert_eq!(pod.spec.as_ref().unwrap().node_name.as_deref(), Some("n1"));
    assert_eq!(scheduled(&pod), Some(("True".to_owned(), None)));
}

/// The managedFields entry of `manager`: its subresource and the fields it owns.
fn entry(object: &Value, manager: &str) -> Option<(String, Value)> {
    let entry = object["metadata"]["managedFields"]
        .as_array()?
        .iter()
        .find(|e| e["manager"] == manager)?;
    Some((
        entry["subresource"].as_str().unwrap_or_default().to_owned(),
        entry["fieldsV1"].clone(),
    ))
}

fn managers(object: &Value) -> Vec<String> {
    object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["manager"].as_str().map(str::to_owned))
        .collect()
}

impl Cluster {
    async fn raw(
        &self,
        method: http::Method,
        path: &str,
        content_type: &str,
        body: Value,
    ) -> Value {
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::CONTENT_TYPE, content_type)
            .header(
                http::header::USER_AGENT,
                "test-scheduler/v1.0 (linux/amd64)",
            )
            .body(body.to_string().into_bytes())
            .unwrap();
        serde_json::from_str(&self.client.request_text(request).await.unwrap()).unwrap()
    }

    async fn get_raw(&self, path: &str) -> Value {
        let request = http::Request::get(path).body(Vec::new()).unwrap();
        serde_json::from_str(&self.client.request_text(request).await.unwrap()).unwrap()
    }
}

#[tokio::test]
async fn a_binding_is_recorded_under_the_field_manager_that_made_it() {
    let cluster = Cluster::start().await;
    cluster.create_pod("named").await;
    let params = PostParams {
        field_manager: Some("my-scheduler".into()),
        ..PostParams::default()
    };
    cluster.bind("named", "n1", &params).await;
    let pod = cluster
        .get_raw("/api/v1/namespaces/default/pods/named")
        .await;
    let (subresource, fields) = entry(&pod, "my-scheduler").expect("an entry for my-scheduler");
    assert_eq!(subresource, "binding");
    assert!(fields["f:spec"]["f:nodeName"].is_object(), "{fields}");
    assert!(!managers(&pod).contains(&"berth-apiserver".to_owned()));

    // Without a fieldManager, the user agent's first word names the manager, as for any write.
    cluster.create_pod("agent").await;
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "agent"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"}});
    cluster
        .raw(
            http::Method::POST,
            "/api/v1/namespaces/default/pods/agent/binding",
            "application/json",
            binding,
        )
        .await;
    let pod = cluster
        .get_raw("/api/v1/namespaces/default/pods/agent")
        .await;
    assert_eq!(
        entry(&pod, "test-scheduler").map(|(s, _)| s).as_deref(),
        Some("binding"),
        "{:?}",
        managers(&pod)
    );
}

#[tokio::test]
async fn finalize_and_scale_are_recorded_under_the_client_field_manager() {
    let cluster = Cluster::start().await;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(cluster.client.clone());
    let namespace = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "finalized"}, "spec": {"finalizers": ["example.com/hold"]}}))
    .unwrap();
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    cluster
        .raw(
            http::Method::PUT,
            "/api/v1/namespaces/finalized/finalize?fieldManager=ns-lifecycle",
            "application/json",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "finalized"},
                   "spec": {"finalizers": []}}),
        )
        .await;
    let stored = cluster.get_raw("/api/v1/namespaces/finalized").await;
    assert_eq!(
        entry(&stored, "ns-lifecycle").map(|(s, _)| s).as_deref(),
        Some("finalize"),
        "{:?}",
        managers(&stored)
    );

    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "busybox"}]}}}});
    cluster
        .raw(
            http::Method::POST,
            "/apis/apps/v1/namespaces/default/deployments",
            "application/json",
            deployment,
        )
        .await;
    let scale = cluster
        .raw(
            http::Method::PATCH,
            "/apis/apps/v1/namespaces/default/deployments/web/scale?fieldManager=autoscaler",
            "application/merge-patch+json",
            json!({"spec": {"replicas": 3}}),
        )
        .await;
    assert_eq!(scale["spec"]["replicas"], 3);
    let stored = cluster
        .get_raw("/apis/apps/v1/namespaces/default/deployments/web")
        .await;
    let (subresource, fields) = entry(&stored, "autoscaler").expect("an entry for autoscaler");
    assert_eq!(subresource, "scale");
    assert!(fields["f:spec"]["f:replicas"].is_object(), "{fields}");
    assert!(!managers(&stored).contains(&"berth-apiserver".to_owned()));
}
