//! Printers for the cluster-plumbing kinds: networking, RBAC bindings, storage, scheduling, coordination,
//! discovery, admission, certificates, flow control and API registration, as upstream prints them. Kinds that
//! upstream prints with its default columns (Roles, ClusterRoles, LimitRanges, CRDs) have no printer here.

use serde_json::{Value, json};

use super::cells::{age, condition, human_duration, int, items, label_selector, len, name, text};
use super::{AGE, Column, NAME, Printer};

pub fn printer(group: &str, resource: &str) -> Option<&'static Printer> {
    Some(match (group, resource) {
        ("coordination.k8s.io", "leases") => &LEASE,
        ("networking.k8s.io", "ingresses") => &INGRESS,
        ("networking.k8s.io", "ingressclasses") => &INGRESS_CLASS,
        ("networking.k8s.io", "networkpolicies") => &NETWORK_POLICY,
        ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings") => &BINDING,
        ("storage.k8s.io", "storageclasses") => &STORAGE_CLASS,
        ("storage.k8s.io", "csinodes") => &CSI_NODE,
        ("storage.k8s.io", "csidrivers") => &CSI_DRIVER,
        ("storage.k8s.io", "volumeattachments") => &VOLUME_ATTACHMENT,
        ("scheduling.k8s.io", "priorityclasses") => &PRIORITY_CLASS,
        ("node.k8s.io", "runtimeclasses") => &RUNTIME_CLASS,
        ("discovery.k8s.io", "endpointslices") => &ENDPOINT_SLICE,
        (
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations" | "validatingwebhookconfigurations",
        ) => &WEBHOOKS,
        ("certificates.k8s.io", "certificatesigningrequests") => &CSR,
        ("flowcontrol.apiserver.k8s.io", "flowschemas") => &FLOW_SCHEMA,
        ("flowcontrol.apiserver.k8s.io", "prioritylevelconfigurations") => &PRIORITY_LEVEL,
        ("apiregistration.k8s.io", "apiservices") => &API_SERVICE,
        _ => return None,
    })
}

const fn col(name: &'static str, description: &'static str) -> Column {
    Column::new(name, "string", description)
}

const fn int_col(name: &'static str, description: &'static str) -> Column {
    Column::new(name, "integer", description)
}

const fn bool_col(name: &'static str, description: &'static str) -> Column {
    Column::new(name, "boolean", description)
}

/// Up to `shown` entries, then `+ N more...`; `<unset>` when there are none.
fn first_of(list: &[String], shown: usize) -> String {
    let joined = list
        .iter()
        .take(shown)
        .cloned()
        .collect::<Vec<_>>()
        .join(",");
    if list.len() > shown {
        format!("{joined} + {} more...", list.len() - shown)
    } else if joined.is_empty() {
        "<unset>".to_owned()
    } else {
        joined
    }
}

static LEASE: Printer = Printer::new(
    &[NAME, col("Holder", "Who holds the lease."), AGE],
    |lease, now| {
        vec![
            json!(name(lease)),
            json!(text(&lease["spec"]["holderIdentity"])),
            json!(age(lease, now)),
        ]
    },
);

static INGRESS: Printer = Printer::new(
    &[
        NAME,
        col("Class", "The ingress class."),
        col("Hosts", "The hosts the rules match."),
        col("Address", "The load balancer's addresses."),
        col("Ports", "80, and 443 with TLS."),
        AGE,
    ],
    |ing, now| {
        let spec = &ing["spec"];
        let rules = items(&spec["rules"]);
        let hosts: Vec<&str> = rules
            .iter()
            .map(|r| text(&r["host"]))
            .filter(|h| !h.is_empty())
            .collect();
        let shown = hosts.iter().take(3).copied().collect::<Vec<_>>().join(",");
        let hosts = if rules.len() > 3 {
            format!("{shown} + {} more...", rules.len() - 3)
        } else if shown.is_empty() {
            "*".to_owned()
        } else {
            shown
        };
        let mut address: Vec<&str> = Vec::new();
        for i in items(&ing["status"]["loadBalancer"]["ingress"]) {
            let a = [text(&i["ip"]), text(&i["hostname"])]
                .into_iter()
                .find(|a| !a.is_empty());
            if let Some(a) = a
                && !address.contains(&a)
            {
                address.push(a);
            }
        }
        let ports = if items(&spec["tls"]).is_empty() {
            "80"
        } else {
            "80, 443"
        };
        vec![
            json!(name(ing)),
            json!(spec["ingressClassName"].as_str().unwrap_or("<none>")),
            json!(hosts),
            json!(address.join(",")),
            json!(ports),
            json!(age(ing, now)),
        ]
    },
);

static INGRESS_CLASS: Printer = Printer::new(
    &[
        NAME,
        col("Controller", "The controller that implements the class."),
        col("Parameters", "The class's parameters object."),
        AGE,
    ],
    |class, now| {
        let params = &class["spec"]["parameters"];
        let parameters = if params.is_object() {
            let kind = match params["apiGroup"].as_str() {
                Some(group) => format!("{}.{group}", text(&params["kind"])),
                None => text(&params["kind"]).to_owned(),
            };
            format!("{kind}/{}", text(&params["name"]))
        } else {
            "<none>".to_owned()
        };
        vec![
            json!(name(class)),
            json!(text(&class["spec"]["controller"])),
            json!(parameters),
            json!(age(class, now)),
        ]
    },
);

static NETWORK_POLICY: Printer = Printer::new(
    &[
        NAME,
        col("Pod-Selector", "The pods the policy applies to."),
        AGE,
    ],
    |np, now| {
        vec![
            json!(name(np)),
            json!(label_selector(&np["spec"]["podSelector"])),
            json!(age(np, now)),
        ]
    },
);

static BINDING: Printer = Printer::new(
    &[
        NAME,
        col("Role", "The bound role."),
        AGE,
        col("Users", "Users in the binding.").wide(),
        col("Groups", "Groups in the binding.").wide(),
        col("ServiceAccounts", "Service accounts in the binding.").wide(),
    ],
    |binding, now| {
        let role = &binding["roleRef"];
        let (mut users, mut groups, mut accounts) = (Vec::new(), Vec::new(), Vec::new());
        for subject in items(&binding["subjects"]) {
            match text(&subject["kind"]) {
                "User" => users.push(text(&subject["name"]).to_owned()),
                "Group" => groups.push(text(&subject["name"]).to_owned()),
                "ServiceAccount" => accounts.push(format!(
                    "{}/{}",
                    text(&subject["namespace"]),
                    text(&subject["name"])
                )),
                _ => {}
            }
        }
        vec![
            json!(name(binding)),
            json!(format!("{}/{}", text(&role["kind"]), text(&role["name"]))),
            json!(age(binding, now)),
            json!(users.join(", ")),
            json!(groups.join(", ")),
            json!(accounts.join(", ")),
        ]
    },
);

static STORAGE_CLASS: Printer = Printer::new(
    &[
        NAME,
        col("Provisioner", "What provisions the volumes."),
        col(
            "ReclaimPolicy",
            "What happens to a volume when its claim goes.",
        ),
        col("VolumeBindingMode", "When volumes are bound."),
        col("AllowVolumeExpansion", "Whether claims may grow."),
        AGE,
    ],
    |sc, now| {
        let annotations = &sc["metadata"]["annotations"];
        let default = [
            "storageclass.kubernetes.io/is-default-class",
            "storageclass.beta.kubernetes.io/is-default-class",
        ]
        .iter()
        .any(|key| annotations[*key] == "true");
        let name = if default {
            format!("{} (default)", name(sc))
        } else {
            name(sc).to_owned()
        };
        vec![
            json!(name),
            json!(text(&sc["provisioner"])),
            json!(sc["reclaimPolicy"].as_str().unwrap_or("Delete")),
            json!(sc["volumeBindingMode"].as_str().unwrap_or("Immediate")),
            json!(sc["allowVolumeExpansion"] == true),
            json!(age(sc, now)),
        ]
    },
);

static CSI_NODE: Printer = Printer::new(
    &[NAME, int_col("Drivers", "CSI drivers on the node."), AGE],
    |node, now| {
        vec![
            json!(name(node)),
            json!(len(&node["spec"]["drivers"])),
            json!(age(node, now)),
        ]
    },
);

static CSI_DRIVER: Printer = Printer::new(
    &[
        NAME,
        bool_col("AttachRequired", "Whether volumes need attaching."),
        bool_col("PodInfoOnMount", "Whether mounts get pod information."),
        bool_col("StorageCapacity", "Whether capacity is reported."),
        col("TokenRequests", "Audiences of requested tokens."),
        bool_col("RequiresRepublish", "Whether volumes are remounted."),
        col("Modes", "Volume lifecycle modes."),
        AGE,
    ],
    |driver, now| {
        let spec = &driver["spec"];
        let tokens = match spec["tokenRequests"].as_array() {
            None => "<unset>".to_owned(),
            Some(list) => list
                .iter()
                .map(|t| text(&t["audience"]))
                .collect::<Vec<_>>()
                .join(","),
        };
        let modes: Vec<&str> = items(&spec["volumeLifecycleModes"])
            .iter()
            .map(text)
            .collect();
        vec![
            json!(name(driver)),
            json!(spec["attachRequired"] != false),
            json!(spec["podInfoOnMount"] == true),
            json!(spec["storageCapacity"] == true),
            json!(tokens),
            json!(spec["requiresRepublish"] == true),
            json!(if modes.is_empty() {
                "<none>".to_owned()
            } else {
                modes.join(",")
            }),
            json!(age(driver, now)),
        ]
    },
);

static VOLUME_ATTACHMENT: Printer = Printer::new(
    &[
        NAME,
        Column {
            format: "name",
            ..col("Attacher", "The attaching driver.")
        },
        col("PV", "The attached volume."),
        col("Node", "The node it is attached to."),
        bool_col("Attached", "Whether it is attached."),
        AGE,
    ],
    |va, now| {
        let spec = &va["spec"];
        vec![
            json!(name(va)),
            json!(text(&spec["attacher"])),
            json!(text(&spec["source"]["persistentVolumeName"])),
            json!(text(&spec["nodeName"])),
            json!(va["status"]["attached"] == true),
            json!(age(va, now)),
        ]
    },
);

static PRIORITY_CLASS: Printer = Printer::new(
    &[
        NAME,
        int_col("Value", "The priority."),
        bool_col("Global-Default", "Whether pods get it by default."),
        AGE,
        col("PreemptionPolicy", "Whether its pods preempt others."),
    ],
    |pc, now| {
        vec![
            json!(name(pc)),
            json!(int(&pc["value"])),
            json!(pc["globalDefault"] == true),
            json!(age(pc, now)),
            json!(
                pc["preemptionPolicy"]
                    .as_str()
                    .unwrap_or("PreemptLowerPriority")
            ),
        ]
    },
);

static RUNTIME_CLASS: Printer = Printer::new(
    &[NAME, col("Handler", "The runtime handler."), AGE],
    |rc, now| {
        vec![
            json!(name(rc)),
            json!(text(&rc["handler"])),
            json!(age(rc, now)),
        ]
    },
);

static ENDPOINT_SLICE: Printer = Printer::new(
    &[
        NAME,
        col("AddressType", "IPv4, IPv6 or FQDN."),
        col("Ports", "Up to three ports."),
        col("Endpoints", "Up to three addresses."),
        AGE,
    ],
    |slice, now| {
        let ports: Vec<String> = items(&slice["ports"])
            .iter()
            .map(|p| match (p["port"].as_i64(), p["name"].as_str()) {
                (Some(port), _) => port.to_string(),
                (None, Some(name)) => name.to_owned(),
                (None, None) => "*".to_owned(),
            })
            .collect();
        let addresses: Vec<String> = items(&slice["endpoints"])
            .iter()
            .flat_map(|e| items(&e["addresses"]).iter().map(|a| text(a).to_owned()))
            .collect();
        vec![
            json!(name(slice)),
            json!(text(&slice["addressType"])),
            json!(first_of(&ports, 3)),
            json!(first_of(&addresses, 3)),
            json!(age(slice, now)),
        ]
    },
);

static WEBHOOKS: Printer = Printer::new(
    &[NAME, int_col("Webhooks", "How many webhooks it has."), AGE],
    |config, now| {
        vec![
            json!(name(config)),
            json!(len(&config["webhooks"])),
            json!(age(config, now)),
        ]
    },
);

static CSR: Printer = Printer::new(
    &[
        NAME,
        AGE,
        col("SignerName", "Who is asked to sign."),
        col("Requestor", "Who asked."),
        col("RequestedDuration", "How long the certificate should last."),
        col("Condition", "Pending, Approved or Denied; Failed; Issued."),
    ],
    |csr, now| {
        let spec = &csr["spec"];
        let status = &csr["status"];
        let has = |kind: &str| condition(&status["conditions"], kind).is_some();
        let mut state = if has("Denied") {
            "Denied".to_owned()
        } else if has("Approved") {
            "Approved".to_owned()
        } else {
            "Pending".to_owned()
        };
        if has("Failed") {
            state.push_str(",Failed");
        }
        if !text(&status["certificate"]).is_empty() {
            state.push_str(",Issued");
        }
        let duration = match spec["expirationSeconds"].as_i64() {
            Some(s) => human_duration(jiff::SignedDuration::from_secs(s)),
            None => "<none>".to_owned(),
        };
        vec![
            json!(name(csr)),
            json!(age(csr, now)),
            json!(spec["signerName"].as_str().unwrap_or("<none>")),
            json!(text(&spec["username"])),
            json!(duration),
            json!(state),
        ]
    },
);

static FLOW_SCHEMA: Printer = Printer::new(
    &[
        NAME,
        col("PriorityLevel", "The priority level it sends requests to."),
        col("MatchingPrecedence", "Lower matches first."),
        col("DistinguisherMethod", "How flows are told apart."),
        AGE,
        col("MissingPL", "Whether the priority level is missing."),
    ],
    |fs, now| {
        let spec = &fs["spec"];
        let dangling =
            condition(&fs["status"]["conditions"], "Dangling").map_or("?", |c| text(&c["status"]));
        vec![
            json!(name(fs)),
            json!(text(&spec["priorityLevelConfiguration"]["name"])),
            json!(int(&spec["matchingPrecedence"])),
            json!(
                spec["distinguisherMethod"]["type"]
                    .as_str()
                    .unwrap_or("<none>")
            ),
            json!(age(fs, now)),
            json!(dangling),
        ]
    },
);

static PRIORITY_LEVEL: Printer = Printer::new(
    &[
        NAME,
        col("Type", "Limited or Exempt."),
        col("NominalConcurrencyShares", "Its share of the concurrency."),
        col("Queues", "Queues per priority level."),
        col("HandSize", "Queues a flow may use."),
        col("QueueLengthLimit", "Requests per queue."),
        AGE,
    ],
    |pl, now| {
        let limited = &pl["spec"]["limited"];
        let queuing = &limited["limitResponse"]["queuing"];
        let or_none = |v: &Value| {
            if v.is_null() {
                json!("<none>")
            } else {
                v.clone()
            }
        };
        let (shares, queues, hand, length) = if limited.is_object() {
            (
                or_none(&limited["nominalConcurrencyShares"]),
                or_none(&queuing["queues"]),
                or_none(&queuing["handSize"]),
                or_none(&queuing["queueLengthLimit"]),
            )
        } else {
            let none = json!("<none>");
            (none.clone(), none.clone(), none.clone(), none)
        };
        vec![
            json!(name(pl)),
            json!(text(&pl["spec"]["type"])),
            shares,
            queues,
            hand,
            length,
            json!(age(pl, now)),
        ]
    },
);

static API_SERVICE: Printer = Printer::new(
    &[
        NAME,
        col("Service", "The service that serves the API, or Local."),
        col("Available", "Whether the API is available."),
        AGE,
    ],
    |api, now| {
        let service = &api["spec"]["service"];
        let service = if service.is_object() {
            format!("{}/{}", text(&service["namespace"]), text(&service["name"]))
        } else {
            "Local".to_owned()
        };
        let available = match condition(&api["status"]["conditions"], "Available") {
            None => "Unknown".to_owned(),
            Some(c) if c["status"] == "True" || text(&c["reason"]).is_empty() => {
                text(&c["status"]).to_owned()
            }
            Some(c) => format!("{} ({})", text(&c["status"]), text(&c["reason"])),
        };
        vec![
            json!(name(api)),
            json!(service),
            json!(available),
            json!(age(api, now)),
        ]
    },
);

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;

    fn cells(printer: &Printer, object: Value) -> Vec<Value> {
        let cells = (printer.cells)(&object, Timestamp::now());
        assert_eq!(cells.len(), printer.columns.len(), "{cells:?}");
        cells
    }

    #[test]
    fn leases_show_their_holder() {
        let lease =
            json!({"metadata": {"name": "berth-controller"}, "spec": {"holderIdentity": "pod-1"}});
        assert_eq!(cells(&LEASE, lease)[1], "pod-1");
    }

    #[test]
    fn bindings_list_subjects_by_kind() {
        let rb = json!({"metadata": {"name": "b"}, "roleRef": {"kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "User", "name": "ann"}, {"kind": "ServiceAccount", "namespace": "ns", "name": "sa"},
                         {"kind": "Group", "name": "devs"}]});
        let c = cells(&BINDING, rb);
        assert_eq!(c[1], "ClusterRole/view");
        assert_eq!(c[3..], [json!("ann"), json!("devs"), json!("ns/sa")]);
    }

    #[test]
    fn storage_classes_mark_the_default_and_fill_defaults() {
        let sc = json!({"metadata": {"name": "local", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "berth.dev/local"});
        let c = cells(&STORAGE_CLASS, sc);
        assert_eq!(
            c[..5],
            [
                json!("local (default)"),
                json!("berth.dev/local"),
                json!("Delete"),
                json!("Immediate"),
                json!(false)
            ]
        );
    }

    #[test]
    fn ingresses_and_slices_summarise_lists() {
        let ing = json!({"metadata": {"name": "i"}, "spec": {"rules": [{"host": "a.test"}, {}], "tls": [{}]}});
        let c = cells(&INGRESS, ing);
        assert_eq!(
            c[1..5],
            [
                json!("<none>"),
                json!("a.test"),
                json!(""),
                json!("80, 443")
            ]
        );
        let slice = json!({"metadata": {"name": "s"}, "addressType": "IPv4", "ports": [{"port": 80}, {"name": "http"}],
            "endpoints": [{"addresses": ["10.0.0.1", "10.0.0.2"]}, {"addresses": ["10.0.0.3", "10.0.0.4"]}]});
        let c = cells(&ENDPOINT_SLICE, slice);
        assert_eq!(
            c[2..4],
            [
                json!("80,http"),
                json!("10.0.0.1,10.0.0.2,10.0.0.3 + 1 more...")
            ]
        );
    }

    #[test]
    fn api_services_show_availability_with_reason() {
        let api = json!({"metadata": {"name": "v1.berth.dev"}, "spec": {},
            "status": {"conditions": [{"type": "Available", "status": "False", "reason": "MissingEndpoints"}]}});
        let c = cells(&API_SERVICE, api);
        assert_eq!(c[1..3], [json!("Local"), json!("False (MissingEndpoints)")]);
    }
}
