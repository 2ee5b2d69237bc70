//! The facade's contract, run on the in-memory backend (no disk, no server).

use super::*;

#[test]
fn in_memory_storage_keeps_the_facade_contract() {
    let s = Storage::in_memory().unwrap();
    s.put("snapshots/aa", b"one".to_vec()).unwrap();
    assert_eq!(s.get("snapshots/aa").unwrap(), b"one");
    assert_eq!(s.get_range("snapshots/aa", 1, 2).unwrap(), b"ne");
    assert_eq!(s.get_range_immutable("snapshots/aa", 0, 1).unwrap(), b"o");
    assert!(s.get_range("snapshots/aa", 2, 5).is_err());
    assert!(matches!(
        s.get_bounded("snapshots/aa", 2),
        Err(Error::Corrupt { .. })
    ));
    assert!(matches!(s.get("missing"), Err(Error::NotFound { .. })));
    assert!(!s.put_new("snapshots/aa", b"two".to_vec()).unwrap());
    assert!(s.put_new("snapshots/bb", b"two".to_vec()).unwrap());
    assert!(s.claim("locks/x", "owner", b"me".to_vec()).unwrap());
    assert!(!s.claim("locks/x", "owner", b"you".to_vec()).unwrap());
    s.release("locks/x", "owner").unwrap();
    assert!(s.claim("locks/x", "owner", b"you".to_vec()).unwrap());
    s.rename("snapshots/bb", "snapshots/cc").unwrap();
    let keys: Vec<_> = s.list("snapshots").unwrap();
    assert_eq!(
        keys,
        vec![
            Listed {
                key: "snapshots/aa".into(),
                size: 3
            },
            Listed {
                key: "snapshots/cc".into(),
                size: 3
            }
        ]
    );
    assert_eq!(s.size("snapshots/cc").unwrap(), Some(3));
    s.delete("snapshots/cc").unwrap();
    s.delete("snapshots/cc").unwrap();
    assert_eq!(s.stat("snapshots/cc").unwrap(), None);
    assert!(s.stats().requests > 0);
}
