//! Who holds a lock, precisely enough to tell whether that process is gone.
//!
//! A host name alone is not enough: two containers or machines may share
//! one, and a process in another pid namespace sees other pids. So a lock
//! also records the machine id, the boot id, the pid namespace and the
//! process start time. A reader may conclude "that process is dead" from a
//! pid only when machine, boot and pid namespace are all its own; any field
//! it cannot read on either side means "cannot tell", and then only the
//! lock's age decides.

use std::sync::OnceLock;

/// The identity of this process, read once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Identity {
    /// `/etc/machine-id` (or `/var/lib/dbus/machine-id`), trimmed.
    pub machine_id: Option<String>,
    /// `/proc/sys/kernel/random/boot_id`, trimmed: new on every boot.
    pub boot_id: Option<String>,
    /// Inode of `/proc/self/ns/pid`: processes in other pid namespaces see other pids.
    pub pid_ns: Option<u64>,
    /// Start time of this process in clock ticks since boot (field 22 of
    /// `/proc/self/stat`), which tells a reused pid from the original.
    pub start_time: Option<u64>,
}

/// This process's identity. Fields that cannot be read (no /proc, a /proc of
/// another pid namespace, no machine id) are `None`.
pub(crate) fn me() -> &'static Identity {
    static ME: OnceLock<Identity> = OnceLock::new();
    ME.get_or_init(|| {
        let pid = std::process::id();
        // A /proc mounted for another pid namespace shows other processes
        // under our pids: then we cannot look anyone up, so claim no namespace.
        let proc_is_ours =
            stat_fields("self").and_then(|f| f.first().cloned()) == Some(pid.to_string());
        Identity {
            machine_id: first_line("/etc/machine-id")
                .or_else(|| first_line("/var/lib/dbus/machine-id")),
            boot_id: first_line("/proc/sys/kernel/random/boot_id"),
            pid_ns: proc_is_ours.then(|| pid_ns("self")).flatten(),
            start_time: proc_is_ours.then(|| start_time("self")).flatten(),
        }
    })
}

/// At most `limit` bytes of a small system file.
fn read_small(path: &str, limit: u64) -> Option<String> {
    let mut buf = String::new();
    std::io::Read::read_to_string(
        &mut std::io::Read::take(std::fs::File::open(path).ok()?, limit),
        &mut buf,
    )
    .ok()?;
    Some(buf)
}

fn first_line(path: &str) -> Option<String> {
    let buf = read_small(path, 256)?;
    let line = buf.lines().next()?.trim().to_string();
    (!line.is_empty()).then_some(line)
}

fn pid_ns(proc_name: &str) -> Option<u64> {
    nix::sys::stat::stat(format!("/proc/{proc_name}/ns/pid").as_str())
        .ok()
        .map(|s| s.st_ino)
}

/// The fields of `/proc/<name>/stat`: pid, then (the command name in
/// parentheses, which may itself hold spaces and parentheses, is skipped)
/// state, ppid, … so that field 22 of proc(5) is at index 20.
fn stat_fields(proc_name: &str) -> Option<Vec<String>> {
    let text = read_small(&format!("/proc/{proc_name}/stat"), 4096)?;
    let open = text.find(" (")?;
    let close = text.rfind(')')?;
    let mut fields = vec![text.get(..open)?.to_string()];
    fields.extend(
        text.get(close + 1..)?
            .split_whitespace()
            .map(str::to_string),
    );
    Some(fields)
}

fn start_time(proc_name: &str) -> Option<u64> {
    stat_fields(proc_name)?.get(20)?.parse().ok()
}

/// Whether a holder with these ids ran on this very boot of this machine
/// in our pid namespace, so that its pid means the same process here.
pub(crate) fn same_space(
    machine_id: Option<&str>,
    boot_id: Option<&str>,
    pid_ns: Option<u64>,
) -> bool {
    let me = me();
    matches!((machine_id, me.machine_id.as_deref()), (Some(a), Some(b)) if a == b)
        && matches!((boot_id, me.boot_id.as_deref()), (Some(a), Some(b)) if a == b)
        && matches!((pid_ns, me.pid_ns), (Some(a), Some(b)) if a == b)
}

/// Whether the process a lock names is certainly gone: only when machine,
/// boot and pid namespace are provably ours, and then either no process has
/// that pid or the one that has it started at another time (pid reuse).
pub(crate) fn certainly_dead(
    machine_id: Option<&str>,
    boot_id: Option<&str>,
    pid_ns: Option<u64>,
    pid: u32,
    holder_start: Option<u64>,
) -> bool {
    if !same_space(machine_id, boot_id, pid_ns) {
        return false;
    }
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if raw <= 0 {
        return false;
    }
    // kill(pid, 0) fails with ESRCH when no such process exists.
    if matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None),
        Err(nix::errno::Errno::ESRCH)
    ) {
        return true;
    }
    match (holder_start, start_time(&pid.to_string())) {
        (Some(recorded), Some(now)) => recorded != now,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_identity() {
        let me = me();
        assert!(me.start_time.is_some(), "{me:?}");
        assert!(me.pid_ns.is_some(), "{me:?}");
        // Ourselves: alive.
        assert!(!certainly_dead(
            me.machine_id.as_deref(),
            me.boot_id.as_deref(),
            me.pid_ns,
            std::process::id(),
            me.start_time
        ));
        // Our pid with another start time: a reused pid, so the holder is gone.
        if me.machine_id.is_some() && me.boot_id.is_some() {
            assert!(certainly_dead(
                me.machine_id.as_deref(),
                me.boot_id.as_deref(),
                me.pid_ns,
                std::process::id(),
                me.start_time.map(|t| t + 1)
            ));
        }
        // Another machine: never judged by pid.
        assert!(!certainly_dead(
            Some("another machine"),
            me.boot_id.as_deref(),
            me.pid_ns,
            u32::MAX / 2,
            None
        ));
    }
}
