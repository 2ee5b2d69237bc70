//! The adversarial suite: the real binary against an attacker and an
//! unlucky user. Source trees that change under a running backup, a hostile
//! local user racing a root restore, planted and oversized storage objects,
//! suspended writers against prune, two hosts under one name, and sync runs
//! over peers' fixtures. Each part prints one `adversarial NAME: ...` line
//! with its counts (shown by `scripts/adversarial-suite`) and asserts
//! "data lost: 0". Races are opened deterministically: a test-only pause
//! point in the binary (`REPO_TEST_PAUSE`, see `src/testhooks.rs`) or a
//! delay injected at a system call with `strace -e inject=`.

mod locks;
mod plain;
mod restore;
mod source;
mod storage;
