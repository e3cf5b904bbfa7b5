//! Resource quantities (`500m`, `32Mi`, `1.5G`, `2e3`) as integer milli-units, and a container's
//! `resources` as the runtime's cgroup limits. Hand-written: no maintained crate parses the plain-string
//! `Quantity` of k8s-openapi 0.29, and the agent knows nothing of the control plane's crate.

use k8s_openapi::api::core::v1::ResourceRequirements;

use crate::runtime::Resources;

/// A quantity in thousandths of its unit, rounded up (upstream's `MilliValue`); `None` if it does not parse.
pub fn parse_milli(text: &str) -> Option<i128> {
    let text = text.trim();
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '+' | '-')))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(end);
    let (negative, digits) = match number.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, number.strip_prefix('+').unwrap_or(number)),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !all_digits(whole) || !all_digits(fraction) {
        return None;
    }
    let mantissa: i128 = format!("{whole}{fraction}").parse().ok()?;
    let (mul, div) = suffix_factor(suffix)?;
    let numerator = mantissa.checked_mul(mul)?.checked_mul(1000)?;
    let denominator = 10i128
        .checked_pow(u32::try_from(fraction.len()).ok()?)?
        .checked_mul(div)?;
    let value = (numerator + denominator - 1) / denominator;
    Some(if negative { -value } else { value })
}

/// A suffix as the fraction mul/div it multiplies by.
fn suffix_factor(suffix: &str) -> Option<(i128, i128)> {
    let binary = |power: u32| Some((1024i128.pow(power), 1));
    let decimal = |exp: i32| {
        if exp >= 0 {
            Some((10i128.pow(exp as u32), 1))
        } else {
            Some((1, 10i128.pow((-exp) as u32)))
        }
    };
    match suffix {
        "" => decimal(0),
        "Ki" => binary(1),
        "Mi" => binary(2),
        "Gi" => binary(3),
        "Ti" => binary(4),
        "Pi" => binary(5),
        "Ei" => binary(6),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        _ => {
            let exp: i32 = suffix.strip_prefix(['e', 'E'])?.parse().ok()?;
            (-18..=18).contains(&exp).then(|| decimal(exp))?
        }
    }
}

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

    #[test]
    fn quantities_parse_as_upstream() {
        let cases = [
            ("1", 1000),
            ("500m", 500),
            ("0.5", 500),
            ("1.5Gi", 1_610_612_736_000),
            ("32Mi", 33_554_432_000),
            ("1k", 1_000_000),
            ("2e3", 2_000_000),
            ("1n", 1),
            ("-1", -1000),
        ];
        for (text, milli) in cases {
            assert_eq!(parse_milli(text), Some(milli), "{text}");
        }
        for bad in ["", "Mi", "1.2.3", "12x", "1e99", "."] {
            assert_eq!(parse_milli(bad), None, "{bad}");
        }
    }

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
