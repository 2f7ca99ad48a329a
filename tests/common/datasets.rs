//! Keyspaces that cover every type and encoding boundary.

use forksnap::{MemKeyspace, MemValue};

/// Far enough in the future that no server expires the key during a test.
pub fn future_ms(offset: i64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    now + 30 * 24 * 3600 * 1000 + offset
}

fn ints(n: usize, step: i64, base: i64) -> Vec<Vec<u8>> {
    (0..n as i64)
        .map(|i| (base + i * step).to_string().into_bytes())
        .collect()
}

fn strs(n: usize, len: usize, tag: &str) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut s = format!("{tag}{i}:").into_bytes();
            while s.len() < len {
                s.push(b'a' + (s.len() % 26) as u8);
            }
            s.truncate(len.max(format!("{tag}{i}:").len()));
            s
        })
        .collect()
}

/// Pseudo-random bytes (xorshift), incompressible.
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Every type, every encoding threshold ±1, awkward strings and scores, expiries, several
/// databases. `large` adds collections of more than 100k elements and values > 1 MiB.
pub fn edge_cases(large: bool) -> MemKeyspace {
    let mut ks = MemKeyspace::new();
    let mut k = 0u32;
    let mut put = |ks: &mut MemKeyspace, db: u32, v: MemValue, exp: bool| {
        k += 1;
        let key = format!("k{k}:{}", v.len()).into_bytes();
        ks.insert(db, key, v, exp.then(|| future_ms(k as i64)));
    };
    // Strings.
    for s in [
        &b""[..],
        b"a",
        b"\x00\r\n\x00binary\xff\xfe",
        b"0",
        b"-1",
        b"127",
        b"128",
        b"-128",
        b"-129",
        b"32767",
        b"32768",
        b"2147483647",
        b"2147483648",
        b"-2147483648",
        b"-2147483649",
        b"12345678901",
        b"123456789012",
        b"9223372036854775807",
        b"9223372036854775808",
        b"007",
        b"+1",
        b"-0",
        b" 1",
        b"1.5",
        b"1e3",
        b"12345678901234567890",
        b"aaaaaaaaaaaaaaaaaaaa",
        b"aaaaaaaaaaaaaaaaaaaaa",
        b"abcabcabcabcabcabcabcabcabcabcabcabc",
    ] {
        put(&mut ks, 0, MemValue::str(s.to_vec()), false);
    }
    for i in [
        0i64,
        1,
        -1,
        127,
        128,
        40000,
        -40000,
        1 << 31,
        i64::MAX,
        i64::MIN,
    ] {
        put(&mut ks, 0, MemValue::Int(i), i % 2 == 0);
    }
    put(&mut ks, 0, MemValue::str(noise(5000, 7)), false);
    put(&mut ks, 0, MemValue::str(vec![b'z'; 100_000]), true);
    ks.insert(
        0,
        b"\x00\r\nkey\xff".to_vec(),
        MemValue::str("binary key"),
        None,
    );
    ks.insert(0, Vec::<u8>::new(), MemValue::str("empty key"), None);

    // Lists: one element, around a node's 8 KiB, a big element, ints and strings.
    put(&mut ks, 0, MemValue::list(["only"]), false);
    put(&mut ks, 0, MemValue::list(ints(128, 7, -300)), true);
    put(&mut ks, 0, MemValue::list(strs(129, 64, "l")), false);
    put(&mut ks, 0, MemValue::list(strs(300, 100, "node")), false);
    put(
        &mut ks,
        0,
        MemValue::list(vec![noise(9000, 3), b"x".to_vec(), vec![b'y'; 20000]]),
        false,
    );
    put(
        &mut ks,
        0,
        MemValue::list([&b""[..], b"", b"1", b"-1", b"9223372036854775807"]),
        false,
    );

    // Sets: intset 512/513, listpack 128/129, member 64/65 bytes, mixed, big ints.
    put(
        &mut ks,
        0,
        MemValue::set(ints(512, 3, -700)).unwrap(),
        false,
    );
    put(&mut ks, 0, MemValue::set(ints(513, 3, -700)).unwrap(), true);
    put(
        &mut ks,
        0,
        MemValue::set(ints(5, 1 << 40, 0)).unwrap(),
        false,
    );
    put(
        &mut ks,
        0,
        MemValue::set(strs(128, 10, "s")).unwrap(),
        false,
    );
    put(
        &mut ks,
        0,
        MemValue::set(strs(129, 10, "s")).unwrap(),
        false,
    );
    put(&mut ks, 0, MemValue::set(strs(20, 64, "m")).unwrap(), false);
    put(&mut ks, 0, MemValue::set(strs(20, 65, "m")).unwrap(), false);
    put(
        &mut ks,
        0,
        MemValue::set([&b"1"[..], b"2", b"x", b"01", b"-0", b""]).unwrap(),
        false,
    );
    put(
        &mut ks,
        0,
        MemValue::set([&b"99999999999999999999"[..], b"5"]).unwrap(),
        false,
    );

    // Sorted sets: 128/129 entries, 64/65-byte members, extreme and tied scores.
    let zs = |n: usize, len: usize| {
        MemValue::zset(
            strs(n, len, "z")
                .into_iter()
                .enumerate()
                .map(|(i, m)| (m, (i % 7) as f64 * 0.5 - 1.0)),
        )
        .unwrap()
    };
    put(&mut ks, 0, zs(128, 8), false);
    put(&mut ks, 0, zs(129, 8), true);
    put(&mut ks, 0, zs(10, 64), false);
    put(&mut ks, 0, zs(10, 65), false);
    let extreme = [
        (&b"inf"[..], f64::INFINITY),
        (b"-inf", f64::NEG_INFINITY),
        (b"zero", 0.0),
        (b"tiny", 1e-300),
        (b"huge", 1e300),
        (b"tenth", 0.1),
        (b"third", -1.0 / 3.0),
        (b"2^53", 9007199254740992.0),
        (b"2^52-1", 4503599627370495.0),
        (b"neg", -123456.0),
        (b"max", f64::MAX),
        (b"minpos", f64::MIN_POSITIVE),
        (b"12", 12.0),
    ];
    put(&mut ks, 0, MemValue::zset(extreme).unwrap(), false);
    put(
        &mut ks,
        0,
        MemValue::zset(
            extreme
                .iter()
                .cycle()
                .take(200)
                .enumerate()
                .map(|(i, (m, s))| {
                    (
                        format!("{}{i}", String::from_utf8_lossy(m)).into_bytes(),
                        *s,
                    )
                }),
        )
        .unwrap(),
        false,
    );

    // Hashes: 128/129 fields, field and value 64/65 bytes.
    let hs = |n: usize, flen: usize, vlen: usize| {
        MemValue::hash(strs(n, flen, "f").into_iter().zip(strs(n, vlen, "v"))).unwrap()
    };
    put(&mut ks, 0, hs(128, 8, 8), false);
    put(&mut ks, 0, hs(129, 8, 8), true);
    put(&mut ks, 0, hs(5, 64, 64), false);
    put(&mut ks, 0, hs(5, 65, 3), false);
    put(&mut ks, 0, hs(5, 3, 65), false);
    put(
        &mut ks,
        0,
        MemValue::hash([("n", "1"), ("neg", "-5"), ("", ""), ("bin\0", "\r\n")]).unwrap(),
        false,
    );

    // Other databases.
    put(&mut ks, 1, MemValue::str("db1"), true);
    put(&mut ks, 1, MemValue::set(["a", "b"]).unwrap(), false);
    put(&mut ks, 9, MemValue::hash([("f", "v")]).unwrap(), false);

    if large {
        put(&mut ks, 0, MemValue::list(ints(150_000, 1, 0)), false);
        put(&mut ks, 0, MemValue::list(strs(120_000, 30, "L")), false);
        put(
            &mut ks,
            0,
            MemValue::set(strs(100_001, 12, "S")).unwrap(),
            false,
        );
        put(
            &mut ks,
            0,
            MemValue::set(ints(100_001, 1, -50_000)).unwrap(),
            true,
        );
        put(
            &mut ks,
            2,
            MemValue::zset(
                strs(100_001, 12, "Z")
                    .into_iter()
                    .enumerate()
                    .map(|(i, m)| (m, i as f64 / 3.0)),
            )
            .unwrap(),
            false,
        );
        put(
            &mut ks,
            2,
            MemValue::hash(strs(100_001, 12, "F").into_iter().zip(ints(100_001, 1, 0))).unwrap(),
            false,
        );
        let mut big = noise(1 << 20, 11);
        big.extend(vec![b'q'; 1 << 20]);
        put(&mut ks, 3, MemValue::str(big), true);
        put(&mut ks, 3, MemValue::list(vec![noise(1_500_000, 5)]), false);
    }
    ks
}

/// What a server would have after `DEBUG POPULATE n key size`.
pub fn populate(n: u64, size: usize) -> MemKeyspace {
    let mut ks = MemKeyspace::new();
    ks.populate(n, size);
    ks
}

/// REDIS0009: db0 holds `empty` (a set of no members), `k` = "v", and `old` = "v"
/// expiring at i64::MIN; no CRC (zero: not checked).
pub fn crafted_edge_rdb() -> Vec<u8> {
    let mut f = b"REDIS0009".to_vec();
    f.extend_from_slice(&[0xFE, 0x00]); // SELECTDB 0
    f.extend_from_slice(&[0x02, 5]); // a set, key of 5 bytes
    f.extend_from_slice(b"empty");
    f.push(0x00); // no members
    f.extend_from_slice(&[0x00, 1, b'k', 1, b'v']);
    f.push(0xFC); // EXPIRETIME_MS
    f.extend_from_slice(&i64::MIN.to_le_bytes());
    f.extend_from_slice(&[0x00, 3]);
    f.extend_from_slice(b"old");
    f.extend_from_slice(&[1, b'v']);
    f.push(0xFF);
    f.extend_from_slice(&[0; 8]);
    f
}
