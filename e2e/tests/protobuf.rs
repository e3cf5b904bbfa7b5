//! Imperative `kubectl create` and `kubectl delete` of built-in kinds, with every kubectl version found.
//!
//! kubectl 1.27 to 1.31 send JSON bodies. From 1.32 on, client-go's generated clients for built-in kinds send
//! protobuf whenever no content type was configured (client-go 0.32, `Request.UseProtobufAsDefault`), and
//! kubectl configures none; client-go falls back to JSON after a 415 only for CBOR bodies, so a server must
//! decode protobuf or fail the command. berth decodes the kinds `kubectl create` and Helm send (see
//! operator/apiserver/src/protobuf); a kind it has no conversion for gets one 415 that lists the decoded kinds
//! and names the workaround, which the test runs too.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use berth_e2e::{Server, kubectl_bin};
use serde_json::{Value, json};

/// The kubectl minor versions berth supports.
const KUBECTL_MINORS: std::ops::RangeInclusive<u32> = 27..=33;
/// The first kubectl minor whose built-in clients send protobuf bodies.
const FIRST_PROTOBUF_MINOR: u32 = 32;
/// The request header a protobuf body carries, as kubectl logs it at -v=8.
const PROTOBUF_REQUEST: &str = "Content-Type: application/vnd.kubernetes.protobuf";

/// One kubectl binary against one server (the harness's, with a cache of its own), and the minor version it
/// reports.
struct Kubectl {
    kubectl: berth_e2e::Kubectl,
    minor: u32,
}

impl std::ops::Deref for Kubectl {
    type Target = berth_e2e::Kubectl;

    fn deref(&self) -> &berth_e2e::Kubectl {
        &self.kubectl
    }
}

impl Kubectl {
    /// The object as JSON, or None when the server answers NotFound.
    fn get(&self, kind: &str, name: &str, namespace: &str) -> Option<Value> {
        let mut args = vec![
            "get",
            kind,
            name,
            "--ignore-not-found",
            "--show-managed-fields",
            "-o",
            "json",
        ];
        if !namespace.is_empty() {
            args.extend(["-n", namespace]);
        }
        let out = self.ok(&args);
        (!out.trim().is_empty())
            .then(|| serde_json::from_str(&out).expect("kubectl -o json prints JSON"))
    }
}

/// The client minor version a kubectl binary reports (`"33"`, or `"32+"` for some vendor builds).
fn client_minor(bin: &Path) -> u32 {
    let out = Command::new(bin)
        .args(["version", "--client", "-o", "json"])
        .stdin(Stdio::null())
        .output()
        .expect("running kubectl version");
    let version: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|err| {
        panic!(
            "{} version --client -o json: {err}: {}",
            bin.display(),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let minor = version["clientVersion"]["minor"].as_str().unwrap_or("");
    minor
        .trim_end_matches('+')
        .parse()
        .unwrap_or_else(|_| panic!("{} reports minor version {minor:?}", bin.display()))
}

/// The versioned kubectl binaries the Google Cloud CLI installs next to its `kubectl` dispatcher, plus the
/// kubectl under test (`$KUBECTL` or the PATH's), each with the minor version it reports.
fn kubectls() -> Vec<(u32, PathBuf)> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        if let Ok(real) = std::fs::canonicalize(dir.join("kubectl"))
            && let Some(parent) = real.parent()
        {
            dirs.push(parent.to_path_buf());
        }
        dirs.push(dir);
    }
    let mut found: Vec<(u32, PathBuf)> = KUBECTL_MINORS
        .filter_map(|minor| {
            dirs.iter()
                .map(|d| d.join(format!("kubectl.1.{minor}")))
                .find(|bin| bin.is_file())
        })
        .map(|bin| (client_minor(&bin), bin))
        .collect();
    let default = kubectl_bin();
    let default_minor = client_minor(&default);
    if !found.iter().any(|(minor, _)| *minor == default_minor) {
        found.push((default_minor, default));
    }
    found
}

/// One `kubectl create` and what the stored object must hold.
struct Create {
    /// The resource name for `kubectl get`/`delete`.
    resource: &'static str,
    name: String,
    /// Empty for cluster-scoped kinds.
    namespace: &'static str,
    args: Vec<String>,
    check: fn(&Value) -> Result<(), String>,
}

fn expect(object: &Value, pointer: &str, want: Value) -> Result<(), String> {
    match object.pointer(pointer) {
        Some(got) if *got == want => Ok(()),
        got => Err(format!("{pointer}: want {want}, got {got:?}")),
    }
}

/// The `kubectl create` subcommands the brief of issue 3 names, each with a check of what it stored.
fn creates(suffix: &str, binary_file: &Path) -> Vec<Create> {
    let s = |items: &[&str]| -> Vec<String> { items.iter().map(|i| i.to_string()).collect() };
    let name = |prefix: &str| format!("{prefix}-{suffix}");
    let sa = name("sa");
    let role = name("role");
    let clusterrole = name("clusterrole");
    vec![
        Create {
            resource: "configmap",
            name: name("cm"),
            namespace: "default",
            args: [
                s(&["configmap", &name("cm"), "--from-literal=greeting=hello"]),
                vec![format!("--from-file=blob={}", binary_file.display())],
            ]
            .concat(),
            check: |o| {
                expect(
                    o,
                    "/metadata/managedFields/0/manager",
                    json!("kubectl-create"),
                )?;
                expect(o, "/data/greeting", json!("hello"))?;
                expect(o, "/binaryData/blob", json!("AJ+Slg=="))
            },
        },
        Create {
            resource: "secret",
            name: name("secret"),
            namespace: "default",
            args: s(&[
                "secret",
                "generic",
                &name("secret"),
                "--from-literal=password=s3cret",
            ]),
            check: |o| expect(o, "/data/password", json!("czNjcmV0")),
        },
        Create {
            resource: "secret",
            name: name("registry"),
            namespace: "default",
            args: s(&[
                "secret",
                "docker-registry",
                &name("registry"),
                "--docker-server=registry.example",
                "--docker-username=u",
                "--docker-password=p",
            ]),
            check: |o| {
                expect(o, "/type", json!("kubernetes.io/dockerconfigjson"))?;
                // {"auths":{"registry.example":{"username":"u","password":"p","auth":"dTpw"}}}, as every
                // kubectl version encodes it with --dry-run=client.
                expect(
                    o,
                    "/data/.dockerconfigjson",
                    json!(
                        "eyJhdXRocyI6eyJyZWdpc3RyeS5leGFtcGxlIjp7InVzZXJuYW1lIjoidSIsInBhc3N3b3JkIjoicCIsImF1dGgiOiJkVHB3In19fQ=="
                    ),
                )
            },
        },
        Create {
            resource: "namespace",
            name: name("ns"),
            namespace: "",
            args: s(&["namespace", &name("ns")]),
            check: |o| expect(o, "/status/phase", json!("Active")),
        },
        Create {
            resource: "serviceaccount",
            name: sa.clone(),
            namespace: "default",
            args: s(&["serviceaccount", &sa]),
            check: |o| expect(o, "/kind", json!("ServiceAccount")),
        },
        Create {
            resource: "role.rbac.authorization.k8s.io",
            name: role.clone(),
            namespace: "default",
            args: s(&[
                "role",
                &role,
                "--verb=get,list",
                "--resource=pods,configmaps",
            ]),
            check: |o| {
                expect(o, "/rules/0/verbs", json!(["get", "list"]))?;
                expect(o, "/rules/0/resources", json!(["pods", "configmaps"]))
            },
        },
        Create {
            resource: "rolebinding.rbac.authorization.k8s.io",
            name: name("rolebinding"),
            namespace: "default",
            args: vec![
                "rolebinding".into(),
                name("rolebinding"),
                format!("--role={role}"),
                format!("--serviceaccount=default:{sa}"),
                "--user=alice".into(),
            ],
            check: |o| {
                expect(o, "/roleRef/kind", json!("Role"))?;
                // kubectl lists users, then groups, then service accounts.
                expect(o, "/subjects/0/name", json!("alice"))?;
                expect(o, "/subjects/1/kind", json!("ServiceAccount"))
            },
        },
        Create {
            resource: "clusterrole.rbac.authorization.k8s.io",
            name: clusterrole.clone(),
            namespace: "",
            args: s(&[
                "clusterrole",
                &clusterrole,
                "--verb=get",
                "--non-resource-url=/metrics",
            ]),
            check: |o| expect(o, "/rules/0/nonResourceURLs", json!(["/metrics"])),
        },
        Create {
            resource: "clusterrolebinding.rbac.authorization.k8s.io",
            name: name("clusterrolebinding"),
            namespace: "",
            args: vec![
                "clusterrolebinding".into(),
                name("clusterrolebinding"),
                format!("--clusterrole={clusterrole}"),
                "--group=devs".into(),
            ],
            check: |o| expect(o, "/subjects/0/kind", json!("Group")),
        },
        Create {
            resource: "priorityclass.scheduling.k8s.io",
            name: name("priority"),
            namespace: "",
            args: s(&[
                "priorityclass",
                &name("priority"),
                "--value=1000",
                "--description=important",
            ]),
            check: |o| {
                expect(o, "/value", json!(1000))?;
                expect(o, "/description", json!("important"))
            },
        },
        Create {
            resource: "service",
            name: name("svc"),
            namespace: "default",
            args: s(&[
                "service",
                "clusterip",
                &name("svc"),
                "--tcp=80:8080,443:https",
            ]),
            check: |o| {
                expect(o, "/spec/type", json!("ClusterIP"))?;
                expect(o, "/spec/ports/0/port", json!(80))?;
                expect(o, "/spec/ports/0/targetPort", json!(8080))?;
                expect(o, "/spec/ports/1/targetPort", json!("https"))
            },
        },
    ]
}

/// Every create succeeds and stores the right object, and every `kubectl delete` removes it (a namespace goes
/// to Terminating: `berth apiserver` alone runs no namespace controller).
fn creates_and_deletes(k: &Kubectl, suffix: &str, binary_file: &Path) {
    let minor = k.minor;
    let creates = creates(suffix, binary_file);
    for (i, create) in creates.iter().enumerate() {
        let mut args: Vec<&str> = vec!["create"];
        args.extend(create.args.iter().map(String::as_str));
        if i == 0 {
            args.push("-v=8");
        }
        let out = k.run(&args, None);
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "kubectl 1.{minor} {}: {log}",
            args.join(" ")
        );
        if i == 0 {
            assert_eq!(
                log.contains(PROTOBUF_REQUEST),
                minor >= FIRST_PROTOBUF_MINOR,
                "kubectl 1.{minor}: protobuf bodies from 1.{FIRST_PROTOBUF_MINOR} on: {log}"
            );
        }
        let stored = k
            .get(create.resource, &create.name, create.namespace)
            .unwrap_or_else(|| panic!("kubectl 1.{minor}: {} not stored", create.name));
        if let Err(why) = (create.check)(&stored) {
            panic!("kubectl 1.{minor} {}: {why}: {stored:#}", args.join(" "));
        }
        // Objects with fields of their own record them under kubectl's field manager (a ServiceAccount with
        // only a name has none, as upstream).
        for entry in stored["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
        {
            assert_eq!(
                entry["manager"], "kubectl-create",
                "kubectl 1.{minor}: {entry}"
            );
        }
    }
    for create in creates.iter().rev() {
        let mut args = vec!["delete", create.resource, &create.name, "--wait=false"];
        if !create.namespace.is_empty() {
            args.extend(["-n", create.namespace]);
        }
        k.ok(&args);
        match k.get(create.resource, &create.name, create.namespace) {
            None => {}
            Some(left) if create.resource == "namespace" => assert!(
                left["metadata"]["deletionTimestamp"].is_string(),
                "kubectl 1.{minor}: namespace {} is Terminating: {left:#}",
                create.name
            ),
            Some(left) => panic!(
                "kubectl 1.{minor}: {} left after delete: {left:#}",
                create.name
            ),
        }
    }
}

/// `kubectl create deployment`: JSON before 1.32; from 1.32 a protobuf Deployment, which berth does not
/// decode, so one 415 that lists what is decoded and names the workaround, nothing stored, and the workaround
/// works with the same kubectl.
fn deployment(k: &Kubectl, suffix: &str) {
    let minor = k.minor;
    let name = format!("deploy-{suffix}");
    let args = ["create", "deployment", &name, "--image=busybox"];
    if minor < FIRST_PROTOBUF_MINOR {
        k.ok(&args);
    } else {
        let mut verbose = args.to_vec();
        verbose.push("-v=8");
        let out = k.run(&verbose, None);
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "kubectl 1.{minor}: expected the 415, got success: {log}"
        );
        // client-go does not retry a 415, in JSON or otherwise.
        assert_eq!(
            log.matches("415 Unsupported Media Type").count(),
            1,
            "kubectl 1.{minor}: exactly one request answered 415: {log}"
        );
        let message = log
            .lines()
            .rfind(|line| line.starts_with("error:") || line.starts_with("Error from server"))
            .unwrap_or_else(|| panic!("kubectl 1.{minor} printed no error: {log}"));
        for part in [
            "does not decode protobuf request bodies of kind Deployment (apps/v1)",
            "ConfigMap (v1)",
            "--dry-run=client -o yaml | kubectl apply -f -",
        ] {
            assert!(
                message.contains(part),
                "kubectl 1.{minor}: {part:?} missing from: {message}"
            );
        }
        assert!(
            k.get("deployment.apps", &name, "default").is_none(),
            "kubectl 1.{minor}: nothing stored for the refused Deployment"
        );
        let mut dry_run = args.to_vec();
        dry_run.extend(["--dry-run=client", "-o", "yaml"]);
        let manifest = k.ok(&dry_run);
        k.ok_stdin(&["apply", "-f", "-"], Some(&manifest));
    }
    let stored = k
        .get("deployment.apps", &name, "default")
        .expect("Deployment stored");
    assert_eq!(
        stored["spec"]["template"]["spec"]["containers"][0]["image"], "busybox",
        "kubectl 1.{minor}"
    );
}

#[test]
fn kubectl_create_and_delete_of_built_in_kinds_work_with_json_and_protobuf_bodies() {
    let server = Server::start();
    let binary_file = server.data_dir.path().join("blob.bin");
    std::fs::write(&binary_file, [0x00, 0x9f, 0x92, 0x96]).expect("writing the binary file");
    let mut ran = Vec::new();
    for (minor, bin) in kubectls() {
        let k = Kubectl {
            kubectl: berth_e2e::Kubectl::with_bin(&server, bin, &format!("1.{minor}")),
            minor,
        };
        let suffix = format!("1-{minor}");
        creates_and_deletes(&k, &suffix, &binary_file);
        deployment(&k, &suffix);
        ran.push(format!(
            "1.{minor} ({})",
            if minor < FIRST_PROTOBUF_MINOR {
                "JSON"
            } else {
                "protobuf"
            }
        ));
    }
    assert!(!ran.is_empty(), "at least the kubectl under test ran");
    println!("kubectl versions exercised: {}", ran.join(", "));
}
