//! The store on a real file in a temporary directory: durable across a
//! reopen, per plugin, with quotas, compare-and-set, atomic batches,
//! paged listing; a file that is not a store is refused and left alone.

#![allow(clippy::unwrap_used)]

use super::*;

const QUOTA: Quota = Quota {
    max_keys: 100,
    max_bytes: 10_000,
};

fn dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("iglu-store-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A one-byte MessagePack document (a positive fixint).
fn v(n: u8) -> Bytes {
    Bytes::from(vec![n & 0x7f])
}

fn set(key: &str, value: Bytes) -> Op {
    Op::Set {
        key: key.into(),
        value,
    }
}

#[tokio::test]
async fn writes_are_kept_per_plugin_and_survive_a_reopen() {
    let dir = dir("reopen");
    {
        let store = Store::open(&dir).unwrap();
        store.write("a", QUOTA, vec![set("k", v(1))]).await.unwrap();
        store.write("b", QUOTA, vec![set("k", v(2))]).await.unwrap();
        store.retain(
            "home/x",
            Some(RetainedRecord {
                topic: "home/x".into(),
                source: "a".into(),
                timestamp_ms: 7,
                payload: vec![0xc3],
            }),
        );
        assert_eq!(store.get("a", "k"), Some(v(1)));
        assert_eq!(store.get("b", "k"), Some(v(2)));
        assert_eq!(store.get("c", "k"), None);
        store.close().await;
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the data directory is private");
    let store = Store::open(&dir).unwrap();
    assert_eq!(store.get("a", "k"), Some(v(1)));
    assert_eq!(store.get("b", "k"), Some(v(2)));
    let restored = store.take_restored();
    assert_eq!(restored.len(), 1);
    assert_eq!(restored[0].topic, "home/x");
    assert!(store.take_restored().is_empty(), "taken once");
    store.close().await;
}

#[tokio::test]
async fn quotas_refuse_a_write_whole_and_name_the_quota() {
    let store = Store::in_memory().unwrap();
    let small = Quota {
        max_keys: 2,
        max_bytes: 1_000,
    };
    store
        .write("p", small, vec![set("a", v(1)), set("b", v(2))])
        .await
        .unwrap();
    let err = store
        .write("p", small, vec![set("a", v(3)), set("c", v(3))])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Quota {
                quota: "max_keys",
                limit: 2,
                would: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.to_wire().code, iglu_bus::ErrorCode::QuotaExceeded);
    assert_eq!(store.get("p", "a"), Some(v(1)), "nothing of it was kept");
    let big = Bytes::from(vec![0xc4; 2_000]);
    let err = store
        .write("p", small, vec![set("a", big)])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Quota {
                quota: "max_bytes",
                ..
            }
        ),
        "{err:?}"
    );
    // Another plugin is not affected; shrinking is always allowed.
    store.write("q", small, vec![set("a", v(1))]).await.unwrap();
    let tiny = Quota {
        max_keys: 1,
        max_bytes: 1,
    };
    let done = store
        .write("p", tiny, vec![Op::Delete { key: "a".into() }])
        .await
        .unwrap();
    assert_eq!(done, vec![Done::Deleted(true)]);
    assert_eq!(store.usage("p"), (1, 2));
}

#[tokio::test]
async fn compare_and_set_compares_with_the_newest_value() {
    let store = Store::in_memory().unwrap();
    let cas = |expected: Option<Bytes>, value: Option<Bytes>| Op::Cas {
        key: "state".into(),
        expected,
        value,
    };
    let done = store
        .write("p", QUOTA, vec![cas(None, Some(v(1)))])
        .await
        .unwrap();
    assert_eq!(
        done,
        vec![Done::Cas {
            swapped: true,
            current: None
        }]
    );
    let done = store
        .write("p", QUOTA, vec![cas(None, Some(v(2)))])
        .await
        .unwrap();
    assert_eq!(
        done,
        vec![Done::Cas {
            swapped: false,
            current: Some(v(1))
        }]
    );
    // Many at once, each expecting the value before it: exactly one wins
    // per value, whatever batches they fall in.
    let store = Arc::new(store);
    let tries: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .write("p", QUOTA, vec![cas(Some(v(1)), Some(v(9)))])
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut swapped = 0;
    for t in tries {
        if let [Done::Cas { swapped: true, .. }] = t.await.unwrap()[..] {
            swapped += 1;
        }
    }
    assert_eq!(swapped, 1);
    assert_eq!(store.get("p", "state"), Some(v(9)));
}

#[tokio::test]
async fn a_batch_is_all_or_nothing_and_listing_pages_by_prefix() {
    let store = Store::in_memory().unwrap();
    let ops: Vec<Op> = (0..10)
        .map(|i| set(&format!("room/{i:02}"), v(i)))
        .collect();
    store.write("p", QUOTA, ops).await.unwrap();
    store
        .write("p", QUOTA, vec![set("other", v(0))])
        .await
        .unwrap();
    let err = store
        .write("p", QUOTA, vec![set("x", v(1)), set("", v(1))])
        .await;
    assert!(err.is_err());
    assert_eq!(
        store.get("p", "x"),
        None,
        "the good half of a bad batch is not kept"
    );
    let first = store.list("p", "room/", None, 4, usize::MAX);
    assert_eq!(first.entries.len(), 4);
    assert_eq!(first.entries[0].0, "room/00");
    assert_eq!(first.next.as_deref(), Some("room/03"));
    let rest = store.list("p", "room/", first.next.as_deref(), 100, usize::MAX);
    assert_eq!(rest.entries.len(), 6);
    assert_eq!(rest.next, None);
    assert_eq!(store.list("p", "", None, 100, usize::MAX).entries.len(), 11);
    // A page also ends at its byte bound (one entry is 8 bytes here).
    let bounded = store.list("p", "room/", None, 100, 20);
    assert_eq!(bounded.entries.len(), 2);
    assert_eq!(bounded.next.as_deref(), Some("room/01"));
    let done = store
        .write("p", QUOTA, vec![Op::Clear, set("only", v(1))])
        .await
        .unwrap();
    assert_eq!(done, vec![Done::Cleared, Done::Set]);
    assert_eq!(store.list("p", "", None, 100, usize::MAX).entries.len(), 1);
    assert_eq!(store.usage("p"), (1, 5));
}

#[tokio::test]
async fn a_file_that_is_not_a_store_is_refused_and_left_as_it_is() {
    let dir = dir("foreign");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(FILE);
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(&file, &garbage).unwrap();
    let err = Store::open(&dir).err().expect("refused");
    let StoreError::Open { path, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(path, &file);
    assert!(
        err.to_string().contains(&file.display().to_string()),
        "{err}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), garbage, "never wiped");
}

#[tokio::test]
async fn a_store_of_a_newer_format_is_refused_with_the_reason() {
    let dir = dir("newer");
    std::fs::create_dir_all(&dir).unwrap();
    {
        let db = redb::Database::create(dir.join(FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta = txn
                .open_table(redb::TableDefinition::<&str, u64>::new("meta"))
                .unwrap();
            meta.insert("format", db::FORMAT + 1).unwrap();
        }
        txn.commit().unwrap();
    }
    let err = Store::open(&dir).err().expect("refused");
    assert!(err.to_string().contains("newer iglu"), "{err}");
}

#[test]
fn a_failed_write_in_a_batch_leaves_the_writes_around_it_as_they_were() {
    use mirror::{Mirror, Overlay, PluginData};
    let mut mirror = Mirror::default();
    let mut data = PluginData::default();
    data.entries.insert("old".into(), v(1));
    data.bytes = mirror::entry_size("old", &v(1));
    mirror.plugins.insert("p".into(), data);
    let mut overlay = Overlay::default();
    let small = Quota {
        max_keys: 3,
        max_bytes: 1_000,
    };
    overlay
        .apply(&mirror, "p", small, vec![set("a", v(2))])
        .unwrap();
    // A Clear, then too many keys: refused, and undone whole.
    let err = overlay.apply(
        &mirror,
        "p",
        small,
        vec![
            Op::Clear,
            set("x", v(3)),
            set("y", v(3)),
            set("z", v(3)),
            set("w", v(3)),
        ],
    );
    assert!(matches!(err, Err(StoreError::Quota { .. })), "{err:?}");
    overlay
        .apply(&mirror, "p", small, vec![Op::Delete { key: "old".into() }])
        .unwrap();
    // Setting nil removes: compare-and-set on "unset" then matches.
    overlay
        .apply(
            &mirror,
            "p",
            small,
            vec![set("n", Bytes::from_static(&[0xc0]))],
        )
        .unwrap();
    let done = overlay
        .apply(
            &mirror,
            "p",
            small,
            vec![Op::Cas {
                key: "n".into(),
                expected: Some(Bytes::from_static(&[0xc0])),
                value: Some(v(4)),
            }],
        )
        .unwrap();
    assert_eq!(
        done,
        vec![Done::Cas {
            swapped: true,
            current: None
        }]
    );
    mirror.absorb(overlay);
    let p = &mirror.plugins["p"];
    let keys: Vec<&str> = p.entries.keys().map(String::as_str).collect();
    assert_eq!(keys, ["a", "n"]);
    assert_eq!(p.bytes, 2 + 2);
}
