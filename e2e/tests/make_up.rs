//! `make up` and `make down` as a newcomer runs them, on the test's own settings: scripts/up.sh starts the debug
//! `berth up` in the background with its own data directory, API address, Pod network (bridge, /24) and node
//! name, applies the demo Stack with the images of a registry of the test's own (scripts/images.sh, cached) and
//! the app on a free hostPort, waits for Ready and prints the URL and the kubectl commands to try. Then: the
//! page changes on each load, running up.sh again changes nothing, the dev overlay (scripts/dev.sh,
//! `kubectl apply -k`) mounts a copy of examples/flask-app and an edit of that copy shows on the page, and
//! scripts/down.sh stops berth and removes every container and the bridge.
//!
//! One test walks the whole path because each `berth up` with the demo Stack costs minutes of CI's 2 cores.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_e2e::bench::{processes, shims};
use berth_e2e::demo::{
    EDITED_HEADING, HEADING, Images, edit_heading, http_get, visit, wait_healthy,
};
use berth_e2e::network::TestNetwork;
use berth_e2e::{
    Kubectl, Server, berth_bin, berth_down, free_port, output_text, unique, wait_every,
};
use serde_json::Value;

/// up.sh's own wait for Ready, cold: three image pulls, initdb and the app's probes on a shared 2-core machine.
const UP_TIMEOUT: &str = "420s";
/// One step of a running Stack: a rollout, the reloader noticing an edit, the app answering again.
const STEP: Duration = Duration::from_secs(240);
/// How often to look again: each look is a process (kubectl, curl).
const POLL: Duration = Duration::from_millis(500);

/// What `make up` was given, and what it started; on drop (a failed test) everything is stopped and removed as
/// `make down` does, with berth's log printed first.
struct MakeUp {
    data_dir: tempfile::TempDir,
    listen: String,
    host_port: u16,
    network: TestNetwork,
    node: String,
    images: Images,
    kubectl: Kubectl,
}

impl MakeUp {
    fn new(images: Images) -> MakeUp {
        let data_dir = tempfile::Builder::new()
            .prefix("berth-make-up-")
            .tempdir()
            .expect("a data directory");
        let kubectl = Kubectl::with_kubeconfig(
            data_dir.path().join("kubeconfig"),
            Some(data_dir.path().join("kubectl-cache")),
        );
        MakeUp {
            listen: format!("127.0.0.1:{}", free_port()),
            host_port: free_port(),
            network: TestNetwork::pick(),
            node: unique("make-up"),
            data_dir,
            images,
            kubectl,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.host_port)
    }

    /// A script of scripts/, run from outside the checkout with this test's settings (and `env`) and the debug
    /// binary; fails the test when the script fails.
    fn script(&self, name: &str, args: &[&str], env: &[(&str, &Path)]) -> String {
        let mut command = Command::new(Server::repo_root().join("scripts").join(name));
        self.images.env(&mut command);
        let mut flags = self.network.flags();
        flags.extend(["--node-name".into(), self.node.clone()]);
        let out = command
            .args(args)
            .current_dir(self.data_dir.path())
            .env("BERTH", berth_bin())
            .env("BERTH_HOST_PORT", self.host_port.to_string())
            .env("BERTH_UP_FLAGS", flags.join(" "))
            .env("BERTH_UP_TIMEOUT", UP_TIMEOUT)
            .env("KUBECONFIG", self.data_dir.path().join("kubeconfig"))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running scripts/{name}: {e}"));
        eprintln!("--- scripts/{name} ---\n{}", output_text(&out));
        assert!(out.status.success(), "scripts/{name} failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// scripts/up.sh as the Makefile calls it: `scripts/up.sh "$(BERTH)" "$(DATA_DIR)" "$(LISTEN)"`.
    fn up(&self) -> String {
        let bin = berth_bin();
        let data_dir = self.data_dir.path().to_string_lossy();
        self.script(
            "up.sh",
            &[&bin.to_string_lossy(), &data_dir, &self.listen],
            &[],
        )
    }

    /// The pid scripts/up.sh recorded for `berth up`.
    fn berth_pid(&self) -> u32 {
        let text = fs::read_to_string(self.data_dir.path().join("berth.pid"))
            .expect("up.sh records berth's pid");
        text.trim().parse().expect("a pid")
    }

    /// The `berth up` processes running on this data directory.
    fn berth_processes(&self) -> Vec<u32> {
        let dir = self.data_dir.path().to_string_lossy();
        processes()
            .into_iter()
            .filter(|(_, argv)| {
                argv.get(1).is_some_and(|a| a == "up") && argv.iter().any(|a| a == dir.as_ref())
            })
            .map(|(pid, _)| pid)
            .collect()
    }

    fn get(&self, what: &[&str]) -> Value {
        let mut args = vec!["get"];
        args.extend_from_slice(what);
        args.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&self.kubectl.ok(&args)).expect("kubectl prints JSON")
    }

    /// Every object of the kinds the demo Stack makes, as `kind/name uid`, sorted.
    fn objects(&self) -> Vec<String> {
        let list = self.get(&["stacks,pods,services,secrets,pvc"]);
        let mut objects: Vec<String> = list["items"]
            .as_array()
            .expect("a list")
            .iter()
            .map(|o| {
                format!(
                    "{}/{} {}",
                    o["kind"].as_str().unwrap_or_default(),
                    o["metadata"]["name"].as_str().unwrap_or_default(),
                    o["metadata"]["uid"].as_str().unwrap_or_default()
                )
            })
            .collect();
        objects.sort();
        objects
    }

    /// Waits for the Stack to be Ready for its generation `generation`.
    fn wait_ready(&self, generation: u64) {
        wait_every(
            &format!("stack/demo Ready at generation {generation}"),
            STEP,
            POLL,
            || {
                let stack = self.get(&["stack", "demo"]);
                let ready = stack["status"]["conditions"]
                    .as_array()?
                    .iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True");
                (ready && stack["status"]["observedGeneration"] == generation).then_some(())
            },
        );
    }

    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.data_dir.path().join("berth.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(200)..].join("\n")
    }
}

impl Drop for MakeUp {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for args in [
                &["get", "stacks,pods", "-o", "wide"][..],
                &["get", "events"],
            ] {
                let out = self.kubectl.run(args, None);
                eprintln!("--- kubectl {} ---\n{}", args.join(" "), output_text(&out));
            }
            eprintln!("--- berth.log (last 200 lines) ---\n{}", self.log_tail());
        }
        // What `make down` does, again: nothing is left when the test passed.
        berth_down(&berth_bin(), self.data_dir.path());
    }
}

/// A copy of examples/flask-app that the app's user can read, for the dev overlay to mount.
fn app_source_copy(dir: &Path) -> PathBuf {
    let source = dir.join("flask-app");
    fs::create_dir(&source).expect("a source directory");
    for entry in fs::read_dir(Server::repo_root().join("examples/flask-app")).expect("the app") {
        let entry = entry.expect("a directory entry");
        if entry.file_type().expect("a file type").is_file() {
            fs::copy(entry.path(), source.join(entry.file_name())).expect("copying the app");
        }
    }
    for path in [dir, &source] {
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    source
}

#[test]
fn make_up_serves_the_demo_twice_without_duplicates_dev_overlay_reloads_edits_and_make_down_removes_everything()
 {
    let images = Images::start();
    let up = MakeUp::new(images);

    // The first run: berth started, the Stack Ready, the URL and the kubectl commands printed.
    let printed = up.up();
    let kubeconfig = up.data_dir.path().join("kubeconfig");
    for hint in [
        format!("The demo stack is up: {}", up.url()),
        format!("export KUBECONFIG={}", kubeconfig.display()),
        "kubectl get stacks".into(),
        "kubectl logs -f -l berth.dev/stack=demo,berth.dev/component=app".into(),
        "kubectl exec -it".into(),
        "make down".into(),
    ] {
        assert!(printed.contains(&hint), "up.sh prints {hint:?}: {printed}");
    }
    let pid = up.berth_pid();
    assert_eq!(up.berth_processes(), vec![pid], "one berth up runs");

    // The demo at the printed URL: each load changes the page.
    wait_healthy(&up.url(), STEP);
    let (first, first_page) = visit(&up.url());
    let (second, second_page) = visit(&up.url());
    assert_eq!(second, first + 1, "Redis counts each visit");
    assert_ne!(first_page, second_page, "each load changes the page");

    // The second run finds berth running and the Stack as it is: nothing restarted, nothing duplicated.
    let objects = up.objects();
    assert_eq!(
        objects.iter().filter(|o| o.starts_with("Pod/")).count(),
        3,
        "the app, database and Redis Pods: {objects:#?}"
    );
    let shims_before = shims(up.data_dir.path()).len();
    let printed = up.up();
    assert!(
        printed.contains(&format!("berth is already running (pid {pid}")),
        "{printed}"
    );
    assert!(printed.contains(&up.url()), "{printed}");
    assert_eq!(up.berth_processes(), vec![pid], "still one berth up");
    assert_eq!(up.objects(), objects, "the same objects, none added");
    assert_eq!(shims(up.data_dir.path()).len(), shims_before);
    let stack = up.get(&["stack", "demo"]);
    assert_eq!(stack["metadata"]["generation"], 1, "the Stack is unchanged");
    let (third, _) = visit(&up.url());
    assert_eq!(third, second + 1, "the same Redis counts on");

    // The dev overlay (scripts/dev.sh, `kubectl apply -k`) on a copy of the app's source: Flask's reloader.
    let scratch = tempfile::Builder::new()
        .prefix("berth-make-up-src-")
        .tempdir()
        .expect("a scratch directory");
    let source = app_source_copy(scratch.path());
    up.script("dev.sh", &[], &[("BERTH_DEV_SOURCE", &source)]);
    up.wait_ready(2);
    let stack = up.get(&["stack", "demo"]);
    let app = &stack["spec"]["app"];
    assert_eq!(
        app["volumes"][0]["hostPath"]["path"],
        source.to_string_lossy().as_ref()
    );
    assert_eq!(
        app["image"],
        format!("{}/berth/demo-app:latest", up.images.addr)
    );
    wait_healthy(&up.url(), STEP);
    let (_, page) = visit(&up.url());
    assert!(page.contains(HEADING), "{page}");

    // The app Pod's uid and its container's restarts: a reload inside the container changes neither.
    let app_pod = || {
        let pods = up.get(&["pods", "-l", "berth.dev/stack=demo,berth.dev/component=app"]);
        let pod = &pods["items"][0];
        let restarts = &pod["status"]["containerStatuses"][0]["restartCount"];
        format!("uid {}, {restarts} restarts", pod["metadata"]["uid"])
    };
    let before_edit = app_pod();

    let app_py = source.join("app.py");
    edit_heading(&app_py);
    wait_every("the page to show the edit", STEP, POLL, || {
        http_get(None, &format!("{}/", up.url()))
            .filter(|(status, page)| *status == 200 && page.contains(EDITED_HEADING))
    });
    assert_eq!(
        app_pod(),
        before_edit,
        "the running app reloaded the edit: its Pod is the same, its container not restarted"
    );
    let log = up.kubectl.ok(&[
        "logs",
        "-l",
        "berth.dev/stack=demo,berth.dev/component=app",
        "--tail=-1",
    ]);
    assert!(
        log.contains("Debugger is active"),
        "FLASK_DEBUG=1 turns the debugger on: {log}"
    );
    let checkout = fs::read_to_string(Server::repo_root().join("examples/flask-app/app.py"))
        .expect("the checkout's app.py");
    assert!(
        !checkout.contains(EDITED_HEADING),
        "the checkout is untouched"
    );

    // `make down`: berth stopped, every container and the bridge gone.
    up.script("down.sh", &[&up.data_dir.path().to_string_lossy()], &[]);
    assert!(up.berth_processes().is_empty(), "berth up is stopped");
    assert_eq!(
        shims(up.data_dir.path()),
        Vec::<u32>::new(),
        "no container is left"
    );
    assert!(
        !Path::new("/sys/class/net")
            .join(&up.network.bridge)
            .exists(),
        "the bridge {} is removed",
        up.network.bridge
    );
    assert_eq!(
        http_get(None, &format!("{}/", up.url())),
        None,
        "nothing answers"
    );
}

#[test]
fn make_up_and_make_down_run_the_scripts_with_the_release_build_and_the_checkouts_data_dir() {
    let root = Server::repo_root()
        .canonicalize()
        .expect("the checkout's path");
    let dry_run = |target: &str| {
        // Under `make test` this make is nested: without the parent's variables it prints no
        // "Entering directory" lines and takes no jobserver.
        let out = Command::new("make")
            .args(["-n", "--no-print-directory", target])
            .env_remove("MAKELEVEL")
            .env_remove("MAKEFLAGS")
            .env_remove("MFLAGS")
            .current_dir(&root)
            .stdin(Stdio::null())
            .output()
            .expect("running make -n");
        assert!(
            out.status.success(),
            "make -n {target}: {}",
            output_text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let data_dir = root.join(".data");
    let up = dry_run("up");
    let steps = [
        "scripts/deps.sh".to_owned(),
        "cargo build --release -p berth".to_owned(),
        "scripts/images.sh".to_owned(),
        format!(
            "scripts/up.sh \"target/release/berth\" \"{}\" \"127.0.0.1:6443\"",
            data_dir.display()
        ),
    ];
    let lines: Vec<&str> = up.lines().collect();
    let mut at = 0;
    for step in &steps {
        let found = lines[at..]
            .iter()
            .position(|line| line.trim() == step)
            .unwrap_or_else(|| panic!("make -n up runs {step:?} after the steps before it: {up}"));
        at += found + 1;
    }
    let down = dry_run("down");
    assert_eq!(
        down.trim(),
        format!("scripts/down.sh \"{}\"", data_dir.display())
    );
}
