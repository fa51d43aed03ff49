//! The binary end to end: `fanout` and `conns` with `--json` against a
//! correct server, and `table` over their reports.

use std::process::Command;

use chat_bench::report::Report;
use chat_bench::testserver::TestServer;

fn bench(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_chat-bench"))
        .args(args)
        .output()
        .expect("run chat-bench")
}

#[test]
fn fanout_and_conns_print_json_and_table_compares_them() {
    let server = TestServer::start(Vec::new()).unwrap();
    let url = format!("ws://{}", server.addr());
    let pid = std::process::id().to_string();
    let out = bench(&[
        "fanout",
        "--json",
        "-q",
        "--url",
        &url,
        "--rooms",
        "2",
        "--members",
        "5",
        "--senders",
        "2",
        "--messages",
        "200",
        "--server-pid",
        &pid,
        "--max-time",
        "20",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fanout: Report = serde_json::from_slice(&out.stdout).unwrap();
    let Report::Fanout(f) = &fanout else {
        panic!("not a fanout report")
    };
    assert_eq!(
        (f.distinct, f.lost, f.duplicated, f.out_of_order),
        (1000, 0, 0, 0)
    );
    assert!(f.server.is_some());

    let out = bench(&[
        "conns",
        "--json",
        "-q",
        "--url",
        &url,
        "--connections",
        "30",
        "--room-size",
        "10",
        "--per-worker",
        "20",
        "--hold",
        "0.1",
        "--sources",
        "2",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let conns: Report = serde_json::from_slice(&out.stdout).unwrap();
    let Report::Conns(c) = &conns else {
        panic!("not a conns report")
    };
    assert_eq!((c.opened, c.probe_received, c.workers), (30, 30, 2));

    // The table over two "servers" with the same reports: ratios of 1.
    let dir = std::env::temp_dir().join(format!("chat-bench-table-{}", std::process::id()));
    for server in ["ours", "peer"] {
        std::fs::create_dir_all(dir.join(server)).unwrap();
        std::fs::write(
            dir.join(server).join("fanout-1.json"),
            serde_json::to_vec(&fanout).unwrap(),
        )
        .unwrap();
        std::fs::write(
            dir.join(server).join("conns-1.json"),
            serde_json::to_vec(&conns).unwrap(),
        )
        .unwrap();
    }
    std::fs::create_dir_all(dir.join("broken")).unwrap();
    std::fs::write(dir.join("broken").join("FAILED"), "did not start").unwrap();
    let out = bench(&["table", dir.to_str().unwrap(), "--servers", "ours,peer"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("| fanout ") && l.contains("| deliveries/s ")),
        "{table}"
    );
    assert!(
        table.lines().nth(1).is_some_and(|l| l.ends_with(":|")),
        "{table}"
    );
    assert!(table.contains("1.00×"), "{table}");
    assert!(table.contains("broken: did not start"), "{table}");
    let _ = std::fs::remove_dir_all(&dir);

    // The readable table, too.
    let out = bench(&[
        "fanout", "-q", "--url", &url, "-r", "1", "-m", "3", "-n", "30",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("lost / dup / reordered"))
        .unwrap();
    assert!(line.ends_with(" 0 / 0 / 0"), "{text}");
}

#[test]
fn refuses_to_load_anything_but_loopback() {
    let out = bench(&["fanout", "-q", "--url", "ws://192.0.2.1:8000", "-m", "1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
}
