//! The replica's side against a scripted master on loopback, byte by byte where it
//! matters: the handshake as a Redis 7 replica sends it, keep-alive newlines, the RDB
//! EOF-marked (its mark arriving in pieces) or length-prefixed (the stream right behind
//! it), the stream's SELECT, PING and GETACK, the offset acknowledged, and the errors
//! for a master that answers wrongly or goes away.

use crate::common::{self, datasets};
use forksnap::{MemKeyspace, ReplicaLink, ReplicaOptions, SyncKind};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// Reads one RESP command from the replica: its arguments.
fn command(r: &mut BufReader<TcpStream>) -> Vec<String> {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let n: usize = line.trim_end()[1..].parse().unwrap();
    (0..n)
        .map(|_| {
            line.clear();
            r.read_line(&mut line).unwrap();
            let len: usize = line.trim_end()[1..].parse().unwrap();
            let mut b = vec![0u8; len + 2];
            r.read_exact(&mut b).unwrap();
            String::from_utf8(b[..len].to_vec()).unwrap()
        })
        .collect()
}

fn resp(argv: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", argv.len()).into_bytes();
    for a in argv {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

const ID: &str = "0123456789abcdef0123456789abcdef01234567";

/// A master that handshakes, sends `rdb` framed by `eof` (or its length), then the
/// stream; returns what the replica sent after loading.
fn scripted_master(listener: TcpListener, rdb: Vec<u8>, eof: bool) -> Vec<Vec<String>> {
    let (sock, _) = listener.accept().unwrap();
    let mut r = BufReader::new(sock.try_clone().unwrap());
    let mut w = sock;
    assert_eq!(command(&mut r), ["PING"]);
    w.write_all(b"+PONG\r\n").unwrap();
    assert_eq!(command(&mut r), ["REPLCONF", "listening-port", "7777"]);
    assert_eq!(
        command(&mut r),
        ["REPLCONF", "capa", "eof", "capa", "psync2"]
    );
    w.write_all(b"+OK\r\n-ERR old master\r\n").unwrap(); // errors tolerated
    assert_eq!(command(&mut r), ["PSYNC", "?", "-1"]);
    w.write_all(b"\n\n").unwrap(); // keep-alives before the answer
    w.write_all(format!("+FULLRESYNC {ID} 1000\r\n\n").as_bytes())
        .unwrap();
    let stream = [
        resp(&["SELECT", "3"]),
        resp(&["SET", "k", "v"]),
        resp(&["PING"]),
        resp(&["REPLCONF", "GETACK", "*"]),
        resp(&["DEL", "k"]),
    ]
    .concat();
    if eof {
        let mark = "m".repeat(40);
        w.write_all(format!("$EOF:{mark}\r\n").as_bytes()).unwrap();
        w.write_all(&rdb).unwrap();
        // The mark in pieces: the replica must not take a partial one for the end.
        for piece in mark.as_bytes().chunks(7) {
            w.write_all(piece).unwrap();
            w.flush().unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
    } else {
        w.write_all(format!("${}\r\n", rdb.len()).as_bytes())
            .unwrap();
        let mut all = rdb.clone();
        all.extend_from_slice(&stream); // no pause: the stream follows at once
        w.write_all(&all).unwrap();
    }
    let mut got = vec![command(&mut r)]; // the ACK after loading
    if eof {
        w.write_all(&stream).unwrap(); // only after that ACK
    }
    got.push(command(&mut r)); // the answer to GETACK
    got
}

fn sync(eof: bool) {
    let mut ks = datasets::edge_cases(false);
    ks.populate(20_000, 40);
    let rdb = common::rdb_of(&ks, 11, true);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let master = std::thread::spawn(move || scripted_master(listener, rdb, eof));
    let opts = ReplicaOptions::new(7777).timeout(Duration::from_secs(10));
    let (mut link, kind) = ReplicaLink::connect(("127.0.0.1", port), &opts, None).unwrap();
    assert_eq!(kind, SyncKind::Full);
    assert_eq!((link.replid(), link.offset()), (ID, 1000));
    let mut loaded = MemKeyspace::new();
    let report = link.load(&mut loaded).unwrap();
    assert_eq!(report.keys, ks.len() as u64);
    common::assert_same_data(&ks, &loaded);
    let mut cmds = Vec::new();
    while cmds.len() < 2 {
        if let Some(c) = link.next_command().unwrap() {
            cmds.push(c);
        }
    }
    let at = |i: usize| {
        1000 + [
            resp(&["SELECT", "3"]),
            resp(&["SET", "k", "v"]),
            resp(&["PING"]),
            resp(&["REPLCONF", "GETACK", "*"]),
            resp(&["DEL", "k"]),
        ][..i]
            .iter()
            .map(|c| c.len() as u64)
            .sum::<u64>()
    };
    assert_eq!(cmds[0].db, 3);
    assert_eq!(
        cmds[0].argv,
        [b"SET".to_vec(), b"k".to_vec(), b"v".to_vec()]
    );
    assert_eq!(cmds[0].offset, at(2));
    assert_eq!(cmds[1].argv, [b"DEL".to_vec(), b"k".to_vec()]);
    assert_eq!((cmds[1].db, cmds[1].offset), (3, at(5)));
    assert_eq!(link.offset(), at(5));
    let sent = master.join().unwrap();
    assert_eq!(
        sent[0],
        ["REPLCONF", "ACK", "1000"],
        "acknowledged once loaded"
    );
    // GETACK is answered with the offset before it, as Redis does.
    assert_eq!(sent[1], ["REPLCONF", "ACK", &at(3).to_string()]);
}

#[test]
fn an_eof_marked_full_sync_loads_and_the_stream_follows_after_the_ack() {
    sync(true);
}

#[test]
fn a_length_prefixed_full_sync_with_the_stream_right_behind_it() {
    sync(false);
}

#[test]
fn a_master_that_answers_wrongly_or_hangs_up_is_a_clear_error() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let master = std::thread::spawn(move || {
        for answer in [
            &b"-NOAUTH Authentication required.\r\n"[..],
            b"+PONG\r\n+OK\r\n+OK\r\n+WHAT\r\n",
        ] {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(answer).unwrap();
            std::thread::sleep(Duration::from_millis(200));
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let _ = s.read(&mut [0u8; 4096]);
        }
        // Full resync, then gone in the middle of the RDB.
        let (mut s, _) = listener.accept().unwrap();
        s.write_all(
            format!("+PONG\r\n+OK\r\n+OK\r\n+FULLRESYNC {ID} 5\r\n$1000\r\nREDIS0011").as_bytes(),
        )
        .unwrap();
        // Read what the replica sent (closing with unread input would be a reset), then
        // hang up.
        std::thread::sleep(Duration::from_millis(300));
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let _ = s.read(&mut [0u8; 4096]);
    });
    let opts = ReplicaOptions::new(1).timeout(Duration::from_secs(10));
    let addr = ("127.0.0.1", port);
    let e = ReplicaLink::connect(addr, &opts, None)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("handshake") && e.contains("NOAUTH"), "{e}");
    let e = ReplicaLink::connect(addr, &opts, None)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("PSYNC answered \"+WHAT\""), "{e}");
    let (mut link, _) = ReplicaLink::connect(addr, &opts, None).unwrap();
    let e = link.load(&mut MemKeyspace::new()).unwrap_err().to_string();
    assert!(e.contains("closed the connection"), "{e}");
    master.join().unwrap();
}
