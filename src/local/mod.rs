//! Local-disk concerns that more than one engine needs: the path filter,
//! file metadata, bind-mount fencing, the plain control folder and reading
//! a local tree. Engines
//! share these through here instead of importing from each other.

pub mod control;
pub mod fence;
pub mod filter;
pub mod meta;
pub mod tree;
