//! snapbench's contract with scripts: one JSON object per run with named fields that agree
//! with the file it kept; clear errors; and `--emit-commands` enters into a real server
//! exactly the data snapbench snapshots (what makes `tools/compare-peers` a fair match).

use crate::common;

use common::{Kind, Server};
use forksnap::rdb::{load, LoadOptions};
use forksnap::MemKeyspace;
use serde_json::Value;
use std::process::{Command, Output, Stdio};

fn snapbench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_snapbench"))
        .args(args)
        .output()
        .unwrap()
}

fn runs(o: &Output) -> Vec<Value> {
    let so = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{so}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    so.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[test]
fn json_runs_describe_the_file_they_kept() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("kept.rdb");
    let o = snapbench(&[
        "--json",
        "--dataset",
        "populate",
        "--keys",
        "30000",
        "--value-size",
        "100",
        "--format",
        "rdb",
        "--backend",
        "uring",
        "--direct",
        "--runs",
        "2",
        "--mutate-rate",
        "50000",
        "--load-runs",
        "2",
        "--no-svg",
        "--out",
        out.to_str().unwrap(),
    ]);
    let rs = runs(&o);
    let kinds: Vec<&str> = rs.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["timed", "timed", "load", "load", "memory"]);
    let size = std::fs::metadata(&out).unwrap().len();
    for r in &rs {
        for f in [
            "wall_s",
            "fork_us",
            "bytes_written",
            "cow_peak_bytes",
            "sqes_per_submit",
            "backend",
            "format",
            "path",
            "keys_per_s",
            "child_cpu_s",
            "write_p99_us",
            "child_priority",
        ] {
            assert!(!r[f].is_null(), "field {f} missing in {r}");
        }
        assert_eq!(r["format"], "rdb");
        assert_eq!(r["backend"], "uring+direct");
        assert_eq!(r["backend_used"], "uring");
        assert_eq!(r["keys"], 30000);
        assert_eq!(r["path"], out.to_str().unwrap());
        assert_eq!(r["bytes_written"].as_u64(), Some(size), "{r}");
        assert!(r["wall_s"].as_f64().unwrap() > 0.0);
        assert!(r["sqes_per_submit"].as_f64().unwrap() >= 1.0, "{r}");
    }
    let load_run = &rs[2];
    let pw = &load_run["parent_write"];
    let base = &load_run["parent_write_baseline"];
    assert!(pw["writes"].as_u64().unwrap() > 0, "{load_run}");
    assert!(base["writes"].as_u64().unwrap() > 0, "{load_run}");
    assert!(pw["p99_us"].as_f64().unwrap() >= pw["p50_us"].as_f64().unwrap());
    assert!(load_run["series"].as_array().is_some_and(|s| !s.is_empty()));
    assert_eq!(rs[3]["run"], 1, "second load run numbered 1");
    let own = rs[4]["child_private_bytes"].as_u64().unwrap();
    assert!(own > 0 && own < 1 << 30, "child's own memory {own}");

    // The kept file holds exactly DEBUG POPULATE's data.
    let data = std::fs::read(&out).unwrap();
    let (got, _) = load(&data, &LoadOptions::default()).unwrap();
    let mut want = MemKeyspace::new();
    want.populate(30000, 100);
    common::assert_same_data(&got, &want);
}

#[test]
fn bad_flags_get_one_clear_error() {
    let o = snapbench(&["--out", "/tmp/never-written.rdb", "--keys", "10"]);
    assert_eq!(o.status.code(), Some(1));
    let se = String::from_utf8_lossy(&o.stderr);
    assert!(se.contains("--out keeps one file"), "{se}");
    assert!(!std::path::Path::new("/tmp/never-written.rdb").exists());

    let o = snapbench(&["--keys", "0"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--keys must be at least 1"));

    let o = snapbench(&["--dataset", "mixed", "--values", "random"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--values applies to --dataset populate"));

    let o = snapbench(&["--rdb-version", "8"]);
    assert_eq!(o.status.code(), Some(2), "clap rejects it");

    let o = snapbench(&["--child-priority", "nice:20"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nice:N with N in 0..=19"));
}

#[test]
fn emitted_commands_enter_the_data_snapbench_snapshots() {
    let Some(cli) = common::require_tool("redis-cli") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mixed.rdb");
    let args = [
        "--dataset",
        "mixed",
        "--keys",
        "3000",
        "--value-size",
        "60",
        "--seed",
        "7",
    ];
    let mut a = args.to_vec();
    a.extend(["--rdb-version", "10"]); // Redis 7.0 loads up to version 10
    a.extend([
        "--format",
        "rdb",
        "--backend",
        "pwrite",
        "--runs",
        "1",
        "--mutate-rate",
        "0",
    ]);
    a.extend(["--no-probe", "--no-svg", "--out", out.to_str().unwrap()]);
    let o = snapbench(&a);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let snapshot = std::fs::read(&out).unwrap();

    let Some(mut by_file) = Server::start_with(Kind::Redis70, Some(&snapshot)) else {
        return;
    };
    let Some(mut by_commands) = Server::start(Kind::Redis70) else {
        return;
    };
    let mut a = args.to_vec();
    a.push("--emit-commands");
    let cmds = snapbench(&a);
    assert!(cmds.status.success());
    let mut pipe = Command::new(cli)
        .args(["-p", &by_commands.port.to_string(), "--pipe"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(pipe.stdin.as_mut().unwrap(), &cmds.stdout).unwrap();
    drop(pipe.stdin.take());
    let res = pipe.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&res.stdout);
    assert!(
        res.status.success() && report.contains("errors: 0"),
        "{report}"
    );

    let n = by_file.dbsize_all();
    assert_eq!(n, 3000);
    assert_eq!(by_commands.dbsize_all(), n);
    assert_eq!(by_file.digest(), by_commands.digest());
}
