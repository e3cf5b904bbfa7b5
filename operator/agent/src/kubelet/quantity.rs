//! A container's `resources` as the runtime's cgroup limits; quantities are parsed by `berth_api::quantity`,
//! which the scheduler shares.

use k8s_openapi::api::core::v1::ResourceRequirements;

use crate::runtime::Resources;

pub use berth_api::quantity::parse_milli;

/// Whole units, rounded up (bytes of memory, cores of cpu).
fn whole(milli: i128) -> i128 {
    (milli + 999).div_euclid(1000)
}

/// Upstream's cgroup settings for a container's `resources`: memory limit in bytes, cpu shares from the cpu
/// request (or the limit when only that is set), a CFS quota per 100 ms period from the cpu limit, and the
/// node's Pod pids limit. A quantity that does not parse is an error naming it.
pub fn runtime_resources(
    requirements: Option<&ResourceRequirements>,
    pids_limit: Option<i64>,
) -> Result<Resources, String> {
    let get = |limits: bool, name: &str| -> Result<Option<i128>, String> {
        let map = requirements.and_then(|r| {
            if limits {
                r.limits.as_ref()
            } else {
                r.requests.as_ref()
            }
        });
        match map.and_then(|m| m.get(name)) {
            None => Ok(None),
            Some(q) => parse_milli(&q.0).map(Some).ok_or_else(|| {
                let which = if limits { "limits" } else { "requests" };
                format!("resources.{which}.{name}: {:?} is not a quantity", q.0)
            }),
        }
    };
    let memory_limit = get(true, "memory")?;
    let cpu_limit = get(true, "cpu")?;
    // Without a request, the API server defaults it to the limit.
    let cpu_request = get(false, "cpu")?.or(cpu_limit);
    const PERIOD: i128 = 100_000;
    Ok(Resources {
        memory_limit: memory_limit.map(|m| whole(m).clamp(0, i64::MAX as i128) as i64),
        // Upstream's MilliCPUToShares: at least 2.
        cpu_shares: Some(
            cpu_request
                .map(|m| (m * 1024 / 1000).max(2))
                .unwrap_or(2)
                .clamp(2, 262_144) as u64,
        ),
        // Upstream's MilliCPUToQuota: at least 1 ms.
        cpu_quota: cpu_limit.map(|m| (m * PERIOD / 1000).max(1000).min(i64::MAX as i128) as i64),
        cpu_period: cpu_limit.map(|_| PERIOD as u64),
        pids_limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use std::collections::BTreeMap;

    fn requirements(limits: &[(&str, &str)], requests: &[(&str, &str)]) -> ResourceRequirements {
        let map = |items: &[(&str, &str)]| {
            Some(
                items
                    .iter()
                    .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                    .collect::<BTreeMap<_, _>>(),
            )
        };
        ResourceRequirements {
            limits: map(limits),
            requests: map(requests),
            ..Default::default()
        }
    }

    #[test]
    fn resources_become_cgroup_limits() {
        let r = requirements(&[("memory", "32Mi"), ("cpu", "500m")], &[("cpu", "250m")]);
        let got = runtime_resources(Some(&r), Some(1024)).unwrap();
        assert_eq!(
            got,
            Resources {
                memory_limit: Some(32 * 1024 * 1024),
                cpu_shares: Some(256),
                cpu_quota: Some(50_000),
                cpu_period: Some(100_000),
                pids_limit: Some(1024),
            }
        );
        // Only a limit: the request defaults to it.
        let r = requirements(&[("cpu", "2")], &[]);
        assert_eq!(
            runtime_resources(Some(&r), None).unwrap().cpu_shares,
            Some(2048)
        );
        // Nothing: the minimum shares, no limits.
        let none = runtime_resources(None, None).unwrap();
        assert_eq!(none.cpu_shares, Some(2));
        assert_eq!(none.memory_limit, None);
        assert_eq!(none.cpu_quota, None);
        let bad = requirements(&[("memory", "lots")], &[]);
        assert!(
            runtime_resources(Some(&bad), None)
                .unwrap_err()
                .contains("limits.memory")
        );
    }
}
