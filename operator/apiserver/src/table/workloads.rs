//! Printers for the workload kinds (apps, batch, autoscaling, policy), as upstream's printers show them.
//! Fields that upstream's defaulting always fills (replicas 1, suspend false) read as their default when absent.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::cells::{
    age, condition_true, containers, human_duration, int, items, label_selector, labels, len, name,
    or_none, since, text, timestamp,
};
use super::{AGE, Column, NAME, Printer};

pub fn printer(group: &str, resource: &str) -> Option<&'static Printer> {
    Some(match (group, resource) {
        ("apps", "deployments") => &DEPLOYMENT,
        ("apps", "replicasets") => &REPLICA_SET,
        ("apps", "statefulsets") => &STATEFUL_SET,
        ("apps", "daemonsets") => &DAEMON_SET,
        ("apps", "controllerrevisions") => &CONTROLLER_REVISION,
        ("batch", "jobs") => &JOB,
        ("batch", "cronjobs") => &CRON_JOB,
        ("autoscaling", "horizontalpodautoscalers") => &HPA,
        ("policy", "poddisruptionbudgets") => &PDB,
        _ => return None,
    })
}

const fn col(name: &'static str, description: &'static str) -> Column {
    Column::new(name, "string", description)
}

const fn int_col(name: &'static str, description: &'static str) -> Column {
    Column::new(name, "integer", description)
}

const CONTAINERS: Column = col("Containers", "The template's container names.").wide();
const IMAGES: Column = col("Images", "The template's container images.").wide();
const SELECTOR: Column = col("Selector", "The labels of the pods it controls.").wide();

/// `spec.replicas`, which upstream defaults to 1.
fn replicas(object: &Value) -> i64 {
    object["spec"]["replicas"].as_i64().unwrap_or(1)
}

fn template_containers(object: &Value) -> (String, String) {
    containers(&object["spec"]["template"]["spec"]["containers"])
}

static DEPLOYMENT: Printer = Printer::new(
    &[
        NAME,
        col("Ready", "Ready pods out of the desired number."),
        col("Up-to-date", "Pods running the latest template."),
        col("Available", "Pods available to serve."),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ],
    |d, now| {
        let status = &d["status"];
        let (names, images) = template_containers(d);
        let selector = match label_selector(&d["spec"]["selector"]).as_str() {
            "<none>" => String::new(),
            s => s.to_owned(),
        };
        vec![
            json!(name(d)),
            json!(format!("{}/{}", int(&status["readyReplicas"]), replicas(d))),
            json!(int(&status["updatedReplicas"])),
            json!(int(&status["availableReplicas"])),
            json!(age(d, now)),
            json!(names),
            json!(images),
            json!(selector),
        ]
    },
);

static REPLICA_SET: Printer = Printer::new(
    &[
        NAME,
        int_col("Desired", "How many pods are wanted."),
        int_col("Current", "How many pods exist."),
        int_col("Ready", "How many pods are ready."),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ],
    |rs, now| {
        let (names, images) = template_containers(rs);
        vec![
            json!(name(rs)),
            json!(replicas(rs)),
            json!(int(&rs["status"]["replicas"])),
            json!(int(&rs["status"]["readyReplicas"])),
            json!(age(rs, now)),
            json!(names),
            json!(images),
            json!(label_selector(&rs["spec"]["selector"])),
        ]
    },
);

static STATEFUL_SET: Printer = Printer::new(
    &[
        NAME,
        col("Ready", "Ready pods out of the desired number."),
        AGE,
        CONTAINERS,
        IMAGES,
    ],
    |sts, now| {
        let (names, images) = template_containers(sts);
        vec![
            json!(name(sts)),
            json!(format!(
                "{}/{}",
                int(&sts["status"]["readyReplicas"]),
                replicas(sts)
            )),
            json!(age(sts, now)),
            json!(names),
            json!(images),
        ]
    },
);

static DAEMON_SET: Printer = Printer::new(
    &[
        NAME,
        int_col("Desired", "Nodes that should run the pod."),
        int_col("Current", "Nodes running the pod."),
        int_col("Ready", "Nodes whose pod is ready."),
        int_col("Up-to-date", "Nodes running the latest template."),
        int_col("Available", "Nodes whose pod is available."),
        col("Node Selector", "The nodes the pods may run on."),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ],
    |ds, now| {
        let status = &ds["status"];
        let (names, images) = template_containers(ds);
        vec![
            json!(name(ds)),
            json!(int(&status["desiredNumberScheduled"])),
            json!(int(&status["currentNumberScheduled"])),
            json!(int(&status["numberReady"])),
            json!(int(&status["updatedNumberScheduled"])),
            json!(int(&status["numberAvailable"])),
            json!(labels(&ds["spec"]["template"]["spec"]["nodeSelector"])),
            json!(age(ds, now)),
            json!(names),
            json!(images),
            json!(label_selector(&ds["spec"]["selector"])),
        ]
    },
);

static CONTROLLER_REVISION: Printer = Printer::new(
    &[
        NAME,
        col("Controller", "The object that owns the revision."),
        col("Revision", "The revision number."),
        AGE,
    ],
    |cr, now| {
        let owner = items(&cr["metadata"]["ownerReferences"])
            .iter()
            .find(|o| o["controller"] == true);
        let controller = match owner {
            None => "<none>".to_owned(),
            Some(o) => {
                let group = text(&o["apiVersion"])
                    .rsplit_once('/')
                    .map(|(g, _)| g)
                    .unwrap_or_default();
                let kind = if group.is_empty() {
                    text(&o["kind"]).to_owned()
                } else {
                    format!("{}.{group}", text(&o["kind"]))
                };
                format!("{}/{}", kind.to_lowercase(), text(&o["name"]))
            }
        };
        vec![
            json!(name(cr)),
            json!(controller),
            json!(int(&cr["revision"])),
            json!(age(cr, now)),
        ]
    },
);

static JOB: Printer = Printer::new(
    &[
        NAME,
        col(
            "Status",
            "Running, Complete, Failed, Suspended or Terminating.",
        ),
        col("Completions", "Succeeded pods out of those wanted."),
        col("Duration", "How long the job ran."),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ],
    job,
);

fn job(job: &Value, now: Timestamp) -> Vec<Value> {
    let spec = &job["spec"];
    let status = &job["status"];
    let succeeded = int(&status["succeeded"]);
    let completions = match spec["completions"].as_i64() {
        Some(wanted) => format!("{succeeded}/{wanted}"),
        None => match spec["parallelism"].as_i64().unwrap_or(1) {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let duration = match (
        timestamp(&status["startTime"]),
        timestamp(&status["completionTime"]),
    ) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(now.duration_since(start)),
        (Some(start), Some(end)) => human_duration(end.duration_since(start)),
    };
    let conditions = &status["conditions"];
    let state = if condition_true(conditions, "Complete") {
        "Complete"
    } else if condition_true(conditions, "Failed") {
        "Failed"
    } else if job["metadata"]["deletionTimestamp"].is_string() {
        "Terminating"
    } else if condition_true(conditions, "Suspended") {
        "Suspended"
    } else if condition_true(conditions, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (names, images) = template_containers(job);
    vec![
        json!(name(job)),
        json!(state),
        json!(completions),
        json!(duration),
        json!(age(job, now)),
        json!(names),
        json!(images),
        json!(label_selector(&spec["selector"])),
    ]
}

static CRON_JOB: Printer = Printer::new(
    &[
        NAME,
        col("Schedule", "The cron schedule."),
        col("Timezone", "The time zone of the schedule."),
        Column::new("Suspend", "boolean", "Whether new runs are held back."),
        int_col("Active", "Jobs running now."),
        col("Last Schedule", "Time since the last run was scheduled."),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ],
    |cj, now| {
        let spec = &cj["spec"];
        let template = &spec["jobTemplate"]["spec"];
        let (names, images) = containers(&template["template"]["spec"]["containers"]);
        let last = &cj["status"]["lastScheduleTime"];
        vec![
            json!(name(cj)),
            json!(text(&spec["schedule"])),
            json!(or_none(text(&spec["timeZone"]))),
            json!(if spec["suspend"] == true {
                "True"
            } else {
                "False"
            }),
            json!(len(&cj["status"]["active"])),
            json!(if last.is_string() {
                since(last, now)
            } else {
                "<none>".to_owned()
            }),
            json!(age(cj, now)),
            json!(names),
            json!(images),
            json!(label_selector(&template["selector"])),
        ]
    },
);

static HPA: Printer = Printer::new(
    &[
        NAME,
        col("Reference", "The scaled object."),
        col("Targets", "Current and target values of the metrics."),
        col("MinPods", "The fewest replicas."),
        col("MaxPods", "The most replicas."),
        col("Replicas", "The current number of replicas."),
        AGE,
    ],
    |hpa, now| {
        let spec = &hpa["spec"];
        let target = &spec["scaleTargetRef"];
        vec![
            json!(name(hpa)),
            json!(format!(
                "{}/{}",
                text(&target["kind"]),
                text(&target["name"])
            )),
            json!(hpa_metrics(
                items(&spec["metrics"]),
                items(&hpa["status"]["currentMetrics"])
            )),
            json!(spec["minReplicas"].as_i64().unwrap_or(1).to_string()),
            json!(int(&spec["maxReplicas"])),
            json!(int(&hpa["status"]["currentReplicas"])),
            json!(age(hpa, now)),
        ]
    },
);

/// `cpu: 40%/80%, memory: <unknown>/1Gi + 1 more...`: two metrics at most, current over target.
fn hpa_metrics(specs: &[Value], statuses: &[Value]) -> String {
    const SHOWN: usize = 2;
    if specs.is_empty() {
        return "<none>".to_owned();
    }
    let list: Vec<String> = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let kind = text(&spec["type"]);
            let field = match kind {
                "Resource" => "resource",
                "ContainerResource" => "containerResource",
                "Pods" => "pods",
                "Object" => "object",
                "External" => "external",
                _ => return "<unknown type>".to_owned(),
            };
            let source = &spec[field];
            let target = &source["target"];
            let current = &statuses.get(i).map_or(&Value::Null, |s| &s[field])["current"];
            let known = |v: &Value| match v {
                Value::Null => "<unknown>".to_owned(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let prefix = match kind {
                "Resource" | "ContainerResource" => format!("{}: ", text(&source["name"])),
                _ => String::new(),
            };
            if kind == "Pods" || target["averageValue"].is_string() {
                let avg = if matches!(kind, "Object" | "External") {
                    " (avg)"
                } else {
                    ""
                };
                format!(
                    "{prefix}{}/{}{avg}",
                    known(&current["averageValue"]),
                    text(&target["averageValue"])
                )
            } else if matches!(kind, "Resource" | "ContainerResource") {
                let percent = |v: &Value| v.as_i64().map(|p| format!("{p}%"));
                format!(
                    "{prefix}{}/{}",
                    percent(&current["averageUtilization"])
                        .unwrap_or_else(|| "<unknown>".to_owned()),
                    percent(&target["averageUtilization"]).unwrap_or_else(|| "<auto>".to_owned())
                )
            } else {
                format!("{}/{}", known(&current["value"]), text(&target["value"]))
            }
        })
        .collect();
    let shown = list
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if list.len() > SHOWN {
        format!("{shown} + {} more...", list.len() - SHOWN)
    } else {
        shown
    }
}

static PDB: Printer = Printer::new(
    &[
        NAME,
        col("Min Available", "Pods that must stay available."),
        col("Max Unavailable", "Pods that may be unavailable."),
        int_col(
            "Allowed Disruptions",
            "Pods that may be disrupted right now.",
        ),
        AGE,
    ],
    |pdb, now| {
        let int_or_string = |v: &Value| match v {
            Value::Null => "N/A".to_owned(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        vec![
            json!(name(pdb)),
            json!(int_or_string(&pdb["spec"]["minAvailable"])),
            json!(int_or_string(&pdb["spec"]["maxUnavailable"])),
            json!(int(&pdb["status"]["disruptionsAllowed"])),
            json!(age(pdb, now)),
        ]
    },
);

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::SignedDuration;

    fn now() -> Timestamp {
        "2024-05-01T12:00:00Z".parse().unwrap()
    }

    fn ago(seconds: i64) -> String {
        (now() - SignedDuration::from_secs(seconds)).to_string()
    }

    fn cells(printer: &Printer, object: Value) -> Vec<Value> {
        let cells = (printer.cells)(&object, now());
        assert_eq!(cells.len(), printer.columns.len(), "{cells:?}");
        cells
    }

    #[test]
    fn deployments_show_ready_over_desired() {
        let d = json!({"metadata": {"name": "web"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"spec": {"containers": [{"name": "app", "image": "nginx"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        let c = cells(&DEPLOYMENT, d);
        assert_eq!(c[1..4], [json!("2/3"), json!(3), json!(2)]);
        assert_eq!(c[5..], [json!("app"), json!("nginx"), json!("app=web")]);
        assert_eq!(
            cells(&STATEFUL_SET, json!({"metadata": {"name": "db"}}))[1],
            "0/1"
        );
    }

    #[test]
    fn jobs_show_status_completions_and_duration() {
        let j = json!({"metadata": {"name": "migrate"}, "spec": {"completions": 1},
            "status": {"succeeded": 1, "startTime": ago(100), "completionTime": ago(40),
                       "conditions": [{"type": "Complete", "status": "True"}]}});
        let c = cells(&JOB, j);
        assert_eq!(c[1..4], [json!("Complete"), json!("1/1"), json!("60s")]);
        let running = json!({"metadata": {"name": "x"}, "spec": {"parallelism": 3}, "status": {}});
        let c = cells(&JOB, running);
        assert_eq!(c[1..4], [json!("Running"), json!("0/1 of 3"), json!("")]);
    }

    #[test]
    fn cron_jobs_show_schedule_and_last_run() {
        let cj = json!({"metadata": {"name": "nightly"}, "spec": {"schedule": "0 3 * * *"},
            "status": {"active": [{"name": "j"}], "lastScheduleTime": ago(3600)}});
        let c = cells(&CRON_JOB, cj);
        assert_eq!(
            c[1..6],
            [
                json!("0 3 * * *"),
                json!("<none>"),
                json!("False"),
                json!(1),
                json!("60m")
            ]
        );
    }

    #[test]
    fn hpa_targets_show_current_over_target() {
        let hpa = json!({"metadata": {"name": "web"}, "spec": {
        "scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 5,
        "metrics": [
            {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}},
            {"type": "Pods", "pods": {"target": {"averageValue": "1k"}}},
            {"type": "External", "external": {"target": {"value": "10"}}}
        ]}, "status": {"currentReplicas": 2, "currentMetrics": [
            {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 40}}}
        ]}});
        let c = cells(&HPA, hpa);
        assert_eq!(c[1], "Deployment/web");
        assert_eq!(c[2], "cpu: 40%/80%, <unknown>/1k + 1 more...");
        assert_eq!(c[3..6], [json!("1"), json!(5), json!(2)]);
    }

    #[test]
    fn pdbs_and_revisions() {
        let pdb = json!({"metadata": {"name": "p"}, "spec": {"minAvailable": 1}, "status": {"disruptionsAllowed": 0}});
        assert_eq!(cells(&PDB, pdb)[1..4], [json!("1"), json!("N/A"), json!(0)]);
        let cr = json!({"metadata": {"name": "web-1", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "controller": true}]}, "revision": 2});
        assert_eq!(
            cells(&CONTROLLER_REVISION, cr)[1..3],
            [json!("statefulset.apps/web"), json!(2)]
        );
    }
}
