//! Telling the world how a job went: pings in the healthchecks.io
//! convention (`URL/start`, `URL`, `URL/fail` with the last lines of the
//! output), `on-success`/`on-failure` commands given the job's report on
//! stdin, and the Prometheus textfile of every job's last run. None of these
//! changes a job's outcome: a monitor that cannot be reached is a warning.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::capture::Captured;

/// How long a ping may take: a slow monitor must not hold up backups.
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// Pings `url` + `suffix`, with `body` (POST) or without (GET).
pub(super) fn ping(url: &str, suffix: &str, body: Option<String>) {
    let target = format!("{}{suffix}", url.trim_end_matches('/'));
    let client = match reqwest::blocking::Client::builder()
        .timeout(PING_TIMEOUT)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            return warn(&format!("cannot ping {}: {e}", hide_password(&target)));
        }
    };
    let sent = match body {
        Some(b) => client.post(&target).body(b).send(),
        None => client.get(&target).send(),
    };
    match sent.and_then(|r| r.error_for_status()) {
        Ok(_) => {}
        // (The URL may hold a password; the warning goes to the journal.)
        Err(e) => warn(&format!(
            "the ping to {} failed ({}); the job's outcome is unchanged: check ping-url",
            hide_password(&target),
            e.without_url()
        )),
    }
}

/// `s` with the password of a URL (`ftp://me:secret@host`) left out.
pub(super) fn hide_password(s: &str) -> String {
    let Some((scheme, rest)) = s.split_once("://") else {
        return s.to_string();
    };
    let end = rest.find('/').unwrap_or(rest.len());
    match rest[..end].rsplit_once('@') {
        Some((user, host)) if user.contains(':') => {
            let name = user.split(':').next().unwrap_or_default();
            format!("{scheme}://{name}:***@{host}{}", &rest[end..])
        }
        _ => s.to_string(),
    }
}

/// The body of a ping: the last lines of the job's output.
pub(super) fn output(c: &Captured) -> String {
    let mut s = c.lines.iter().cloned().collect::<Vec<_>>().join("\n");
    s.push('\n');
    s
}

/// Runs hook `command` with `sh -c`, the job's report on stdin and its
/// name, kind and exit code in the environment.
pub(super) fn hook(command: &str, job: &str, kind: &str, code: u8, c: &Captured) {
    let report = c
        .report
        .as_ref()
        .map(|r| r.to_string())
        .unwrap_or_else(|| "null".into());
    let mut child = match std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("REPO_JOB", job)
        .env("REPO_JOB_KIND", kind)
        .env("REPO_JOB_EXIT_CODE", code.to_string())
        // A hook is told how the job went, not how to open repositories.
        .env_remove("REPO_PASSWORD")
        .env_remove("REPO_TO_PASSWORD")
        .stdin(std::process::Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            return warn(&format!(
                "cannot run the hook `{command}` of job {job}: {e}"
            ));
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its input is fine.
        let _ = stdin.write_all(report.as_bytes());
    }
    match child.wait() {
        Ok(s) if s.success() => {}
        Ok(s) => warn(&format!("the hook `{command}` of job {job} failed ({s})")),
        Err(e) => warn(&format!("the hook `{command}` of job {job}: {e}")),
    }
}

/// One job's last run, for the metrics file.
pub(super) struct Metric {
    pub(super) job: String,
    pub(super) kind: String,
    pub(super) start: SystemTime,
    pub(super) secs: f64,
    pub(super) code: u8,
    pub(super) report: Option<serde_json::Value>,
}

/// The metric families written, with their help text.
const FAMILIES: [(&str, &str); 6] = [
    (
        "repo_job_last_start_timestamp_seconds",
        "When the job last started.",
    ),
    (
        "repo_job_last_success_timestamp_seconds",
        "When the job last ended with exit code 0 or 3.",
    ),
    (
        "repo_job_duration_seconds",
        "How long the job's last run took.",
    ),
    ("repo_job_exit_code", "The exit code of the job's last run."),
    ("repo_job_files", "Files the job's last backup saw."),
    (
        "repo_job_added_bytes",
        "Bytes the job's last backup added to the repository.",
    ),
];

/// Writes the Prometheus textfile `path` atomically (a temporary file
/// renamed over it, so a collector never reads half of it). Jobs not run
/// this time keep their lines from the file's previous version, and a job
/// that failed keeps its last success, so "no success for two days" alerts
/// work for every job whichever ran last.
pub(super) fn write_metrics(path: &Path, runs: &[Metric]) -> std::io::Result<()> {
    let old = read_old(path);
    // (family, job) -> sample line.
    let mut samples: BTreeMap<(String, String), String> = old
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, rest) = l.split_once('{')?;
            let job = escaped_label(rest.strip_prefix("job=\"")?)?;
            Some(((name.to_string(), job.to_string()), l.to_string()))
        })
        .collect();
    for r in runs {
        for (name, _) in FAMILIES {
            let key = (name.to_string(), label(&r.job));
            match value(name, r) {
                Some(v) => {
                    let line = format!(
                        "{name}{{job=\"{}\",kind=\"{}\"}} {v}",
                        label(&r.job),
                        label(&r.kind)
                    );
                    samples.insert(key, line);
                }
                // A failed run keeps the last success; a non-backup has no file counts.
                None if name == "repo_job_last_success_timestamp_seconds" => {}
                None => {
                    samples.remove(&key);
                }
            }
        }
    }
    let mut text = String::new();
    for (name, help) in FAMILIES {
        text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
        for ((family, _), line) in &samples {
            if family == name {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    // The folder may be one others can write (a collector's textfile
    // folder): whatever sits at the temporary name (a leftover, or a link
    // planted to make us overwrite another file) goes, and the file is
    // created anew, never opened through a link.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)?;
    let written = f.write_all(text.as_bytes()).and_then(|()| f.sync_all());
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}

/// Largest previous metrics file whose lines are kept: thousands of jobs.
const MAX_OLD_METRICS: u64 = 4 << 20;

/// The previous metrics file, if any; a larger one (or a link to a device
/// planted in its place) is not read beyond [`MAX_OLD_METRICS`] and starts
/// afresh.
fn read_old(path: &Path) -> String {
    use std::io::Read;
    let mut text = String::new();
    let read = std::fs::File::open(path)
        .and_then(|f| f.take(MAX_OLD_METRICS + 1).read_to_string(&mut text));
    if read.is_err() || text.len() as u64 > MAX_OLD_METRICS {
        return String::new();
    }
    text
}

/// The value of metric `name` for run `r`, if it has one.
fn value(name: &str, r: &Metric) -> Option<String> {
    let at = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    };
    let summary = |k: &str| r.report.as_ref()?.get("summary")?.get(k)?.as_u64();
    Some(match name {
        "repo_job_last_start_timestamp_seconds" => format!("{:.3}", at(r.start)),
        "repo_job_last_success_timestamp_seconds" if r.code == 0 || r.code == 3 => {
            format!("{:.3}", at(r.start) + r.secs)
        }
        "repo_job_duration_seconds" => format!("{:.3}", r.secs),
        "repo_job_exit_code" => r.code.to_string(),
        "repo_job_files" => {
            (summary("files_new")? + summary("files_changed")? + summary("files_unchanged")?)
                .to_string()
        }
        "repo_job_added_bytes" => summary("data_added_stored")?.to_string(),
        _ => return None,
    })
}

/// The escaped label value at the start of `s`, up to its closing quote
/// (a quote not escaped by a backslash), as [`label`] wrote it.
fn escaped_label(s: &str) -> Option<&str> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(&s[..i]),
            _ => {}
        }
    }
    None
}

/// A label value escaped for the text format.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A warning on stderr, as the library's are shown.
pub(super) fn warn(m: &str) {
    eprintln!("warning: {}", super::text::escape(m));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(job: &str) -> Metric {
        Metric {
            job: job.into(),
            kind: "backup".into(),
            start: SystemTime::now(),
            secs: 1.0,
            code: 0,
            report: None,
        }
    }

    #[test]
    fn a_link_planted_at_the_temporary_name_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let file = dir.path().join("repo.prom");
        let tmp = file.with_extension(format!("tmp.{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        write_metrics(&file, &[metric("home")]).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert!(
            std::fs::read_to_string(&file)
                .unwrap()
                .contains("job=\"home\"")
        );
    }

    #[test]
    fn a_job_name_with_a_quote_keeps_one_line_per_family() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("repo.prom");
        let name = "say \"hi\", kind=\"x\"";
        write_metrics(&file, &[metric(name)]).unwrap();
        write_metrics(&file, &[metric(name), metric("other")]).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        let codes: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("repo_job_exit_code{"))
            .collect();
        assert_eq!(codes.len(), 2, "{text}");
    }
}
