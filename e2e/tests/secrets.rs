//! Secret `stringData` through the real kubectl: YAML that decodes to something other than a string (`y` is a
//! boolean and `8080` a number to kubectl's YAML) is rejected with a 400 naming the entry, as upstream's
//! decoding rejects it, and nothing is stored; quoted, the same values are stored as the strings written.

use berth_e2e::{Kubectl, Server};

fn secret(name: &str, entries: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: default}}\nstringData:\n{entries}"
    )
}

#[test]
fn string_data_that_yaml_decodes_to_a_bool_or_number_is_rejected_naming_the_entry() {
    let server = Server::start();
    let k = Kubectl::new(&server);
    for (entries, key, found) in [
        ("  debug: y\n  user: admin\n", "debug", "bool"),
        ("  port: 8080\n", "port", "number"),
    ] {
        let out = k.run(&["create", "-f", "-"], Some(&secret("bad", entries)));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "kubectl accepted {entries:?}");
        assert!(
            stderr.contains("Error from server (BadRequest)"),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!(
                "cannot unmarshal {found} into Go struct field Secret.stringData.{key} of type string"
            )),
            "{stderr}"
        );
        let get = k.run(&["get", "secret", "bad"], None);
        assert!(!get.status.success(), "a rejected Secret was stored");
    }
    let quoted = secret("good", "  debug: \"y\"\n  port: \"8080\"\n");
    let out = k.run(&["create", "-f", "-"], Some(&quoted));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let data = k.ok(&[
        "get",
        "secret",
        "good",
        "-o",
        "jsonpath={.data.debug} {.data.port}",
    ]);
    // base64 of "y" and of "8080".
    assert_eq!(data, "eQ== ODA4MA==");
}
