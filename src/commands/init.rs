//! `repo init`: create a repository.

use serde::Serialize;

use super::Context;
use crate::codec::chunker::ChunkerParams;
use crate::error::{Error, Result};
use crate::repository::{Credentials, InitOptions, Repository};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Minimum chunk size in bytes.
    #[arg(long, default_value_t = ChunkerParams::default().min, hide = true)]
    pub chunk_min: u32,
    /// Average chunk size in bytes.
    #[arg(long, default_value_t = ChunkerParams::default().avg, hide = true)]
    pub chunk_avg: u32,
    /// Maximum chunk size in bytes.
    #[arg(long, default_value_t = ChunkerParams::default().max, hide = true)]
    pub chunk_max: u32,
    /// Target pack size in bytes (1 MiB to 1 GiB). Small packs make tests
    /// and fault injection see many packs with little data.
    #[arg(long, default_value_t = crate::format::config::DEFAULT_PACK_SIZE, hide = true)]
    pub pack_size: u32,
    /// Lock every object but lock files for DAYS days with S3 object lock
    /// (COMPLIANCE mode): nobody, not even with this machine's credentials
    /// or the bucket owner's, can delete or overwrite them before then. S3
    /// only; the bucket must have been created with object lock.
    #[arg(long, value_name = "DAYS")]
    pub object_lock: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub id: String,
    pub location: String,
    pub key: String,
    /// Days every object is locked for, if object lock is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_lock_days: Option<u32>,
}

pub fn run(ctx: &Context, args: &Args) -> Result<Report> {
    let opts = InitOptions {
        chunk_sizes: ChunkerParams {
            min: args.chunk_min,
            avg: args.chunk_avg,
            max: args.chunk_max,
        },
        pack_size: Some(args.pack_size),
        object_lock_days: args.object_lock,
        ..Default::default()
    };
    let Credentials::Password(password) = &ctx.credentials else {
        return Err(Error::Usage(
            "init needs a password, not a key file: the key objects it writes are \
             wrapped under it; export a key file afterwards with `repo key export FILE`"
                .into(),
        ));
    };
    let repo = Repository::init(&ctx.location, password, &opts)?;
    Ok(Report {
        id: repo.config().id.to_hex(),
        location: ctx.location.to_string(),
        key: repo.key_id().to_hex(),
        object_lock_days: repo.config().object_lock_days,
    })
}
