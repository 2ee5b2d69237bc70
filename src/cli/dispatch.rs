//! The one table from commands to their `run` and their report's
//! renderer: no command renders here, and the exit code comes from the
//! report (see `render::Render::outcome`).

use anyhow::{Result, bail};

use repo::commands::{
    Context, cat, check, copy, create, diff, dump, find, forget, init, key, lock, ls, prune,
    repair, restore, snapshots, stats, tag, unlock,
};

use super::args::{Cli, Command};
use super::render::{View, confirm_removals, lock_held, show};
use super::secrets::key_password;

/// Runs the command and shows its report; returns the exit code.
pub(super) fn dispatch(cli: &Cli, ctx: &Context, show_bar: bool) -> Result<u8> {
    let v = &View {
        json: cli.json,
        quiet: cli.quiet,
        verbose: cli.verbose,
    };
    match &cli.command {
        Command::Init(a) => show(&init::run(ctx, a)?, a, v),
        Command::Create(a) => show(&create::run(ctx, a, show_bar)?, a, v),
        Command::Snapshots(a) => show(&snapshots::run(ctx, a)?, a, v),
        Command::Ls(a) => show(&ls::run(ctx, a)?, a, v),
        Command::Restore(a) => {
            let ask = |gone: &[_]| confirm_removals(gone, &a.target, v.json || v.quiet);
            show(&restore::run(ctx, a, &ask)?, a, v)
        }
        Command::Check(a) => show(&check::run(ctx, a)?, a, v),
        Command::Unlock(a) => show(&unlock::run(ctx, a)?, a, v),
        Command::Find(a) => show(&find::run(ctx, a)?, a, v),
        Command::Diff(a) => show(&diff::run(ctx, a)?, a, v),
        Command::Dump(a) => show(&dump_to_stdout(ctx, a)?, a, v),
        Command::Tag(a) => show(&tag::run(ctx, a)?, a, v),
        Command::Cat(a) => show(&cat::run(ctx, a)?, a, v),
        Command::Stats(a) => show(&stats::run(ctx, a)?, a, v),
        Command::Key(a) => {
            let pw = key_password(a)?;
            show(&key::run(ctx, a, pw.as_ref().map(|p| p.as_slice()))?, a, v)
        }
        Command::Lock(a) => show(&lock::run(ctx, a, &|r| lock_held(r, a, v))?, a, v),
        Command::Forget(a) => show(&forget::run(ctx, a)?, a, v),
        Command::Prune(a) => show(&prune::run(ctx, a)?, a, v),
        Command::Copy(a) => {
            let to = destination(cli, a)?;
            show(&copy::run(ctx, a, &to)?, a, v)
        }
        Command::Repair(a) => show(&repair::run(ctx, a)?, a, v),
        Command::Mirror(_) | Command::Sync(_) | Command::Run(_) | Command::Schedule(_) => {
            bail!(repo::Error::Usage(
                "mirror, sync, run and schedule open no repository of their own; they are run \
                 before one is opened"
                    .into()
            ))
        }
    }
}

/// `dump` writes the file or tar archive itself to stdout, buffered.
fn dump_to_stdout(ctx: &Context, a: &dump::Args) -> repo::Result<dump::Report> {
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    dump::run(ctx, a, &mut out)
}

/// Where `copy` writes, and how it opens it.
fn destination(cli: &Cli, a: &copy::Args) -> Result<copy::Destination> {
    let mut location = repo::storage::Location::parse(&a.to, &super::backend(cli))?;
    if location.needs_password() {
        location.set_password(super::secrets::ftp_password(&location)?);
    }
    Ok(copy::Destination {
        location,
        credentials: super::secrets::destination_credentials(a)?,
    })
}
