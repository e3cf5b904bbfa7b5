//! Imperative `kubectl create` of built-in kinds, with every kubectl version found: what each version sends,
//! and what berth answers.
//!
//! kubectl 1.27 to 1.31 send JSON bodies. From 1.32 on, client-go's generated clients for built-in kinds send
//! protobuf whenever no content type was configured (client-go 0.32, `Request.UseProtobufAsDefault`), and
//! kubectl configures none. berth does not decode protobuf, and no answer of its can turn such a request into
//! JSON: client-go falls back to JSON after a 415 only for CBOR bodies
//! (`requestClientContentConfigProvider.UnsupportedMediaType`), it retries only 429/5xx answers that carry
//! Retry-After, and a retry or a redirect resends the same encoded body. So those versions get one 415 that
//! says what works instead, and the test pins both that and the workaround it names.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use berth_e2e::{Server, kubectl_bin};
use serde_json::Value;

/// The kubectl minor versions berth supports.
const KUBECTL_MINORS: std::ops::RangeInclusive<u32> = 27..=33;
/// The first kubectl minor whose built-in clients send protobuf bodies.
const FIRST_PROTOBUF_MINOR: u32 = 32;
/// The request header a protobuf body carries, as kubectl logs it at -v=8.
const PROTOBUF_REQUEST: &str = "Content-Type: application/vnd.kubernetes.protobuf";

/// One kubectl binary against one server.
struct Kubectl<'a> {
    server: &'a Server,
    bin: PathBuf,
    minor: u32,
}

impl Kubectl<'_> {
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new(&self.bin)
            .env("KUBECONFIG", self.server.kubeconfig())
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running kubectl");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .expect("stdin was piped")
                .write_all(input.as_bytes())
                .expect("writing kubectl's stdin");
        }
        child.wait_with_output().expect("waiting for kubectl")
    }

    fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "kubectl 1.{} {} failed: {}",
            self.minor,
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The object as JSON, or None when the server answers NotFound.
    fn get(&self, kind: &str, name: &str, namespace: &str) -> Option<Value> {
        let mut args = vec!["get", kind, name, "--ignore-not-found", "-o", "json"];
        if !namespace.is_empty() {
            args.extend(["-n", namespace]);
        }
        let out = self.ok(&args, None);
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

/// `kubectl create configmap|secret|namespace` with a JSON-sending kubectl: the objects are stored as given.
fn creates_with_json(k: &Kubectl, suffix: &str) {
    let minor = k.minor;
    let configmap = format!("cm-{suffix}");
    let out = k.run(
        &[
            "create",
            "configmap",
            &configmap,
            "--from-literal=greeting=hello",
            "-v=8",
        ],
        None,
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kubectl 1.{minor}: {log}");
    assert!(
        !log.contains(PROTOBUF_REQUEST),
        "kubectl 1.{minor} is expected to send JSON: {log}"
    );
    let stored = k.get("configmap", &configmap, "default").expect("stored");
    assert_eq!(stored["data"]["greeting"], "hello", "kubectl 1.{minor}");

    let secret = format!("secret-{suffix}");
    k.ok(
        &[
            "create",
            "secret",
            "generic",
            &secret,
            "--from-literal=password=s3cret",
        ],
        None,
    );
    let stored = k.get("secret", &secret, "default").expect("stored");
    assert_eq!(stored["data"]["password"], "czNjcmV0", "kubectl 1.{minor}");

    let namespace = format!("ns-{suffix}");
    k.ok(&["create", "namespace", &namespace], None);
    let stored = k.get("namespace", &namespace, "").expect("stored");
    assert_eq!(stored["status"]["phase"], "Active", "kubectl 1.{minor}");
}

/// `kubectl create configmap|secret|namespace` with a protobuf-sending kubectl: one request, one 415 that names
/// the workaround, nothing stored; and the workaround works with the same kubectl.
fn gets_a_clear_415(k: &Kubectl, suffix: &str) {
    let minor = k.minor;
    let configmap = format!("cm-{suffix}");
    let secret = format!("secret-{suffix}");
    let namespace = format!("ns-{suffix}");
    // (kind, name, namespace, the create command)
    let creates: [(&str, &str, &str, Vec<&str>); 3] = [
        (
            "configmap",
            &configmap,
            "default",
            vec![
                "create",
                "configmap",
                &configmap,
                "--from-literal=greeting=hello",
            ],
        ),
        (
            "secret",
            &secret,
            "default",
            vec![
                "create",
                "secret",
                "generic",
                &secret,
                "--from-literal=password=s3cret",
            ],
        ),
        (
            "namespace",
            &namespace,
            "",
            vec!["create", "namespace", &namespace],
        ),
    ];
    for (kind, name, object_namespace, args) in &creates {
        let mut verbose = args.clone();
        verbose.push("-v=8");
        let out = k.run(&verbose, None);
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "kubectl 1.{minor} {}: expected the 415, got success: {log}",
            args.join(" ")
        );
        assert!(
            log.contains(PROTOBUF_REQUEST),
            "kubectl 1.{minor} is expected to send protobuf: {log}"
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
        assert!(
            message.contains("berth does not accept protobuf request bodies")
                && message.contains("--dry-run=client -o yaml | kubectl apply -f -"),
            "kubectl 1.{minor} {kind}: the error says what works instead: {message}"
        );
        assert!(
            k.get(kind, name, object_namespace).is_none(),
            "kubectl 1.{minor}: nothing stored for the refused {kind} {name}"
        );

        // The workaround the message names.
        let mut dry_run = args.clone();
        dry_run.extend(["--dry-run=client", "-o", "yaml"]);
        let manifest = k.ok(&dry_run, None);
        k.ok(&["apply", "-f", "-"], Some(&manifest));
        assert!(
            k.get(kind, name, object_namespace).is_some(),
            "kubectl 1.{minor}: {kind} {name} stored through the workaround"
        );
    }
    let stored = k.get("configmap", &configmap, "default").expect("stored");
    assert_eq!(stored["data"]["greeting"], "hello", "kubectl 1.{minor}");
    let stored = k.get("secret", &secret, "default").expect("stored");
    assert_eq!(stored["data"]["password"], "czNjcmV0", "kubectl 1.{minor}");
}

#[test]
fn kubectl_create_sends_json_before_1_32_and_gets_a_415_naming_the_workaround_after() {
    let server = Server::start();
    let mut ran = Vec::new();
    for (minor, bin) in kubectls() {
        let k = Kubectl {
            server: &server,
            bin,
            minor,
        };
        let suffix = format!("1-{minor}");
        if minor < FIRST_PROTOBUF_MINOR {
            creates_with_json(&k, &suffix);
            ran.push(format!("1.{minor} (JSON)"));
        } else {
            gets_a_clear_415(&k, &suffix);
            ran.push(format!("1.{minor} (protobuf, 415)"));
        }
    }
    assert!(!ran.is_empty(), "at least the kubectl under test ran");
    println!("kubectl versions exercised: {}", ran.join(", "));
}
