//! Turns a [`ContainerConfig`] into the OCI runtime spec libcontainer runs: runc's default mounts, masked and
//! read-only paths, Docker's default capabilities, the namespaces of a Pod container, and the cgroup limits.
//! Pure data: everything here is testable without root, for cgroup v1 and v2 alike.

use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;

use libcontainer::oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder,
    LinuxMemoryBuilder, LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxPidsBuilder, LinuxResourcesBuilder, MountBuilder, ProcessBuilder, RootBuilder, Spec,
    SpecBuilder, UserBuilder, get_default_maskedpaths, get_default_mounts,
    get_default_readonly_paths,
};

use super::Error;
use super::cgroups::Version;
use super::config::{ContainerConfig, DEFAULT_PATH};

/// Docker's default capability set (moby `oci/caps/defaults.go`).
pub const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::AuditWrite,
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::Kill,
    Capability::Mknod,
    Capability::NetBindService,
    Capability::NetRaw,
    Capability::Setfcap,
    Capability::Setgid,
    Capability::Setpcap,
    Capability::Setuid,
    Capability::SysChroot,
];

/// The CFS period when a quota comes without one (the kernel's and Kubernetes' default).
const DEFAULT_CPU_PERIOD: u64 = 100_000;

/// Builds the spec for `config`, with `rootfs` as the root and its cgroup at `cgroups_path`.
pub fn build(
    config: &ContainerConfig,
    rootfs: &Path,
    cgroups_path: &Path,
    cgroup_version: Version,
) -> Result<Spec, Error> {
    let spec_error = |err: libcontainer::oci_spec::OciSpecError| Error::InvalidConfig {
        id: config.id.clone(),
        reason: err.to_string(),
    };
    let security = &config.security;

    let mut env: Vec<String> = config.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if !config.env.iter().any(|(k, _)| k == "PATH") {
        env.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    let user = UserBuilder::default()
        .uid(config.user.uid)
        .gid(config.user.gid)
        .additional_gids(config.user.additional_gids.clone())
        .build()
        .map_err(spec_error)?;
    let caps = capabilities(config, cgroup_version)?;
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()
        .map_err(spec_error)?;
    let cwd = config.cwd.clone().filter(|c| !c.as_os_str().is_empty());
    let process = ProcessBuilder::default()
        .terminal(config.tty)
        .user(user)
        .args(config.args.clone())
        .env(env)
        .cwd(cwd.unwrap_or_else(|| "/".into()))
        .capabilities(capabilities)
        // The seccomp profile is installed after the capabilities are dropped; the kernel allows that only
        // with no_new_privs (see `Security::seccomp`).
        .no_new_privileges(security.no_new_privileges || security.seccomp)
        // No rlimits: without CAP_SYS_RESOURCE nothing may be raised above the current hard limit, so the
        // container inherits the shim's.
        .rlimits(Vec::new())
        .build()
        .map_err(spec_error)?;

    let mut mounts = get_default_mounts();
    for mount in &config.mounts {
        let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
        if mount.read_only {
            options.push("ro".into());
        }
        mounts.push(
            MountBuilder::default()
                .destination(mount.destination.clone())
                .typ("bind")
                .source(mount.source.clone())
                .options(options)
                .build()
                .map_err(spec_error)?,
        );
    }

    let linux = LinuxBuilder::default()
        .namespaces(namespaces(config, cgroup_version).map_err(spec_error)?)
        .resources(resources(config).map_err(spec_error)?)
        .cgroups_path(cgroups_path.to_path_buf())
        .masked_paths(masked_paths())
        .readonly_paths(readonly_paths(cgroup_version))
        .build()
        .map_err(spec_error)?;

    SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path(rootfs.to_path_buf())
                .readonly(security.read_only_rootfs)
                .build()
                .map_err(spec_error)?,
        )
        .hostname(config.hostname.clone().unwrap_or_else(|| config.id.clone()))
        .process(process)
        .mounts(mounts)
        .linux(linux)
        .build()
        .map_err(spec_error)
}

/// Docker's default set with the config's drops and adds applied. On cgroup v2 CAP_MKNOD is left out of the
/// default set: libcontainer enforces the device allowlist there only with its libbpf feature, which berth
/// does not build, so a container that could `mknod` could open any host device.
pub fn capabilities(
    config: &ContainerConfig,
    cgroup_version: Version,
) -> Result<HashSet<Capability>, Error> {
    let security = &config.security;
    let parse = |name: &String| -> Result<Capability, Error> {
        let upper = name.to_ascii_uppercase();
        let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
        Capability::from_str(bare).map_err(|_| Error::InvalidConfig {
            id: config.id.clone(),
            reason: format!("unknown capability {name:?}"),
        })
    };
    let is_all = |name: &String| name.eq_ignore_ascii_case("ALL");
    let mut caps: HashSet<Capability> = if security.capabilities_drop.iter().any(is_all) {
        HashSet::new()
    } else {
        DEFAULT_CAPABILITIES
            .into_iter()
            .filter(|c| cgroup_version == Version::V1 || *c != Capability::Mknod)
            .collect()
    };
    for name in security.capabilities_drop.iter().filter(|n| !is_all(n)) {
        caps.remove(&parse(name)?);
    }
    for name in &security.capabilities_add {
        if is_all(name) {
            return Err(Error::InvalidConfig {
                id: config.id.clone(),
                reason: "capabilities.add: ALL (privileged containers) is not supported".into(),
            });
        }
        caps.insert(parse(name)?);
    }
    Ok(caps)
}

/// A Pod container's namespaces: its own pid, ipc, uts and mount namespaces, the Pod's network namespace, and
/// on cgroup v2 its own cgroup namespace (Docker's default there).
fn namespaces(
    config: &ContainerConfig,
    cgroup_version: Version,
) -> Result<Vec<LinuxNamespace>, libcontainer::oci_spec::OciSpecError> {
    let mut types = vec![
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
    ];
    if cgroup_version == Version::V2 {
        types.push(LinuxNamespaceType::Cgroup);
    }
    let mut namespaces = types
        .into_iter()
        .map(|typ| LinuxNamespaceBuilder::default().typ(typ).build())
        .collect::<Result<Vec<_>, _>>()?;
    let mut network = LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::Network);
    if let Some(path) = &config.netns {
        network = network.path(path.clone());
    }
    namespaces.push(network.build()?);
    Ok(namespaces)
}

fn resources(
    config: &ContainerConfig,
) -> Result<libcontainer::oci_spec::runtime::LinuxResources, libcontainer::oci_spec::OciSpecError> {
    let limits = &config.resources;
    // Deny every device; libcgroups then allows the default ones (null, zero, full, tty, urandom, random, ptmx).
    let mut resources = LinuxResourcesBuilder::default().devices(vec![
        LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()?,
    ]);
    if let Some(limit) = limits.memory_limit {
        resources = resources.memory(LinuxMemoryBuilder::default().limit(limit).build()?);
    }
    if limits.cpu_shares.is_some() || limits.cpu_quota.is_some() {
        let mut cpu = LinuxCpuBuilder::default();
        if let Some(shares) = limits.cpu_shares {
            cpu = cpu.shares(shares);
        }
        if let Some(quota) = limits.cpu_quota {
            cpu = cpu
                .quota(quota)
                .period(limits.cpu_period.unwrap_or(DEFAULT_CPU_PERIOD));
        }
        resources = resources.cpu(cpu.build()?);
    }
    if let Some(limit) = limits.pids_limit {
        resources = resources.pids(LinuxPidsBuilder::default().limit(limit).build()?);
    }
    resources.build()
}

/// runc's default read-only paths, and the container's view of its cgroups. libcontainer mounts the cgroup v1
/// hierarchies read-write whatever the spec says; a root container could then raise its own limits. Paths
/// that do not exist are skipped by libcontainer.
fn readonly_paths(cgroup_version: Version) -> Vec<String> {
    let mut paths = get_default_readonly_paths();
    paths.push("/sys/fs/cgroup".into());
    if cgroup_version == Version::V1 {
        const V1_HIERARCHIES: [&str; 17] = [
            "blkio",
            "cpu",
            "cpuacct",
            "cpu,cpuacct",
            "cpuset",
            "devices",
            "freezer",
            "hugetlb",
            "memory",
            "misc",
            "net_cls",
            "net_prio",
            "net_cls,net_prio",
            "perf_event",
            "pids",
            "rdma",
            "systemd",
        ];
        paths.extend(V1_HIERARCHIES.iter().map(|h| format!("/sys/fs/cgroup/{h}")));
    }
    paths
}

/// runc's default masked paths, including `/sys/devices/virtual/powercap` (CVE-2020-8694).
fn masked_paths() -> Vec<String> {
    let mut paths = get_default_maskedpaths();
    paths.push("/sys/devices/virtual/powercap".into());
    paths
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::config::{Mount as BindMount, Resources};
    use libcontainer::oci_spec::runtime::Mount;

    fn config() -> ContainerConfig {
        let mut config = ContainerConfig::new("web-1", vec!["/layers/a".into()], vec!["sh".into()]);
        config.resources = Resources {
            memory_limit: Some(32 << 20),
            cpu_shares: Some(512),
            cpu_quota: Some(50_000),
            cpu_period: None,
            pids_limit: Some(64),
        };
        config
    }

    fn spec(config: &ContainerConfig, version: Version) -> Spec {
        build(
            config,
            Path::new("/state/web-1/rootfs"),
            Path::new("/berth/web-1"),
            version,
        )
        .unwrap()
    }

    fn namespace_types(spec: &Spec) -> Vec<LinuxNamespaceType> {
        let linux = spec.linux().as_ref().unwrap();
        linux
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .map(|n| n.typ())
            .collect()
    }

    #[test]
    fn resources_are_the_same_on_v1_and_v2() {
        for version in [Version::V1, Version::V2] {
            let spec = spec(&config(), version);
            let linux = spec.linux().as_ref().unwrap();
            assert_eq!(
                linux.cgroups_path().as_deref(),
                Some(Path::new("/berth/web-1"))
            );
            let resources = linux.resources().as_ref().unwrap();
            assert_eq!(resources.memory().as_ref().unwrap().limit(), Some(32 << 20));
            let cpu = resources.cpu().as_ref().unwrap();
            assert_eq!(
                (cpu.shares(), cpu.quota(), cpu.period()),
                (Some(512), Some(50_000), Some(100_000))
            );
            assert_eq!(resources.pids().as_ref().unwrap().limit(), 64);
            let devices = resources.devices().as_ref().unwrap();
            assert!(!devices[0].allow() && devices[0].access().as_deref() == Some("rwm"));
        }
    }

    #[test]
    fn a_container_gets_its_own_namespaces_and_joins_the_pods_network() {
        let mut config = config();
        config.netns = Some("/run/berth/netns/pod-a".into());
        let v1 = spec(&config, Version::V1);
        let types = namespace_types(&v1);
        for typ in [
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Mount,
            LinuxNamespaceType::Network,
        ] {
            assert!(types.contains(&typ), "{typ:?} missing");
        }
        assert!(!types.contains(&LinuxNamespaceType::Cgroup));
        assert!(!types.contains(&LinuxNamespaceType::User));
        let net = v1
            .linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .find(|n| n.typ() == LinuxNamespaceType::Network)
            .unwrap()
            .clone();
        assert_eq!(
            net.path().as_deref(),
            Some(Path::new("/run/berth/netns/pod-a"))
        );
        assert!(namespace_types(&spec(&config, Version::V2)).contains(&LinuxNamespaceType::Cgroup));
    }

    #[test]
    fn the_default_capabilities_are_dockers() {
        let caps = capabilities(&config(), Version::V1).unwrap();
        assert_eq!(caps, DEFAULT_CAPABILITIES.into_iter().collect());
        let process = spec(&config(), Version::V1).process().clone().unwrap();
        let set = process.capabilities().as_ref().unwrap();
        assert_eq!(set.bounding().as_ref().unwrap(), &caps);
        assert!(set.inheritable().as_ref().unwrap().is_empty());
        assert!(set.ambient().as_ref().unwrap().is_empty());
    }

    #[test]
    fn cgroup_v2_leaves_mknod_out_because_devices_are_not_filtered_there() {
        let caps = capabilities(&config(), Version::V2).unwrap();
        assert!(!caps.contains(&Capability::Mknod));
        assert_eq!(caps.len(), DEFAULT_CAPABILITIES.len() - 1);
    }

    #[test]
    fn capabilities_are_added_and_dropped_by_kubernetes_names() {
        let mut config = config();
        config.security.capabilities_drop = vec!["NET_RAW".into(), "CAP_CHOWN".into()];
        config.security.capabilities_add = vec!["NET_ADMIN".into()];
        let caps = capabilities(&config, Version::V1).unwrap();
        assert!(!caps.contains(&Capability::NetRaw) && !caps.contains(&Capability::Chown));
        assert!(caps.contains(&Capability::NetAdmin));
        config.security.capabilities_drop = vec!["ALL".into()];
        assert_eq!(
            capabilities(&config, Version::V1).unwrap(),
            [Capability::NetAdmin].into()
        );
        config.security.capabilities_add = vec!["NOT_A_CAP".into()];
        assert!(capabilities(&config, Version::V1).is_err());
    }

    #[test]
    fn process_fields_follow_the_config() {
        let mut config = config();
        config.user.uid = 1000;
        config.user.gid = 2000;
        config.env = vec![("A".into(), "1".into())];
        config.security.read_only_rootfs = true;
        config.security.seccomp = false;
        config.security.no_new_privileges = false;
        config.hostname = Some("db".into());
        let spec = spec(&config, Version::V1);
        let process = spec.process().as_ref().unwrap();
        assert_eq!((process.user().uid(), process.user().gid()), (1000, 2000));
        assert_eq!(
            process.env().as_ref().unwrap()[0],
            format!("PATH={DEFAULT_PATH}")
        );
        assert_eq!(process.env().as_ref().unwrap()[1], "A=1");
        assert_eq!(process.cwd(), Path::new("/"));
        assert_eq!(process.no_new_privileges(), Some(false));
        assert!(process.rlimits().as_ref().is_none_or(|r| r.is_empty()));
        assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
        assert_eq!(spec.hostname().as_deref(), Some("db"));
        config.security.seccomp = true;
        assert_eq!(
            super::build(&config, Path::new("/r"), Path::new("/c"), Version::V1)
                .unwrap()
                .process()
                .as_ref()
                .unwrap()
                .no_new_privileges(),
            Some(true)
        );
    }

    #[test]
    fn proc_and_sys_are_masked_as_runc_does() {
        let v1 = spec(&config(), Version::V1);
        let linux = v1.linux().as_ref().unwrap();
        let masked = linux.masked_paths().as_ref().unwrap();
        for path in [
            "/proc/kcore",
            "/proc/keys",
            "/sys/firmware",
            "/sys/devices/virtual/powercap",
        ] {
            assert!(masked.iter().any(|p| p == path), "{path} not masked");
        }
        let readonly = linux.readonly_paths().as_ref().unwrap();
        assert!(readonly.iter().any(|p| p == "/proc/sys"));
        assert!(readonly.iter().any(|p| p == "/proc/sysrq-trigger"));
        assert!(readonly.iter().any(|p| p == "/sys/fs/cgroup/memory"));
        let v2 = spec(&config(), Version::V2);
        let readonly = v2
            .linux()
            .as_ref()
            .unwrap()
            .readonly_paths()
            .clone()
            .unwrap();
        assert!(readonly.iter().any(|p| p == "/sys/fs/cgroup"));
        assert!(!readonly.iter().any(|p| p == "/sys/fs/cgroup/memory"));
    }

    #[test]
    fn volumes_are_bind_mounted_with_read_only_honoured() {
        let mut config = config();
        config.mounts = vec![
            BindMount {
                source: "/data/a".into(),
                destination: "/a".into(),
                read_only: true,
            },
            BindMount {
                source: "/data/b".into(),
                destination: "/b".into(),
                read_only: false,
            },
        ];
        let spec = spec(&config, Version::V1);
        let mounts = spec.mounts().as_ref().unwrap();
        let find = |dest: &str| {
            mounts
                .iter()
                .find(|m| m.destination() == Path::new(dest))
                .unwrap()
        };
        let options = |m: &Mount| m.options().clone().unwrap();
        assert!(options(find("/a")).contains(&"ro".to_string()));
        assert!(!options(find("/b")).contains(&"ro".to_string()));
        assert_eq!(find("/a").typ().as_deref(), Some("bind"));
        assert!(mounts.iter().any(|m| m.destination() == Path::new("/proc")));
    }
}
