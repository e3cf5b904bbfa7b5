//! The demo the README promises: the sample Stack and its kustomize overlays (config/samples) render and pass a
//! server-side dry run against `berth apiserver`, and the demo images `make images` builds from Debian packages
//! (scripts/images.sh) really serve: PostgreSQL with password authentication, Redis, and the Flask app reading
//! and writing both, run with runc in a network namespace the test creates.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use berth_e2e::demo::{EDITED_HEADING, HEADING, Images, edit_heading, http_get, visit_count};
use berth_e2e::{Kubectl, Server, kubectl_bin, unique, wait_for};
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(60);

fn run(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Output {
    let program = program.as_ref();
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {program:?}: {e}"))
}

fn run_ok(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> String {
    let program = program.as_ref().to_owned();
    let out = run(&program, args);
    assert!(
        out.status.success(),
        "{program:?} {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn samples() -> PathBuf {
    Server::repo_root().join("config/samples")
}

/// `kubectl kustomize DIR` as JSON.
fn render(dir: &Path) -> Value {
    let yaml = run_ok(kubectl_bin(), &["kustomize", &dir.to_string_lossy()]);
    serde_yaml::from_str(&yaml).expect("kustomize renders one YAML document")
}

fn env_value<'a>(app: &'a Value, name: &str) -> Option<&'a str> {
    app["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)?
        .get("value")?
        .as_str()
}

#[test]
fn overlays_render_the_dev_and_prod_variants_of_the_demo() {
    let base = render(&samples());
    let dev = render(&samples().join("dev"));
    let prod = render(&samples().join("prod"));

    for stack in [&base, &dev, &prod] {
        assert_eq!(stack["kind"], "Stack");
        assert_eq!(stack["metadata"]["name"], "demo");
        let app = &stack["spec"]["app"];
        assert_eq!(app["image"], "127.0.0.1:5000/berth/demo-app:latest");
        assert_eq!(app["ports"][0]["hostPort"], 5500);
        assert_eq!(app["readinessProbe"]["httpGet"]["path"], "/health");
    }
    assert_eq!(base["spec"]["app"].get("command"), None);

    let app = &dev["spec"]["app"];
    assert_eq!(
        app["command"],
        json!(["flask", "--app", "app", "run", "--reload"])
    );
    assert_eq!(env_value(app, "FLASK_DEBUG"), Some("1"));
    assert_eq!(
        app["volumeMounts"],
        json!([{"name": "source", "mountPath": "/app"}])
    );
    assert_eq!(app["volumes"][0]["name"], "source");
    assert!(
        app["volumes"][0]["hostPath"]["path"]
            .as_str()
            .is_some_and(|path| path.starts_with('/'))
    );

    let app = &prod["spec"]["app"];
    assert_eq!(app["command"], json!(["gunicorn"]));
    assert!(
        app["args"].as_array().is_some_and(
            |args| args.contains(&json!("0.0.0.0:5500")) && args.contains(&json!("app:app"))
        ),
        "gunicorn binds the app's port and serves app:app: {}",
        app["args"]
    );
    assert_eq!(env_value(app, "FLASK_DEBUG"), Some("0"));
    assert_eq!(app.get("volumes"), None);
    assert_eq!(app.get("volumeMounts"), None);
}

#[test]
fn dev_script_mounts_the_checkouts_app_source() {
    let rendered = run_ok(Server::repo_root().join("scripts/dev.sh"), &["--print"]);
    let stack: Value = serde_yaml::from_str(&rendered).expect("dev.sh prints one YAML document");

    let path = stack["spec"]["app"]["volumes"][0]["hostPath"]["path"]
        .as_str()
        .expect("a hostPath volume");
    assert!(
        Path::new(path).join("app.py").is_file(),
        "{path} holds the demo app's source"
    );
    assert_eq!(stack["spec"]["app"]["command"][4], "--reload");
}

#[test]
fn samples_pass_a_server_side_dry_run_against_berth() {
    let server = Server::start();
    let kubectl = Kubectl::new(&server);
    let crds = Server::repo_root().join("crds");
    kubectl.ok(&["apply", "--server-side", "-f", &crds.to_string_lossy()]);
    kubectl.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/stacks.berth.dev",
        "--timeout=30s",
    ]);

    for (overlay, command) in [
        ("", None),
        ("dev", Some("flask")),
        ("prod", Some("gunicorn")),
    ] {
        let dir = samples().join(overlay);
        let out = kubectl.ok(&[
            "apply",
            "--server-side",
            "--dry-run=server",
            "-k",
            &dir.to_string_lossy(),
            "-o",
            "json",
        ]);
        let stack: Value = serde_json::from_str(&out).expect("kubectl prints the Stack as JSON");
        // The server answered with the object it would store: defaulted from the CRD's schema.
        assert_eq!(stack["spec"]["app"]["replicas"], 1, "{overlay}: {stack}");
        assert_eq!(stack["spec"]["deletionPolicy"], "Retain", "{overlay}");
        assert_eq!(stack["spec"]["database"]["user"], "demo", "{overlay}");
        assert_eq!(
            stack["spec"]["app"]["command"]
                .get(0)
                .and_then(Value::as_str),
            command,
            "{overlay}"
        );
    }
    // The dev script's overlay with the checkout's path is accepted too.
    let dev = Command::new(Server::repo_root().join("scripts/dev.sh"))
        .env("KUBECONFIG", server.kubeconfig())
        .args(["--server-side", "--dry-run=server"])
        .stdin(Stdio::null())
        .output()
        .expect("running scripts/dev.sh");
    assert!(
        dev.status.success(),
        "scripts/dev.sh --dry-run=server failed: {}",
        String::from_utf8_lossy(&dev.stderr)
    );

    // A dry run stores nothing.
    let listed = kubectl.ok(&["get", "stacks", "-o", "name"]);
    assert_eq!(listed.trim(), "");
}

/// How a container differs from what its image says: more environment, another command, more mounts.
#[derive(Default)]
struct Launch {
    env: Vec<String>,
    args: Option<Vec<String>>,
    mounts: Vec<Value>,
}

impl Launch {
    fn env(env: &[&str]) -> Launch {
        Launch {
            env: env.iter().map(|e| e.to_string()).collect(),
            ..Launch::default()
        }
    }

    /// The app container of a rendered Stack: its command, arguments and environment, behind `wiring`.
    fn app_of(stack: &Value, wiring: &[&str]) -> Launch {
        let app = &stack["spec"]["app"];
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        };
        let mut env: Vec<String> = wiring.iter().map(|e| e.to_string()).collect();
        env.extend(app["env"].as_array().into_iter().flatten().map(|e| {
            format!(
                "{}={}",
                e["name"].as_str().unwrap_or_default(),
                e["value"].as_str().unwrap_or_default()
            )
        }));
        let mut args = strings(&app["command"]);
        args.extend(strings(&app["args"]));
        Launch {
            env,
            args: Some(args),
            mounts: Vec::new(),
        }
    }
}

/// A network namespace with loopback up, and the runc containers started in it; all removed on drop.
struct Sandbox {
    netns: String,
    runc_root: PathBuf,
    dir: tempfile::TempDir,
    containers: Vec<String>,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("berth-samples-")
            .tempdir()
            .expect("a scratch directory");
        let netns = unique("berth-smp");
        run_ok("ip", &["netns", "add", &netns]);
        let sandbox = Sandbox {
            runc_root: dir.path().join("runc"),
            dir,
            netns,
            containers: Vec::new(),
        };
        run_ok("ip", &["-n", &sandbox.netns, "link", "set", "lo", "up"]);
        sandbox
    }

    /// Copies an image from the registry and unpacks it into a runtime bundle.
    fn bundle(&self, registry: &str, image: &str, name: &str) -> PathBuf {
        let layout = self.dir.path().join("oci");
        let source = format!("docker://{registry}/{image}");
        let target = format!("oci:{}:{name}", layout.display());
        run_ok(
            "skopeo",
            &[
                "copy",
                "--quiet",
                "--src-tls-verify=false",
                &source,
                &target,
            ],
        );
        let bundle = self.dir.path().join(name);
        run_ok(
            "umoci",
            &[
                "unpack",
                "--image",
                &format!("{}:{name}", layout.display()),
                &bundle.to_string_lossy(),
            ],
        );
        bundle
    }

    /// Starts a container from a bundle in the namespace, as the image says with `launch`'s changes.
    fn start(&mut self, bundle: &Path, name: &str, launch: Launch) -> String {
        // The image's own configuration, kept aside so that every container of a bundle starts from it.
        let pristine = bundle.join("image-config.json");
        let config_path = bundle.join("config.json");
        if !pristine.exists() {
            fs::copy(&config_path, &pristine).expect("keeping umoci's config.json");
        }
        let mut config: Value =
            serde_json::from_slice(&fs::read(&pristine).expect("umoci wrote config.json"))
                .expect("config.json is JSON");
        config["process"]["terminal"] = json!(false);
        let process_env = config["process"]["env"]
            .as_array_mut()
            .expect("the image has an environment");
        process_env.extend(launch.env.iter().map(|e| json!(e)));
        if let Some(args) = launch.args {
            config["process"]["args"] = json!(args);
        }
        config["mounts"]
            .as_array_mut()
            .expect("the config lists mounts")
            .extend(launch.mounts);
        // Docker's default capabilities: the entrypoints chown their data and drop to their own user.
        let caps = json!([
            "CAP_CHOWN",
            "CAP_DAC_OVERRIDE",
            "CAP_FSETID",
            "CAP_FOWNER",
            "CAP_MKNOD",
            "CAP_NET_RAW",
            "CAP_SETGID",
            "CAP_SETUID",
            "CAP_SETFCAP",
            "CAP_SETPCAP",
            "CAP_NET_BIND_SERVICE",
            "CAP_SYS_CHROOT",
            "CAP_KILL",
            "CAP_AUDIT_WRITE"
        ]);
        config["process"]["capabilities"] =
            json!({"bounding": caps, "effective": caps, "permitted": caps});
        let namespaces = config["linux"]["namespaces"]
            .as_array_mut()
            .expect("the config lists namespaces");
        for namespace in namespaces.iter_mut() {
            if namespace["type"] == "network" {
                namespace["path"] = json!(format!("/var/run/netns/{}", self.netns));
            }
        }
        fs::write(
            &config_path,
            serde_json::to_vec(&config).expect("serializable"),
        )
        .expect("writing config.json");

        let id = unique(name);
        let log =
            fs::File::create(self.dir.path().join(format!("{name}.log"))).expect("a log file");
        let status = Command::new("runc")
            .arg("--root")
            .arg(&self.runc_root)
            .args(["run", "--detach", &id])
            .current_dir(bundle)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .status()
            .expect("running runc");
        assert!(
            status.success(),
            "runc run {name} failed: {}",
            self.log(name)
        );
        self.containers.push(id.clone());
        id
    }

    fn stop(&mut self, id: &str) {
        let root = self.runc_root.to_string_lossy().into_owned();
        run_ok("runc", &["--root", &root, "delete", "--force", id]);
        self.containers.retain(|c| c != id);
    }

    fn log(&self, name: &str) -> String {
        fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    fn exec(&self, id: &str, env: &[&str], command: &[&str]) -> Output {
        let mut args = vec![
            "--root",
            self.runc_root.to_str().expect("UTF-8 path"),
            "exec",
        ];
        for e in env {
            args.extend(["--env", e]);
        }
        args.push(id);
        args.extend_from_slice(command);
        run("runc", &args)
    }

    /// An HTTP GET from inside the namespace: (status, body).
    fn get(&self, url: &str) -> Option<(u16, String)> {
        http_get(Some(&self.netns), url)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let root = self.runc_root.to_string_lossy().into_owned();
        for id in &self.containers {
            let _ = run("runc", &["--root", &root, "delete", "--force", id]);
        }
        let _ = run("ip", &["netns", "delete", &self.netns]);
    }
}

fn uid_of_pid_1(sandbox: &Sandbox, id: &str) -> String {
    let status = String::from_utf8_lossy(&sandbox.exec(id, &[], &["cat", "/proc/1/status"]).stdout)
        .into_owned();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|uids| uids.split_whitespace().next())
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn demo_images_run_postgres_redis_and_the_app_under_runc() {
    let registry = Images::start();
    let mut sandbox = Sandbox::new();
    let postgres = sandbox.bundle(&registry.addr, "berth/postgres:15", "postgres");
    let redis = sandbox.bundle(&registry.addr, "berth/redis:7", "redis");
    let app = sandbox.bundle(&registry.addr, "berth/demo-app:latest", "app");
    // The bundles are all the rest needs: the registry's and the layout's copies of the blobs go now, which
    // halves what the test needs on disk.
    drop(registry);
    fs::remove_dir_all(sandbox.dir.path().join("oci")).expect("removing the pulled layout");

    let db = sandbox.start(
        &postgres,
        "postgres",
        Launch::env(&[
            "POSTGRES_USER=demo",
            "POSTGRES_PASSWORD=s3cret-pw",
            "POSTGRES_DB=shop",
        ]),
    );
    let cache = sandbox.start(&redis, "redis", Launch::default());

    wait_for("PostgreSQL to accept connections", DEADLINE, || {
        sandbox
            .exec(
                &db,
                &[],
                &[
                    "pg_isready",
                    "--host=127.0.0.1",
                    "--username=demo",
                    "--dbname=shop",
                ],
            )
            .status
            .success()
            .then_some(())
    });
    let psql = [
        "psql",
        "--host=127.0.0.1",
        "--username=demo",
        "--dbname=shop",
        "-Atc",
    ];
    let who = sandbox.exec(
        &db,
        &["PGPASSWORD=s3cret-pw"],
        &[
            &psql[..],
            &["SELECT current_user || '@' || current_database()"],
        ]
        .concat(),
    );
    assert!(
        who.status.success(),
        "psql with the password: {}",
        String::from_utf8_lossy(&who.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&who.stdout).trim(), "demo@shop");
    let wrong = sandbox.exec(
        &db,
        &["PGPASSWORD=not-it"],
        &[&psql[..], &["SELECT 1"]].concat(),
    );
    assert!(
        !wrong.status.success(),
        "a wrong password is refused over the network"
    );
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("password authentication failed"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );
    assert_ne!(
        uid_of_pid_1(&sandbox, &db),
        "0",
        "postgres runs as the postgres user"
    );

    let pong = wait_for("Redis to answer", DEADLINE, || {
        let out = sandbox.exec(&cache, &[], &["redis-cli", "-h", "127.0.0.1", "ping"]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    });
    assert_eq!(pong, "PONG");
    assert_ne!(
        uid_of_pid_1(&sandbox, &cache),
        "0",
        "redis-server runs as the redis user"
    );

    // The environment berth's controller injects, here with the Pod's loopback for the Services.
    let wiring = [
        "DATABASE_URL=postgresql://demo:s3cret-pw@127.0.0.1:5432/shop",
        "REDIS_URL=redis://127.0.0.1:6379/0",
    ];
    let web = sandbox.start(&app, "app", Launch::env(&wiring));
    let health = wait_for("the app's /health", DEADLINE, || {
        sandbox.get("http://127.0.0.1:5500/health")
    });
    assert_eq!(
        health.0,
        200,
        "/health: {} (app log: {})",
        health.1,
        sandbox.log("app")
    );
    let health: Value = serde_json::from_str(&health.1).expect("/health answers JSON");
    assert_eq!(
        health,
        json!({"status": "ok", "database": "ok", "redis": "ok"})
    );
    assert_ne!(
        uid_of_pid_1(&sandbox, &web),
        "0",
        "the app runs unprivileged"
    );

    let (first_status, first) = sandbox
        .get("http://127.0.0.1:5500/")
        .expect("the app answers /");
    let (second_status, second) = sandbox
        .get("http://127.0.0.1:5500/")
        .expect("the app answers /");
    assert_eq!((first_status, second_status), (200, 200));
    assert_eq!(
        visit_count(&second),
        visit_count(&first) + 1,
        "Redis counts each visit"
    );
    assert_ne!(first, second, "each load changes the page");

    // Both visits are in PostgreSQL's visit log.
    let logged = sandbox.exec(
        &db,
        &["PGPASSWORD=s3cret-pw"],
        &[&psql[..], &["SELECT count(*) FROM visits"]].concat(),
    );
    assert_eq!(String::from_utf8_lossy(&logged.stdout).trim(), "2");

    sandbox.stop(&web);

    // The prod overlay's command: gunicorn serves the same app.
    let prod = Launch::app_of(&render(&samples().join("prod")), &wiring);
    let web = sandbox.start(&app, "app-prod", prod);
    let health = wait_for("gunicorn's /health", DEADLINE, || {
        sandbox.get("http://127.0.0.1:5500/health")
    });
    assert_eq!(
        health.0,
        200,
        "{} (log: {})",
        health.1,
        sandbox.log("app-prod")
    );
    let (_, page) = sandbox
        .get("http://127.0.0.1:5500/")
        .expect("gunicorn answers /");
    assert_eq!(visit_count(&page), visit_count(&second) + 1);
    assert!(
        sandbox.log("app-prod").contains("Booting worker"),
        "{}",
        sandbox.log("app-prod")
    );
    sandbox.stop(&web);

    // The dev overlay's command on a source tree mounted from the host: an edit shows on the next load.
    let source = sandbox.dir.path().join("source");
    fs::create_dir(&source).expect("a source directory");
    fs::set_permissions(&source, fs::Permissions::from_mode(0o755)).expect("chmod");
    let app_py = source.join("app.py");
    fs::copy(
        Server::repo_root().join("examples/flask-app/app.py"),
        &app_py,
    )
    .expect("copying app.py");
    let mut dev = Launch::app_of(&render(&samples().join("dev")), &wiring);
    dev.mounts.push(json!({
        "destination": "/app", "type": "bind", "source": source, "options": ["rbind", "ro"]
    }));
    sandbox.start(&app, "app-dev", dev);
    let (status, page) = wait_for("Flask's /", DEADLINE, || {
        sandbox.get("http://127.0.0.1:5500/")
    });
    assert_eq!(status, 200, "{page} (log: {})", sandbox.log("app-dev"));
    assert!(page.contains(HEADING), "{page}");
    edit_heading(&app_py);
    wait_for("the reloaded app to serve the edit", DEADLINE, || {
        sandbox
            .get("http://127.0.0.1:5500/")
            .filter(|(status, page)| *status == 200 && page.contains(EDITED_HEADING))
    });
    assert!(
        sandbox.log("app-dev").contains("Debugger is active"),
        "FLASK_DEBUG=1 is on"
    );

    // Redis down: /health says which dependency failed.
    let root = sandbox.runc_root.to_string_lossy().into_owned();
    run_ok("runc", &["--root", &root, "kill", &cache, "KILL"]);
    let unhealthy = wait_for("/health to notice Redis is gone", DEADLINE, || {
        sandbox
            .get("http://127.0.0.1:5500/health")
            .filter(|(status, _)| *status == 503)
    });
    let unhealthy: Value = serde_json::from_str(&unhealthy.1).expect("/health answers JSON");
    assert_eq!(unhealthy["database"], "ok");
    assert_ne!(unhealthy["redis"], "ok");
}
