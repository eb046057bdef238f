//! Turning a checked spawn into a child process: the exact executable, an empty
//! environment plus the spec's, its own session, rlimits, the capability
//! bounding set, the user switch and no_new_privs, all applied between fork
//! and exec.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;

/// Linux capability names by number (capability.h).
pub const CAPABILITY_NAMES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The canonical name (`CAP_X`) of a capability named `CAP_X` or `x`.
pub fn capability_name(name: &str) -> Option<&'static str> {
    let number = usize::try_from(capability_number(name)?).ok()?;
    CAPABILITY_NAMES.get(number).copied()
}

/// The number of a capability named `CAP_X` (or `x`, case-insensitively).
pub fn capability_number(name: &str) -> Option<u32> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    CAPABILITY_NAMES
        .iter()
        .position(|known| *known == full)
        .and_then(|index| u32::try_from(index).ok())
}

/// The highest capability number this kernel knows.
fn last_capability() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(40)
}

/// A user resolved from its name.
#[derive(Debug, Clone, Copy)]
pub struct Account {
    pub uid: u32,
    pub gid: u32,
}

/// Looks a user up (getpwnam_r); `None` if there is no such user.
pub fn user(name: &str) -> io::Result<Option<Account>> {
    let cname = CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?;
    let mut buf = vec![0u8; 4096];
    // SAFETY: zeroed passwd is a valid out-parameter; buf outlives the call.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; found is checked before use.
    let rc = unsafe {
        libc::getpwnam_r(
            cname.as_ptr(),
            &mut entry,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok((!found.is_null()).then_some(Account {
        uid: entry.pw_uid,
        gid: entry.pw_gid,
    }))
}

/// Looks a group up (getgrnam_r); its gid, `None` if there is no such group.
pub fn group(name: &str) -> io::Result<Option<u32>> {
    let cname = CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?;
    let mut buf = vec![0u8; 16384];
    // SAFETY: as in `user`.
    let mut entry: libc::group = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::group = std::ptr::null_mut();
    // SAFETY: as in `user`.
    let rc = unsafe {
        libc::getgrnam_r(
            cname.as_ptr(),
            &mut entry,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok((!found.is_null()).then_some(entry.gr_gid))
}

/// Everything decided before the fork.
pub struct Plan {
    pub exe: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub no_new_privs: bool,
    /// Capability numbers to keep in the bounding set.
    pub keep: Vec<u32>,
    /// (resource, limit) pairs for setrlimit.
    pub rlimits: Vec<(libc::__rlimit_resource_t, u64)>,
    /// `cgroup.procs` of the process's own cgroup, joined before exec.
    pub cgroup: Option<PathBuf>,
}

/// Values the child applies; prepared so the code between fork and exec only
/// makes system calls (no allocation, no locks).
struct ChildSetup {
    drop_caps: Vec<libc::c_int>,
    rlimits: Vec<(libc::__rlimit_resource_t, libc::rlimit)>,
    cgroup_procs: Option<CString>,
    uid: Option<libc::uid_t>,
    gid: Option<libc::gid_t>,
    no_new_privs: bool,
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

impl ChildSetup {
    /// Runs in the child between fork and exec: only async-signal-safe calls.
    fn apply(&self) -> io::Result<()> {
        // SAFETY (whole function): plain system calls on values prepared before
        // the fork; nothing allocates or takes a lock.
        unsafe {
            check(libc::setsid())?;
            if let Some(path) = &self.cgroup_procs {
                let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                check(fd)?;
                let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
                if written != 1 {
                    return Err(io::Error::last_os_error());
                }
            }
            for (resource, limit) in &self.rlimits {
                check(libc::setrlimit(*resource, limit))?;
            }
            for cap in &self.drop_caps {
                let cap = libc::c_ulong::try_from(*cap).unwrap_or(0);
                if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0
                    && libc::prctl(libc::PR_CAPBSET_READ, cap, 0, 0, 0) == 1
                {
                    return Err(io::Error::last_os_error());
                }
            }
            // Old kernels have no ambient set: nothing to clear then.
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                0,
                0,
                0,
            );
            let mut header = CapHeader {
                version: CAPABILITY_VERSION_3,
                pid: 0,
            };
            let mut data = [CapData {
                effective: 0,
                permitted: 0,
                inheritable: 0,
            }; 2];
            let header_ptr: *mut CapHeader = &mut header;
            let data_ptr: *mut CapData = data.as_mut_ptr();
            check(libc::syscall(libc::SYS_capget, header_ptr, data_ptr) as libc::c_int)?;
            data[0].inheritable = 0;
            data[1].inheritable = 0;
            check(libc::syscall(libc::SYS_capset, header_ptr, data.as_ptr()) as libc::c_int)?;
            if let Some(gid) = self.gid {
                if libc::geteuid() == 0 {
                    check(libc::setgroups(1, &gid))?;
                }
                check(libc::setgid(gid))?;
            }
            if let Some(uid) = self.uid {
                check(libc::setuid(uid))?;
            }
            if self.no_new_privs {
                check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
            }
        }
        Ok(())
    }
}

/// Builds the command for `plan`, its output going to the given files.
pub fn command(plan: &Plan, stdout: File, stderr: File) -> io::Result<tokio::process::Command> {
    let last = last_capability();
    let drop_caps = (0..=last)
        .filter(|cap| !plan.keep.contains(cap))
        .filter_map(|cap| libc::c_int::try_from(cap).ok())
        .collect();
    let cgroup_procs = match &plan.cgroup {
        Some(dir) => Some(
            CString::new(
                dir.join("cgroup.procs")
                    .into_os_string()
                    .into_encoded_bytes(),
            )
            .map_err(|_| io::ErrorKind::InvalidInput)?,
        ),
        None => None,
    };
    let setup = ChildSetup {
        drop_caps,
        rlimits: plan
            .rlimits
            .iter()
            .map(|(resource, value)| {
                let limit = libc::rlimit {
                    rlim_cur: *value,
                    rlim_max: *value,
                };
                (*resource, limit)
            })
            .collect(),
        cgroup_procs,
        uid: plan.uid,
        gid: plan.gid,
        no_new_privs: plan.no_new_privs,
    };
    let mut command = std::process::Command::new(&plan.exe);
    command
        .args(&plan.args)
        .env_clear()
        .envs(plan.env.iter().map(|(key, value)| (key, value)))
        .current_dir(plan.cwd.as_deref().unwrap_or("/"))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    // SAFETY: `apply` only makes async-signal-safe system calls.
    unsafe {
        command.pre_exec(move || setup.apply());
    }
    let mut command = tokio::process::Command::from(command);
    command.kill_on_drop(false);
    Ok(command)
}

/// Start time of `pid` in clock ticks since boot (/proc/PID/stat field 22),
/// `None` if it is gone or a zombie.
pub fn start_time(pid: u32) -> Option<u64> {
    stat(pid)
        .filter(|(zombie, _)| !zombie)
        .map(|(_, start)| start)
}

/// Whether `pid` is a zombie, and its start time; `None` if there is no such process.
pub fn stat(pid: u32) -> Option<(bool, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: split after the last `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let zombie = matches!(fields.next()?, "Z" | "X");
    // `rest` starts at field 3 (state); field 22 is 19 further.
    Some((zombie, fields.nth(18)?.parse().ok()?))
}

/// The signal number of `SIGTERM`, `TERM` or `term`.
pub fn signal_number(name: &str) -> Option<libc::c_int> {
    let upper = name.to_ascii_uppercase();
    let short = upper.strip_prefix("SIG").unwrap_or(&upper);
    SIGNALS
        .iter()
        .find(|(known, _)| *known == short)
        .map(|(_, number)| *number)
}

/// `SIGTERM` for 15.
pub fn signal_name(number: libc::c_int) -> String {
    SIGNALS
        .iter()
        .find(|(_, known)| *known == number)
        .map(|(name, _)| format!("SIG{name}"))
        .unwrap_or_else(|| format!("signal {number}"))
}

const SIGNALS: &[(&str, libc::c_int)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_capabilities_and_signals() {
        assert_eq!(capability_number("CAP_NET_BIND_SERVICE"), Some(10));
        assert_eq!(capability_number("net_bind_service"), Some(10));
        assert_eq!(capability_number("CAP_NOPE"), None);
        assert_eq!(signal_number("TERM"), Some(libc::SIGTERM));
        assert_eq!(signal_number("sighup"), Some(libc::SIGHUP));
        assert_eq!(signal_number("NOPE"), None);
        assert_eq!(signal_name(libc::SIGKILL), "SIGKILL");
    }

    #[test]
    fn start_times_identify_processes() {
        let me = std::process::id();
        let first = start_time(me);
        assert!(first.is_some_and(|ticks| ticks > 0));
        assert_eq!(start_time(me), first);
        assert_eq!(start_time(u32::MAX), None);
    }

    #[test]
    fn users_and_groups_resolve() {
        assert_eq!(user("root").unwrap().map(|a| a.uid), Some(0));
        assert!(user("no-such-user-here").unwrap().is_none());
        assert_eq!(group("root").unwrap(), Some(0));
    }
}
