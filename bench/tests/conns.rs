//! `conns` against a correct server: every connection opens, is held, and
//! receives its room's probe; several worker processes and source
//! addresses share the work.

mod common;

use std::path::PathBuf;

use chat_bench::testserver::{Fault, FaultKind, TestServer};

#[test]
fn in_process_connections_all_receive_the_probe() {
    let server = TestServer::start(Vec::new()).unwrap();
    let report = chat_bench::conns::run(&common::conns(server.addr(), 60, 10)).unwrap();
    assert_eq!((report.opened, report.failed), (60, 0));
    assert_eq!((report.probe_received, report.probe_missing), (60, 0));
    assert_eq!(report.workers, 1);
    assert!(report.open_rate > 0.0);
}

#[test]
fn worker_processes_split_the_connections() {
    let server = TestServer::start(Vec::new()).unwrap();
    let mut config = common::conns(server.addr(), 70, 8);
    config.settings.per_worker = 25;
    config.settings.in_process = false;
    config.settings.worker_exe = Some(PathBuf::from(env!("CARGO_BIN_EXE_chat-bench")));
    config.server.pid = Some(std::process::id());
    let report = chat_bench::conns::run(&config).unwrap();
    assert_eq!(report.workers, 3);
    assert_eq!((report.opened, report.failed), (70, 0));
    assert_eq!((report.probe_received, report.probe_missing), (70, 0));
    assert_eq!(report.settings.sources, 2);
    assert!(report.server_rss_before_bytes.is_some() && report.server_rss_per_conn_bytes.is_some());
}

#[test]
fn a_server_that_drops_the_probe_is_caught() {
    // Each room's first message is the probe; one member of each room
    // never gets it.
    let server = TestServer::start(vec![Fault {
        kind: FaultKind::Drop,
        nth: 0,
        member: Some(3),
    }])
    .unwrap();
    let mut config = common::conns(server.addr(), 40, 10);
    config.settings.probe_timeout = std::time::Duration::from_secs(1).into();
    let report = chat_bench::conns::run(&config).unwrap();
    assert_eq!(report.opened, 40);
    assert_eq!((report.probe_received, report.probe_missing), (36, 4));
}

#[test]
fn refused_connections_are_reported() {
    // Nothing listens here once the listener is dropped.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut config = common::conns(addr, 5, 5);
    config.server.setup_timeout = std::time::Duration::from_secs(2);
    let report = chat_bench::conns::run(&config).unwrap();
    assert_eq!((report.opened, report.failed), (0, 5));
    assert!(report.first_error.is_some());
}

#[test]
fn connections_spread_over_several_servers() {
    // Two independent servers: rooms of one, so that each probe stays on
    // the server its room is on.
    let (a, b) = (
        TestServer::start(Vec::new()).unwrap(),
        TestServer::start(Vec::new()).unwrap(),
    );
    let mut config = common::conns(a.addr(), 20, 1);
    config.settings.extra_url = vec![format!("ws://{}", b.addr())];
    config.server.pid = Some(std::process::id());
    config.settings.extra_server_pid = vec![std::process::id()];
    let report = chat_bench::conns::run(&config).unwrap();
    assert_eq!((report.opened, report.probe_received), (20, 20));
    assert_eq!(report.probe_latency.count, 20);
    assert!(report.probe_latency.max_us >= report.probe_latency.p50_us);
    assert!(report.server_rss_after_bytes.is_some());
}
