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
