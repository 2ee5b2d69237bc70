//! Pings to a real HTTP endpoint, hooks given the report, and the metrics
//! file read by the Prometheus client's own parser.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::Setup;
use crate::support::{simple_tree, walk_files};

/// A small HTTP server that logs every request (method, path, body) as a
/// JSON line, answering 200; killed on drop.
struct Receiver {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Receiver {
    fn start(dir: &Path) -> Receiver {
        let log = dir.join("pings.jsonl");
        let script = r#"
import http.server, json, sys
log = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    def handle_one(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n).decode("utf-8", "replace") if n else ""
        with open(log, "a") as f:
            f.write(json.dumps({"method": self.command, "path": self.path, "body": body}) + "\n")
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"OK")
    do_GET = do_POST = do_HEAD = handle_one
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;
        let mut child = Command::new("python3")
            .args(["-c", script])
            .arg(&log)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 for the ping receiver");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        Receiver {
            child,
            port: line.trim().parse().expect("the receiver's port"),
            log,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    /// (method, path, body) of every request so far.
    fn requests(&self) -> Vec<(String, String, String)> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let s = |k: &str| v[k].as_str().unwrap().to_string();
                (s("method"), s("path"), s("body"))
            })
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The metrics file as the Prometheus client library parses it: one
/// `name job value` line per sample.
fn parsed_metrics(file: &Path) -> Vec<(String, String, f64)> {
    let script = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
for fam in text_string_to_metric_families(open(sys.argv[1]).read()):
    for s in fam.samples:
        print(s.name, s.labels["job"], s.value)
"#;
    // Debian's python3-prometheus-client (scripts/test installs it) lives
    // with the system's interpreter.
    let out = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[0].to_string(), f[1].to_string(), f[2].parse().unwrap())
        })
        .collect()
}

fn metric(m: &[(String, String, f64)], name: &str, job: &str) -> Option<f64> {
    m.iter()
        .find(|(n, j, _)| n == name && j == job)
        .map(|(_, _, v)| *v)
}

#[test]
fn monitors_hear_how_every_job_went() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let s = Setup::new(dir);
    let src = dir.join("src");
    let files = simple_tree(&src, 74).len();
    s.init(&s.path("r1"));
    let rx = Receiver::start(dir);
    let metrics = dir.join("metrics.prom");
    s.write(&format!(
        r#"metrics-file = "{metrics}"

[jobs.good]
kind = "backup"
repository = "{r1}"
password-file = "{pass}"
paths = ["{src}"]
ping-url = "{good}"
on-success = "cat > {d}/success.json"

[jobs.bad]
kind = "backup"
repository = "{missing}"
password-file = "{pass}"
paths = ["{src}"]
ping-url = "{bad}"
on-failure = "cat > {d}/failure.json; echo $REPO_JOB $REPO_JOB_EXIT_CODE ${{REPO_PASSWORD:-unset}} > {d}/code"
"#,
        metrics = metrics.display(),
        r1 = s.path("r1"),
        pass = s.path("pass"),
        src = src.display(),
        good = rx.url("ping/good"),
        bad = rx.url("ping/bad"),
        missing = s.path("no-such-repo"),
        d = dir.display(),
    ));
    // A dry run tells nobody.
    s.run(&["run", "--dry-run", "good"]).success();
    assert!(rx.requests().is_empty(), "{:?}", rx.requests());
    assert!(!metrics.exists());

    // The password in the environment opens the repositories, and is not
    // handed on to hooks.
    let mut all = s.cmd(&["run"]);
    all.env("REPO_PASSWORD", "job-password");
    crate::support::run(all).code(10);
    let reqs = rx.requests();
    let paths: Vec<(&str, &str)> = reqs
        .iter()
        .map(|(m, p, _)| (m.as_str(), p.as_str()))
        .collect();
    assert_eq!(
        paths,
        [
            ("GET", "/ping/good/start"),
            ("POST", "/ping/good"),
            ("GET", "/ping/bad/start"),
            ("POST", "/ping/bad/fail"),
        ]
    );
    assert!(reqs[1].2.contains("snapshot"), "the output: {reqs:?}");
    assert!(
        reqs[3].2.contains("error:") && reqs[3].2.contains("no-such-repo"),
        "{reqs:?}"
    );
    // Hooks: the report on stdin, the job and exit code in the environment.
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("success.json")).unwrap()).unwrap();
    assert_eq!(report["summary"]["files_new"], files as u64);
    assert_eq!(
        std::fs::read_to_string(dir.join("code")).unwrap(),
        "bad 10 unset\n",
        "no password reaches a hook"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("failure.json")).unwrap(),
        "null"
    );

    let m = parsed_metrics(&metrics);
    assert_eq!(metric(&m, "repo_job_exit_code", "good"), Some(0.0));
    assert_eq!(metric(&m, "repo_job_exit_code", "bad"), Some(10.0));
    assert_eq!(metric(&m, "repo_job_files", "good"), Some(files as f64));
    assert!(metric(&m, "repo_job_added_bytes", "good").unwrap() > 0.0);
    assert!(metric(&m, "repo_job_last_success_timestamp_seconds", "bad").is_none());
    let success = metric(&m, "repo_job_last_success_timestamp_seconds", "good").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - success).abs() < 600.0, "{success} vs {now}");
    // One job run again: the other's lines stay.
    s.run(&["run", "good"]).success();
    let again = parsed_metrics(&metrics);
    assert_eq!(metric(&again, "repo_job_exit_code", "bad"), Some(10.0));
    assert!(
        metric(&again, "repo_job_last_start_timestamp_seconds", "good")
            >= metric(&m, "repo_job_last_start_timestamp_seconds", "good")
    );
    // Nothing else was left beside the file (it is written atomically).
    let left: Vec<_> = walk_files(dir)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("metrics.tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
