//! `dataset_digest` and `value_digest` give what Redis 7.0's `DEBUG DIGEST` and
//! `DEBUG DIGEST-VALUE` give for the same data (every type, expiries, several databases,
//! scores that `%.17g` prints long).

use crate::common;

use common::{datasets, fill_by_commands, Kind, Reply, Server};
use forksnap::{dataset_digest, value_digest, Digest, MemKeyspace, MemValue};

#[test]
fn digests_equal_redis_7_0s() {
    let mut ks = datasets::edge_cases(true);
    ks.insert(
        3,
        "z",
        MemValue::zset([("a", 0.1), ("b", -1e20), ("c", 1.5e-7)]).unwrap(),
        None,
    );
    let Some(mut s) = Server::start(Kind::Redis70) else {
        return;
    };
    fill_by_commands(s.conn(), &ks);

    let mut checked = 0;
    for (db, d) in ks.dbs() {
        s.conn().ok(&[b"SELECT", db.to_string().as_bytes()]);
        for (key, value, expire) in d.iter() {
            let want = match s.conn().cmd(&[b"DEBUG", b"DIGEST-VALUE", key]) {
                Reply::Array(Some(mut a)) if a.len() == 1 => match a.remove(0) {
                    Reply::Status(s) => s,
                    r => panic!("DIGEST-VALUE item {r:?}"),
                },
                r => panic!("DIGEST-VALUE answered {r:?}"),
            };
            assert_eq!(
                value_digest(&value.view(), expire).to_string(),
                want,
                "DEBUG DIGEST-VALUE of {:?} in db {db}",
                String::from_utf8_lossy(key)
            );
            checked += 1;
        }
    }
    assert_eq!(dataset_digest(&ks).to_string(), s.digest(), "DEBUG DIGEST");
    assert!(checked > 20, "only {checked} values compared");
    assert_eq!(dataset_digest(&MemKeyspace::new()), Digest::default());
}
