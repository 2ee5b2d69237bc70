//! Warnings from layers that cannot print.
//!
//! Storage and the repository meet things worth telling the user that do
//! not stop the command: a symlink planted in a local repository that a
//! listing ignored, a damaged index object that was skipped. Those layers
//! know nothing of terminals or progress bars, so they hand each warning to
//! the one sink the CLI installs at start (the way the `log` facade works).
//! Each distinct warning is passed on once per process: a listing that runs
//! again (locks are listed twice when taken) does not repeat itself.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

type Sink = Box<dyn Fn(&str) + Send + Sync>;

static SINK: OnceLock<Sink> = OnceLock::new();
static SAID: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// Installs where warnings go; the first call wins. Without one they are dropped.
pub fn set_sink(sink: impl Fn(&str) + Send + Sync + 'static) {
    let _ = SINK.set(Box::new(sink));
}

/// Passes `message` to the sink unless it was passed already.
pub(crate) fn warn(message: impl Into<String>) {
    let message = message.into();
    if let Ok(mut said) = SAID.lock()
        && !said
            .get_or_insert_with(HashSet::new)
            .insert(message.clone())
    {
        return;
    }
    if let Some(sink) = SINK.get() {
        sink(&message);
    }
}
