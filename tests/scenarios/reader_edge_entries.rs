//! Entries a real file may hold that no server keeps: empty collections (skipped and
//! counted, as Redis does), an expiry of `i64::MIN` (kept as an expiry, never turned
//! into "persistent").

use crate::common::datasets::crafted_edge_rdb as crafted;
use forksnap::rdb::load;
use forksnap::LoadOptions;

#[test]
fn empty_collections_are_skipped_and_counted() {
    let (ks, report) = load(&crafted(), &LoadOptions::default()).unwrap();
    assert_eq!(report.empty_skipped, 1);
    let db = ks.db(0).unwrap();
    assert!(db.get(b"empty").is_none());
    assert_eq!(db.len(), 2);
}

#[test]
fn an_expiry_of_i64_min_stays_an_expiry() {
    let (ks, _) = load(&crafted(), &LoadOptions::default()).unwrap();
    let (_, expiry) = ks.db(0).unwrap().get(b"old").unwrap();
    assert_eq!(
        expiry,
        Some(i64::MIN + 1),
        "the key must stay expired, not persistent"
    );
    // And it survives a write and a load.
    let (bytes, _) = forksnap::rdb::encode_to_vec(&ks, &Default::default()).unwrap();
    let (again, _) = load(&bytes, &LoadOptions::default()).unwrap();
    assert_eq!(
        again.db(0).unwrap().get(b"old").unwrap().1,
        Some(i64::MIN + 1)
    );
}
