//! `repo cat`: print one decrypted repository object as JSON.

use serde::Serialize;
use serde_json::Value;

use super::Context;
use crate::error::{Error, Result};
use crate::format::index::IndexFile;
use crate::format::pack::BlobKind;
use crate::format::tree::{Node, Timestamp};
use crate::id::{BlobId, IndexId, KeyId, PackId};
use crate::repository::{ObjectKind, Repository};

/// Kinds of objects `cat` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum What {
    /// The repository config.
    Config,
    /// A snapshot object (id prefix or `latest`).
    Snapshot,
    /// A tree blob: its id (or a unique prefix), or `SNAPSHOT:/path` for a directory's tree.
    Tree,
    /// An index object (id prefix).
    Index,
    /// A pack: the entries found by scanning it (id prefix).
    Pack,
    /// A key object (id prefix); it holds the wrapped master key, never the key itself.
    Key,
    /// A lock object (id prefix).
    Lock,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// What to print.
    #[arg(value_enum)]
    pub what: What,
    /// Which object (not for `config`).
    pub id: Option<String>,
}

/// Picks the one id in `ids` that starts with `spec`.
fn by_prefix(ids: Vec<String>, spec: &str, what: &str) -> Result<String> {
    if spec.is_empty() {
        return Err(Error::Usage(format!(
            "the {what} id is empty; give its id or a unique prefix of it"
        )));
    }
    let spec_l = spec.to_ascii_lowercase();
    let mut m = ids.into_iter().filter(|h| h.starts_with(&spec_l));
    match (m.next(), m.next()) {
        (Some(one), None) => Ok(one),
        (None, _) => Err(Error::NotFound {
            what: format!("{what} {spec:?}"),
            hint: "; give its id or a unique prefix of it".into(),
        }),
        _ => Err(Error::Usage(format!(
            "{what} prefix {spec:?} matches more than one object; give more characters of the id"
        ))),
    }
}

/// Pretty JSON in the order of the struct's fields.
fn json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string_pretty(v).map_err(|e| Error::Usage(format!("cannot render as JSON: {e}")))
}

/// Bytes as text when they are UTF-8, else `None` (then shown as hex too).
fn text(b: &[u8]) -> (String, Option<String>) {
    match std::str::from_utf8(b) {
        Ok(s) => (s.to_string(), None),
        Err(_) => (
            String::from_utf8_lossy(b).into_owned(),
            Some(hex::encode(b)),
        ),
    }
}

#[derive(Serialize)]
struct ChunkJson {
    id: BlobId,
    len: u32,
}

#[derive(Serialize)]
struct XattrJson {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    name_hex: Option<String>,
    value_hex: String,
}

#[derive(Serialize)]
struct NodeJson {
    name: String,
    /// The raw name in hex, when it is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    name_hex: Option<String>,
    #[serde(rename = "type")]
    kind: &'static str,
    mode: String,
    uid: u32,
    gid: u32,
    user: String,
    group: String,
    mtime: Timestamp,
    ctime: Timestamp,
    inode: u64,
    device: u64,
    links: u64,
    rdev: u64,
    size: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    content: Vec<ChunkJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subtree: Option<BlobId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_hex: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    xattrs: Vec<XattrJson>,
}

fn node_json(n: &Node) -> NodeJson {
    let (name, name_hex) = text(&n.name);
    let (target, target_hex) = if n.target.is_empty() {
        (None, None)
    } else {
        let (t, h) = text(&n.target);
        (Some(t), h)
    };
    NodeJson {
        name,
        name_hex,
        kind: n.kind.name(),
        mode: format!("{:04o}", n.mode),
        uid: n.uid,
        gid: n.gid,
        user: n.user.clone(),
        group: n.group.clone(),
        mtime: n.mtime,
        ctime: n.ctime,
        inode: n.inode,
        device: n.device,
        links: n.links,
        rdev: n.rdev,
        size: n.size,
        content: n
            .content
            .iter()
            .map(|c| ChunkJson {
                id: c.id,
                len: c.len,
            })
            .collect(),
        subtree: n.subtree,
        target,
        target_hex,
        xattrs: n
            .xattrs
            .iter()
            .map(|x| {
                let (name, name_hex) = text(&x.name);
                XattrJson {
                    name,
                    name_hex,
                    value_hex: hex::encode(&x.value),
                }
            })
            .collect(),
    }
}

fn tree(repo: &Repository, spec: &str) -> Result<String> {
    let index = repo.load_index()?;
    let id = if spec == "latest" || spec.contains(':') {
        let (snap, path) = spec.split_once(':').unwrap_or((spec, "/"));
        let (_, s) = repo.find_snapshot(snap)?;
        let (node, at) = repo.resolve(&index, s.tree, if path.is_empty() { "/" } else { path })?;
        node.subtree.ok_or_else(|| {
            Error::Usage(format!(
                "{} is a {}, not a directory: only directories have trees",
                at.display(),
                node.kind.name()
            ))
        })?
    } else {
        let hex = by_prefix(
            index.ids(BlobKind::Tree).map(|i| i.to_hex()).collect(),
            spec,
            "tree blob",
        )?;
        BlobId::from_hex(&hex).unwrap_or_default()
    };
    let t = repo.load_tree(&index, &id)?;
    json(&TreeJson {
        id,
        version: t.version,
        nodes: t.nodes.iter().map(node_json).collect(),
    })
}

#[derive(Serialize)]
struct TreeJson {
    id: BlobId,
    version: u32,
    nodes: Vec<NodeJson>,
}

#[derive(Serialize)]
struct IndexJson {
    id: String,
    #[serde(flatten)]
    index: IndexFile,
}

#[derive(Serialize)]
struct PackJson {
    id: String,
    size: u64,
    /// Whether the pack's bytes hash to its name.
    name_matches: bool,
    entries: Vec<crate::format::index::IndexBlob>,
    /// Why scanning stopped early, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn pack(repo: &Repository, spec: &str) -> Result<String> {
    let packs = repo.list_packs()?;
    let ids: Vec<String> = packs.iter().map(|p| p.id.to_hex()).collect();
    let hex = by_prefix(ids, spec, "pack")?;
    let id = PackId::from_hex(&hex).unwrap_or_default();
    // Read no more than the listing says it holds.
    let size = packs.iter().find(|p| p.id == id).map_or(0, |p| p.size);
    let pack = repo.scan_pack(&id, size)?;
    json(&PackJson {
        id: hex,
        size: pack.size(),
        name_matches: pack.name_matches,
        entries: pack.entries,
        error: pack.error.map(|e| e.to_string()),
    })
}

/// The object as pretty-printed JSON, printed as it is with or without `--json`.
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct Report {
    pub text: String,
}

pub fn run(ctx: &Context, args: &Args) -> Result<Report> {
    object_json(ctx, args).map(|text| Report { text })
}

/// The object as pretty-printed JSON.
fn object_json(ctx: &Context, args: &Args) -> Result<String> {
    let need_id = || {
        args.id.clone().ok_or_else(|| {
            let name = clap::ValueEnum::to_possible_value(&args.what)
                .map(|v| v.get_name().to_string())
                .unwrap_or_default();
            Error::Usage(format!(
                "`repo cat {name}` needs an id (or a unique prefix of one); `repo snapshots`, `repo key list` and `repo cat index ID` show ids"
            ))
        })
    };
    if args.what == What::Config && args.id.is_some() {
        return Err(Error::Usage("`repo cat config` takes no id".into()));
    }
    let repo = ctx.open()?;
    match args.what {
        What::Config => json(repo.config()),
        What::Snapshot => {
            let (id, _) = repo.find_snapshot(&need_id()?)?;
            let bytes = repo.load_snapshot_bytes(&id)?;
            // In field order; fields this version does not know are shown too.
            match crate::format::snapshot::Snapshot::decode(&bytes) {
                Ok(s) => {
                    let known = serde_json::to_value(&s).unwrap_or_default();
                    let all: Value = serde_json::from_slice(&bytes).unwrap_or_default();
                    let mut text = json(&s)?;
                    if let (Value::Object(k), Value::Object(a)) = (known, all) {
                        let extra: serde_json::Map<String, Value> =
                            a.into_iter().filter(|(f, _)| !k.contains_key(f)).collect();
                        if !extra.is_empty() {
                            text = json(
                                &serde_json::json!({ "snapshot": s, "unknown_fields": extra }),
                            )?;
                        }
                    }
                    Ok(text)
                }
                Err(e) => Err(Error::corrupt(ObjectKind::Snapshot.key(&id.to_hex()), e)),
            }
        }
        What::Tree => tree(&repo, &need_id()?),
        What::Index => {
            let hex = by_prefix(repo.list_ids(ObjectKind::Index)?, &need_id()?, "index")?;
            let index = repo.load_index_file(&IndexId::from_hex(&hex).unwrap_or_default())?;
            json(&IndexJson { id: hex, index })
        }
        What::Pack => pack(&repo, &need_id()?),
        What::Key => {
            let hex = by_prefix(repo.list_ids(ObjectKind::Key)?, &need_id()?, "key")?;
            let k = repo.load_key(KeyId::from_hex(&hex).unwrap_or_default())?;
            json(&k)
        }
        What::Lock => {
            let hex = by_prefix(repo.list_ids(ObjectKind::Lock)?, &need_id()?, "lock")?;
            json(&repo.load_lock(&hex)?)
        }
    }
}
