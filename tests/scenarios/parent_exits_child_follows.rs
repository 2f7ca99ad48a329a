//! When the parent dies mid-snapshot, the child is gone within a second and never puts a
//! file in place.

use forksnap::{BackendKind, MemKeyspace, SnapshotOptions};
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The dying parent, run by `parent_death_kills_child` as a separate process (this same
/// test, re-executed with `FORKSNAP_HELPER_TARGET` set): starts a long snapshot, prints
/// the child's pid, and exits without waiting.
fn act_as_dying_parent(target: &str) -> ! {
    let mut ks = MemKeyspace::new();
    ks.populate(6_000_000, 100);
    let running = SnapshotOptions::new(target)
        .lzf(false)
        .backend(BackendKind::Pwrite)
        .start(&ks)
        .unwrap();
    // The parent test reads this line from our stdout.
    #[allow(clippy::print_stdout)]
    {
        println!("CHILD {}", running.pid());
    }
    std::thread::sleep(Duration::from_millis(100));
    // Exit without running RunningSnapshot's Drop (which would kill the child itself).
    std::process::exit(0);
}

fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s.split_whitespace().nth(2).is_none_or(|st| st != "Z"),
        Err(_) => false,
    }
}

#[test]
fn parent_death_kills_child() {
    if let Ok(target) = std::env::var("FORKSNAP_HELPER_TARGET") {
        act_as_dying_parent(&target);
    }
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("dump.rdb");
    let mut helper = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "parent_exits_child_follows::parent_death_kills_child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("FORKSNAP_HELPER_TARGET", &target)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pid = None;
    for line in std::io::BufReader::new(helper.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        // libtest prints the test's name on the same line first.
        if let Some((_, p)) = line.split_once("CHILD ") {
            pid = Some(p.trim().parse::<i32>().unwrap());
            break;
        }
    }
    let pid = pid.expect("helper printed the child's pid");
    assert!(alive(pid), "the child must be running when its parent dies");
    helper.wait().unwrap();
    let t = Instant::now();
    while alive(pid) && t.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        !alive(pid),
        "child {pid} still alive 1 s after its parent exited"
    );
    assert!(
        !target.exists(),
        "a child of a dead parent put a snapshot in place"
    );
}
