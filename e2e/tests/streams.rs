//! `kubectl logs`, `exec` and `attach` end to end: the real kubectl against `berth apiserver`, whose
//! `pods/log|exec|attach` proxy reaches berth's kubelet endpoint (run here in the test, with a serving
//! certificate from the API server's CA) for a Node and a Pod the test registers, and a real busybox
//! container behind it (the `berth` binary as the shim).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_agent::kubelet::server::{
    ContainerLookup, ContainerRef, KubeletServer, ServerConfig, TlsIdentity,
};
use berth_agent::runtime::{ContainerConfig, Runtime, RuntimeConfig};
use berth_e2e::{Server, berth_bin, wait_for};

/// The busybox-static rootfs, made once under the target directory.
fn rootfs() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("streams-busybox");
    if dir.join("bin/sh").exists() {
        return dir;
    }
    let building = dir.with_extension(std::process::id().to_string());
    for sub in ["bin", "dev", "proc", "sys", "tmp", "etc"] {
        std::fs::create_dir_all(building.join(sub)).unwrap();
    }
    std::fs::copy("/bin/busybox", building.join("bin/busybox"))
        .expect("busybox-static is installed");
    for applet in ["sh", "cat", "echo", "sleep", "head"] {
        std::os::unix::fs::symlink("busybox", building.join("bin").join(applet)).unwrap();
    }
    if std::fs::rename(&building, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&building);
    }
    dir
}

struct Pods(HashMap<String, ContainerRef>);

impl ContainerLookup for Pods {
    fn find(&self, ns: &str, pod: &str, name: &str, previous: bool) -> Option<ContainerRef> {
        (!previous)
            .then(|| self.0.get(&format!("{ns}/{pod}/{name}")).cloned())
            .flatten()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_logs_exec_and_attach_reach_the_kubelet_through_the_api_server() {
    let server = Server::start();
    let data_dir = server.data_dir.path().to_path_buf();
    let root = tempfile::Builder::new()
        .prefix("bst")
        .tempdir_in("/tmp")
        .unwrap();
    let mut config = RuntimeConfig::new(root.path()).unwrap();
    config.shim_program = berth_bin();
    config.cgroup_parent = PathBuf::from("/berth-e2e-streams");
    let runtime = Runtime::new(config).unwrap();
    let id = format!("streams-{}", std::process::id());
    let mut container = ContainerConfig::new(
        id.clone(),
        vec![rootfs()],
        vec![
            "sh".into(),
            "-c".into(),
            "echo hello; read line; echo \"got $line\"; exec sleep 1000".into(),
        ],
    );
    container.stdin = true;
    let handle = runtime.create(container).await.unwrap();
    let cleanup_runtime = runtime.clone();
    let cleanup_id = id.clone();
    let _cleanup = Guard(Some(Box::new(move || {
        std::thread::spawn(move || {
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(async { cleanup_runtime.remove(&cleanup_id).await })
        })
        .join()
        .map(|_| ())
        .unwrap_or(());
    })));

    let serving = berth_apiserver::pki::issue_kubelet_serving(&data_dir, &[], &[]).unwrap();
    let trust = berth_apiserver::pki::kubelet_client_trust(&data_dir).unwrap();
    let mut config = ServerConfig::new(TlsIdentity {
        cert_pem: serving.cert_pem,
        key_pem: serving.key_pem,
        client_ca_pem: trust.ca_pem,
        client_name: trust.client_name.to_string(),
    });
    config.listen = "127.0.0.1:0".parse().unwrap();
    let pods = Pods(HashMap::from([(
        "default/web/app".to_string(),
        ContainerRef {
            id: id.clone(),
            log_path: handle.log_path.clone(),
            tty: false,
            stdin: true,
            running: true,
        },
    )]));
    let kubelet = KubeletServer::bind(config, runtime.clone(), Arc::new(pods))
        .await
        .unwrap();
    let port = kubelet.local_addr().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(kubelet.run(async {
        let _ = stopped.await;
    }));

    let node = format!("streams-node-{}", std::process::id());
    let kubectl = |args: Vec<String>, stdin: Option<String>| {
        let server = &server;
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        server.kubectl_with_stdin(&refs, stdin.as_deref())
    };
    let ok = |out: std::process::Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    ok(kubectl(
        s(&["apply", "-f", "-"]),
        Some(format!(
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: {node}\n"
        )),
    ));
    ok(kubectl(
        s(&[
            "patch",
            "node",
            &node,
            "--subresource=status",
            "--type=merge",
            "-p",
            &format!(
                r#"{{"status":{{"addresses":[{{"type":"InternalIP","address":"127.0.0.1"}}],"daemonEndpoints":{{"kubeletEndpoint":{{"Port":{port}}}}}}}}}"#
            ),
        ]),
        None,
    ));
    ok(kubectl(
        s(&["apply", "-f", "-"]),
        Some(format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  nodeName: {node}\n  containers:\n  - name: app\n    image: busybox\n    stdin: true\n"
        )),
    ));

    wait_for("the first line", Duration::from_secs(20), || {
        std::fs::read_to_string(&handle.log_path)
            .ok()
            .filter(|t| t.contains("hello"))
    });
    assert_eq!(ok(kubectl(s(&["logs", "web"]), None)), "hello\n");
    let out = ok(kubectl(
        s(&["logs", "web", "--timestamps", "--tail=1"]),
        None,
    ));
    assert!(out.ends_with(" hello\n") && out.contains('T'), "{out}");

    let out = kubectl(
        s(&[
            "exec",
            "web",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ]),
        None,
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("err"));
    assert_eq!(
        ok(kubectl(
            s(&["exec", "-i", "web", "--", "cat"]),
            Some("piped\n".into())
        )),
        "piped\n"
    );

    // attach -i: the line reaches the container's stdin; the answer shows in the attach and in the log.
    let attach = tokio::task::spawn_blocking({
        let kubeconfig = server.kubeconfig();
        move || {
            let mut child = std::process::Command::new(berth_e2e::kubectl_bin())
                .env("KUBECONFIG", kubeconfig)
                .args(["attach", "-i", "web"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            child.stdin.as_mut().unwrap().write_all(b"typed\n").unwrap();
            child
        }
    })
    .await
    .unwrap();
    wait_for(
        "the attached line in the log",
        Duration::from_secs(20),
        || {
            std::fs::read_to_string(&handle.log_path)
                .ok()
                .filter(|t| t.contains("got typed"))
        },
    );
    let mut attach = attach;
    let _ = attach.kill();
    let _ = attach.wait();
    let out = ok(kubectl(s(&["logs", "web"]), None));
    assert_eq!(out, "hello\ngot typed\n");
    let _ = stop.send(());
}

/// Runs its closure on drop (the container's removal).
struct Guard(Option<Box<dyn FnOnce()>>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}
