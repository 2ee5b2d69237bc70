//! Progress on stderr (indicatif): the bar, and the per-path errors and
//! warnings engines report while they run.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use repo::engine::progress::Progress;

use super::text::{escape, escape_bytes};

/// Progress on stderr: a bar on a terminal, plain warnings otherwise.
pub(super) struct Display {
    bar: ProgressBar,
    /// Whether anything is drawn, decided once: asking the bar takes its
    /// lock, and `add_done` runs once per file on every worker.
    shown: bool,
    files: AtomicU64,
    total_files: AtomicU64,
    warned: AtomicU64,
    quiet: bool,
}

impl Display {
    pub(super) fn new(show: bool, quiet: bool) -> Self {
        let bar = if show {
            let b = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template("{spinner} {elapsed_precise} {msg} [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            b.enable_steady_tick(Duration::from_millis(200));
            b
        } else {
            ProgressBar::hidden()
        };
        Display {
            shown: !bar.is_hidden(),
            bar,
            files: AtomicU64::new(0),
            total_files: AtomicU64::new(0),
            warned: AtomicU64::new(0),
            quiet,
        }
    }

    fn update_msg(&self) {
        let (f, t) = (
            self.files.load(Ordering::Relaxed),
            self.total_files.load(Ordering::Relaxed),
        );
        if t > 0 {
            self.bar.set_message(format!("{f}/{t} files"));
        } else {
            self.bar.set_message(format!("{f} files"));
        }
    }

    pub(super) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Progress for Display {
    fn set_total(&self, files: u64, bytes: u64) {
        self.total_files.store(files, Ordering::Relaxed);
        // The scanner may still be behind the backup; never show done > total.
        self.bar.set_length(bytes.max(self.bar.position()));
        self.update_msg();
    }

    fn add_done(&self, files: u64, bytes: u64) {
        // Called once per file from every worker: a hidden bar costs nothing,
        // and a shown one gets a new message every 64 files, not every file.
        if !self.shown {
            return;
        }
        let before = self.files.fetch_add(files, Ordering::Relaxed);
        self.bar.inc(bytes);
        if files > 0 && (before / 64 != (before + files) / 64) {
            self.update_msg();
        }
    }

    fn warn(&self, path: &Path, message: &str) {
        self.say("error", path, message);
    }

    fn caveat(&self, path: &Path, message: &str) {
        self.say("warning", path, message);
    }
}

impl Display {
    fn say(&self, level: &str, path: &Path, message: &str) {
        self.warned.fetch_add(1, Ordering::Relaxed);
        let line = format!(
            "{level}: {}: {}",
            escape_bytes(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str())),
            escape(message)
        );
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.suspend(|| eprintln!("{line}"));
        }
        let _ = self.quiet;
    }
}
