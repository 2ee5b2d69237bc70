//! The `repo` binary: parse, run, map errors to exit codes.

mod cli;

use std::process::ExitCode;

use repo::Error;

/// Exit codes restic users already script against.
fn exit_code(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<cli::HungUp>().is_some() {
        return 129;
    }
    match err.downcast_ref::<Error>() {
        Some(Error::RepoNotFound { .. }) => 10,
        Some(Error::Locked { .. }) => 11,
        Some(Error::WrongPassword { .. } | Error::KeyFile { .. }) => 12,
        Some(Error::NoCredential(_)) => 13,
        Some(Error::Usage(_)) => 2,
        Some(Error::Interrupted) => 130,
        _ => 1,
    }
}

fn main() -> ExitCode {
    match cli::main() {
        // The reader of our output went away (`| head`): end quietly, as
        // cat(1) does, with the code a shell shows for SIGPIPE.
        Ok(_) if cli::stdout_gone() => ExitCode::from(141),
        Err(e) if cli::stdout_gone() || cli::is_broken_pipe(&e) => ExitCode::from(141),
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {}", cli::escape_controls(&format!("{e:#}")));
            ExitCode::from(exit_code(&e))
        }
    }
}
