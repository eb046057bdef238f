//! The OCI runtime spec a container runs with: containerd's default Linux
//! spec, hardened (no capabilities unless kept, `noNewPrivileges`, a seccomp
//! profile refusing the system calls containers have no business making),
//! with the image's and the plugin's settings and the cgroup limits.

use serde_json::{Value, json};

use super::image::RunConfig;
use crate::caps::process::spawn::{CAPABILITY_NAMES, capability_name};

/// The OCI spec type containerd expects in a container record.
pub const SPEC_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
/// The OCI process type of an exec.
pub const PROCESS_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";

/// System calls the default profile answers with EPERM: kernel modules,
/// keyrings, tracing, mounting, namespaces, clocks, reboot and the like.
const REFUSED_SYSCALLS: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fanotify_init",
    "get_kernel_syms",
    "get_mempolicy",
    "init_module",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "mount",
    "move_pages",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "perf_event_open",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "query_module",
    "quotactl",
    "reboot",
    "request_key",
    "set_mempolicy",
    "setns",
    "settimeofday",
    "stime",
    "swapoff",
    "swapon",
    "sysfs",
    "_sysctl",
    "umount",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vm86",
    "vm86old",
    "adjtimex",
    "syslog",
];

/// The capabilities in the daemon's own bounding set: what a privileged
/// container gets (more would be refused by the kernel).
fn daemon_capabilities() -> Vec<&'static str> {
    let bounding = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("CapBnd:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .unwrap_or(0);
    CAPABILITY_NAMES
        .iter()
        .enumerate()
        .filter(|(bit, _)| bounding & (1u64 << bit) != 0)
        .map(|(_, name)| *name)
        .collect()
}

/// A mount, resolved and checked.
pub struct SpecMount {
    pub tmpfs: bool,
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

/// Cgroup limits, resolved against the grant's maxima.
#[derive(Default, Clone, Copy)]
pub struct Limits {
    pub memory: Option<u64>,
    pub memory_swap: Option<u64>,
    pub cpu_shares: Option<u64>,
    pub cpu_quota: Option<u64>,
    pub cpu_period: Option<u64>,
    pub pids: Option<u64>,
}

/// Network namespace choice.
pub enum Network {
    /// A fresh namespace (loopback only), or the one at this path.
    Own(Option<String>),
    Host,
}

/// Everything the spec is made from.
pub struct SpecInput<'a> {
    pub image: &'a RunConfig,
    pub command: Option<&'a [String]>,
    pub args: Option<&'a [String]>,
    pub env: &'a [(String, String)],
    pub working_dir: Option<&'a str>,
    pub user: Option<&'a str>,
    pub hostname: &'a str,
    pub read_only_rootfs: bool,
    pub mounts: Vec<SpecMount>,
    pub network: Network,
    pub limits: Limits,
    pub capabilities: &'a [String],
    pub privileged: bool,
    pub cgroups_path: String,
}

/// The process's arguments: entrypoint and command, each replaceable.
pub fn arguments(
    image: &RunConfig,
    command: Option<&[String]>,
    args: Option<&[String]>,
) -> Vec<String> {
    let entrypoint = command
        .map(<[String]>::to_vec)
        .or_else(|| image.entrypoint.clone())
        .unwrap_or_default();
    // Docker's rule: replacing the entrypoint also drops the image's command.
    let rest = match (args, command) {
        (Some(args), _) => args.to_vec(),
        (None, Some(_)) => Vec::new(),
        (None, None) => image.cmd.clone().unwrap_or_default(),
    };
    entrypoint.into_iter().chain(rest).collect()
}

/// The image's environment with the plugin's on top.
pub fn environment(image: &RunConfig, env: &[(String, String)]) -> Vec<String> {
    let base = image.env.clone().unwrap_or_else(|| {
        vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()]
    });
    override_env(base, env)
}

/// `KEY=value` entries with `env` set on top (replacing the same keys).
fn override_env(mut merged: Vec<String>, env: &[(String, String)]) -> Vec<String> {
    for (key, value) in env {
        let prefix = format!("{key}=");
        merged.retain(|entry| !entry.starts_with(&prefix));
        merged.push(format!("{key}={value}"));
    }
    merged
}

/// `uid[:gid]` given as numbers (names are looked up in the image by the caller).
pub fn numeric_user(user: &str) -> Result<(u32, u32), String> {
    let (uid, gid) = match user.split_once(':') {
        Some((uid, gid)) => (uid, Some(gid)),
        None => (user, None),
    };
    let number = |text: &str| {
        text.parse::<u32>()
            .map_err(|_| format!("user `{user}` must be numeric: `uid` or `uid:gid`"))
    };
    let uid = number(uid)?;
    let gid = gid.map(number).transpose()?.unwrap_or(uid);
    Ok((uid, gid))
}

fn seccomp() -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32",
            "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        "syscalls": [{
            "names": REFUSED_SYSCALLS,
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": 1
        }]
    })
}

fn resources(limits: &Limits) -> Value {
    let mut resources = json!({ "devices": [{ "allow": false, "access": "rwm" }] });
    let mut memory = serde_json::Map::new();
    if let Some(bytes) = limits.memory {
        memory.insert("limit".into(), json!(bytes));
        // Without a swap limit the memory limit could be exceeded into swap.
        memory.insert("swap".into(), json!(limits.memory_swap.unwrap_or(bytes)));
    } else if let Some(swap) = limits.memory_swap {
        memory.insert("swap".into(), json!(swap));
    }
    if !memory.is_empty() {
        resources["memory"] = Value::Object(memory);
    }
    let mut cpu = serde_json::Map::new();
    if let Some(shares) = limits.cpu_shares {
        cpu.insert("shares".into(), json!(shares));
    }
    if let Some(quota) = limits.cpu_quota {
        cpu.insert("quota".into(), json!(quota));
        cpu.insert("period".into(), json!(limits.cpu_period.unwrap_or(100_000)));
    } else if let Some(period) = limits.cpu_period {
        cpu.insert("period".into(), json!(period));
    }
    if !cpu.is_empty() {
        resources["cpu"] = Value::Object(cpu);
    }
    if let Some(pids) = limits.pids {
        resources["pids"] = json!({ "limit": pids });
    }
    resources
}

/// The spec as JSON.
pub fn build(input: &SpecInput<'_>) -> Result<Value, String> {
    let args = arguments(input.image, input.command, input.args);
    if args.is_empty() {
        return Err(
            "nothing to run: the image has no entrypoint or command, and the spec gives none"
                .into(),
        );
    }
    let user = input
        .user
        .map(str::to_string)
        .or_else(|| input.image.user.clone().filter(|user| !user.is_empty()));
    let (uid, gid) = match &user {
        Some(user) => numeric_user(user)?,
        None => (0, 0),
    };
    let cwd = input
        .working_dir
        .map(str::to_string)
        .or_else(|| {
            input
                .image
                .working_dir
                .clone()
                .filter(|dir| !dir.is_empty())
        })
        .unwrap_or_else(|| "/".into());
    let kept: Vec<&str> = if input.privileged {
        daemon_capabilities()
    } else {
        input
            .capabilities
            .iter()
            .map(|name| capability_name(name).ok_or_else(|| format!("unknown capability `{name}`")))
            .collect::<Result<_, _>>()?
    };
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
    ];
    for mount in &input.mounts {
        let access = if mount.read_only { "ro" } else { "rw" };
        mounts.push(if mount.tmpfs {
            json!({"destination": mount.target, "type": "tmpfs", "source": "tmpfs",
                "options": ["nosuid", "nodev", "mode=1777", access]})
        } else {
            json!({"destination": mount.target, "type": "bind", "source": mount.source,
                "options": ["rbind", "rprivate", access]})
        });
    }
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    match &input.network {
        Network::Own(None) => namespaces.push(json!({"type": "network"})),
        Network::Own(Some(path)) => namespaces.push(json!({"type": "network", "path": path})),
        Network::Host => {}
    }
    let mut linux = json!({
        "resources": resources(&input.limits),
        "cgroupsPath": input.cgroups_path,
        "namespaces": namespaces,
    });
    if input.privileged {
        linux["resources"]["devices"] = json!([{ "allow": true, "access": "rwm" }]);
    } else {
        linux["seccomp"] = seccomp();
        linux["maskedPaths"] = json!([
            "/proc/acpi",
            "/proc/asound",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/sys/firmware",
            "/proc/scsi"
        ]);
        linux["readonlyPaths"] = json!([
            "/proc/bus",
            "/proc/fs",
            "/proc/irq",
            "/proc/sys",
            "/proc/sysrq-trigger"
        ]);
    }
    Ok(json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "user": { "uid": uid, "gid": gid },
            "args": args,
            "env": environment(input.image, input.env),
            "cwd": cwd,
            "capabilities": {
                "bounding": kept, "effective": kept, "permitted": kept,
            },
            "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }],
            "noNewPrivileges": !input.privileged,
        },
        "root": { "path": "rootfs", "readonly": input.read_only_rootfs },
        "hostname": input.hostname,
        "mounts": mounts,
        "linux": linux,
    }))
}

/// `PATH` of an exec whose environment is cleared.
const CLEARED_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The process spec of an exec inside a container whose spec is `spec`:
/// the container's environment with `env` on top, or (`clear_env`) only a
/// standard `PATH` and `env`.
pub fn exec_process(
    spec: &Value,
    args: &[String],
    env: &[(String, String)],
    clear_env: bool,
    cwd: Option<&str>,
) -> Value {
    let mut process = spec.get("process").cloned().unwrap_or_else(|| json!({}));
    process["args"] = json!(args);
    process["terminal"] = json!(false);
    if clear_env {
        process["env"] = json!(override_env(vec![CLEARED_PATH.to_string()], env));
    } else if let Some(Value::Array(existing)) = process.get("env").cloned() {
        let base = existing
            .iter()
            .filter_map(|entry| entry.as_str().map(str::to_string))
            .collect();
        process["env"] = json!(override_env(base, env));
    }
    if let Some(cwd) = cwd {
        process["cwd"] = json!(cwd);
    }
    process
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| item.to_string()).collect()
    }

    #[test]
    fn arguments_follow_dockers_rules() {
        let image = RunConfig {
            entrypoint: Some(strings(&["/bin/app"])),
            cmd: Some(strings(&["--serve"])),
            ..RunConfig::default()
        };
        assert_eq!(
            arguments(&image, None, None),
            strings(&["/bin/app", "--serve"])
        );
        assert_eq!(
            arguments(&image, None, Some(&strings(&["-v"]))),
            strings(&["/bin/app", "-v"])
        );
        assert_eq!(
            arguments(&image, Some(&strings(&["/bin/sh"])), None),
            strings(&["/bin/sh"])
        );
    }

    #[test]
    fn the_plugins_environment_overrides_the_images() {
        let image = RunConfig {
            env: Some(strings(&["PATH=/bin", "MODE=a"])),
            ..RunConfig::default()
        };
        let env = environment(&image, &[("MODE".into(), "b".into())]);
        assert_eq!(env, strings(&["PATH=/bin", "MODE=b"]));
    }

    #[test]
    fn users_are_numeric() {
        assert_eq!(numeric_user("1000"), Ok((1000, 1000)));
        assert_eq!(numeric_user("1000:50"), Ok((1000, 50)));
        assert!(numeric_user("nobody").is_err());
    }

    #[test]
    fn limits_reach_the_spec_and_swap_defaults_to_the_memory_limit() {
        let limits = Limits {
            memory: Some(32 << 20),
            cpu_quota: Some(50_000),
            pids: Some(20),
            ..Limits::default()
        };
        let value = resources(&limits);
        assert_eq!(value["memory"]["limit"], json!(32 << 20));
        assert_eq!(value["memory"]["swap"], json!(32 << 20));
        assert_eq!(value["cpu"]["period"], json!(100_000));
        assert_eq!(value["pids"]["limit"], json!(20));
    }
}
