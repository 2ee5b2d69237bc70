//! Running a command to completion or in the background, always with a
//! bounded wait, so a hang fails the test with the state of every thread.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::CMD_TIMEOUT;

/// The outcome of one finished command.
#[derive(Debug)]
pub struct Run {
    pub what: String,
    pub code: i32,
    pub stdout: String,
    /// The same bytes as `stdout`, unchanged (dump, cat).
    pub stdout_bytes: Vec<u8>,
    pub stderr: String,
    /// Peak resident size in KiB of the command and the processes it waited
    /// for (wait4), not of the test's other children. It starts at this
    /// test process's own peak (exec keeps the larger of the two images').
    pub peak_rss_kib: i64,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "command: {}\nexit code: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.what, self.code, self.stdout, self.stderr
        )
    }
}

impl Run {
    #[track_caller]
    pub fn code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "unexpected exit code\n{self}");
        self
    }

    #[track_caller]
    pub fn success(&self) -> &Self {
        self.code(0)
    }

    #[track_caller]
    pub fn failure(&self) -> &Self {
        assert_ne!(self.code, 0, "expected a failure\n{self}");
        self
    }

    #[track_caller]
    pub fn stderr_has(&self, s: &str) -> &Self {
        assert!(
            self.stderr.contains(s),
            "stderr should contain {s:?}\n{self}"
        );
        self
    }

    #[track_caller]
    pub fn stdout_has(&self, s: &str) -> &Self {
        assert!(
            self.stdout.contains(s),
            "stdout should contain {s:?}\n{self}"
        );
        self
    }

    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{self}"))
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// State of every thread of a process, for messages about hangs.
pub fn proc_dump(pid: u32) -> String {
    let mut out = String::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return format!("(process {pid} is gone)");
    };
    for t in tasks.filter_map(|t| t.ok()).map(|t| t.path()) {
        let read = |f: &str| fs::read_to_string(t.join(f)).unwrap_or_default();
        let stat = read("stat");
        let state = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .next();
        out += &format!(
            "thread {} {:<16} state {} in {}\n",
            t.file_name().unwrap().to_string_lossy(),
            read("comm").trim(),
            state.unwrap_or("?"),
            read("wchan")
        );
    }
    out
}

/// Runs `cmd` to completion (stdin is /dev/null) with a bounded wait.
pub fn run(cmd: Command) -> Run {
    run_within(cmd, CMD_TIMEOUT)
}

/// Like [`run`], failing the test if the command takes longer than `limit`.
pub fn run_within(cmd: Command, limit: Duration) -> Run {
    run_fed(cmd, limit, Stdio::null())
}

/// Like [`run`], with `stdin` as the command's standard input (a file).
pub fn run_with_stdin(cmd: Command, stdin: impl Into<Stdio>) -> Run {
    run_fed(cmd, CMD_TIMEOUT, stdin.into())
}

fn run_fed(mut cmd: Command, limit: Duration, stdin: Stdio) -> Run {
    let what = describe(&cmd);
    cmd.stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(wait_measured(child));
    });
    let (out, peak_rss_kib) = match rx.recv_timeout(limit) {
        Ok(r) => r.unwrap_or_else(|e| panic!("waiting for {what}: {e}")),
        Err(_) => {
            let dump = proc_dump(pid);
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = rx.recv_timeout(Duration::from_secs(10));
            panic!("{what} did not finish within {limit:?}\n{dump}");
        }
    };
    let code = out.status.code().unwrap_or_else(|| {
        use std::os::unix::process::ExitStatusExt;
        128 + out.status.signal().unwrap_or(0)
    });
    Run {
        what,
        code,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stdout_bytes: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        peak_rss_kib,
    }
}

/// This test process's peak resident size in KiB (`VmHWM`), which every
/// command it starts inherits as the floor of its [`Run::peak_rss_kib`].
pub fn own_peak_rss_kib() -> i64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

/// `Child::wait_with_output`, with the child's own peak resident size in
/// KiB from wait4 (getrusage would mix in every other child of the test
/// binary). The one `unsafe` in the tests: no safe wrapper returns one
/// child's rusage.
#[allow(unsafe_code)]
pub fn wait_measured(mut child: Child) -> std::io::Result<(std::process::Output, i64)> {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    let mut err = child.stderr.take();
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(e) = err.as_mut() {
            e.read_to_end(&mut v)?;
        }
        Ok::<_, std::io::Error>(v)
    });
    let mut stdout = Vec::new();
    if let Some(mut o) = child.stdout.take() {
        o.read_to_end(&mut stdout)?;
    }
    let stderr = err_reader
        .join()
        .map_err(|_| std::io::Error::other("stderr reader panicked"))??;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 writes only to the two locals passed by pointer; the
    // child is ours and not yet reaped (nothing else waits for it).
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let status = std::process::ExitStatus::from_raw(status);
    let output = std::process::Output {
        status,
        stdout,
        stderr,
    };
    Ok((output, usage.ru_maxrss))
}

/// A background process that is killed (SIGKILL) and reaped when dropped,
/// so a failing test never leaves it behind.
pub struct Background {
    pub child: Option<Child>,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Background {
    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.as_ref().expect("running").id() as i32)
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(self.pid(), sig).expect("send signal");
    }

    /// Whether the process has exited (reaping it if so).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().expect("try_wait"))
    }

    /// SIGKILL and reap, so its pid is really gone (a zombie would still
    /// answer kill(pid, 0)).
    pub fn kill_and_reap(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let _ = c.kill();
        c.wait().expect("reap")
    }

    /// Waits for a normal exit with a bounded wait.
    pub fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.exited() {
                self.child = None;
                return s;
            }
            if Instant::now() >= deadline {
                let pid = self.child.as_ref().expect("running").id();
                panic!(
                    "background process did not finish within {limit:?}\n{}\n{}",
                    proc_dump(pid),
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn output(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            fs::read_to_string(&self.stdout).unwrap_or_default(),
            fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Polls `cond` every few milliseconds until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
