//! A real Redis Cluster on loopback, started by the test: 3 masters and 3
//! replicas (`redis-server --cluster-enabled yes`, then `redis-cli
//! --cluster create ... --cluster-replicas 1`), persistence off, in a
//! temporary directory. Node ports are below 55536 so that each node's
//! cluster bus (port + 10000) is a valid port too; ports are picked free
//! and the whole start is retried on a collision (other tests run at the
//! same time on this machine).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::redis::{RedisServer, may_skip};

/// A running cluster; every node is killed when dropped.
pub struct RedisCluster {
    nodes: Vec<Node>,
    dir: tempfile::TempDir,
}

struct Node {
    port: u16,
    child: Option<Child>,
}

impl RedisCluster {
    /// Starts one, or returns `None` (after saying so loudly) when
    /// `redis-server` or `redis-cli` is missing and `CI` is not set.
    pub fn start() -> Option<Self> {
        for tool in ["redis-server", "redis-cli"] {
            if Command::new(tool).arg("--version").output().is_err() {
                may_skip(tool);
                return None;
            }
        }
        let mut last = String::new();
        for _ in 0..5 {
            match Self::try_start() {
                Ok(cluster) => return Some(cluster),
                Err(err) => {
                    eprintln!("starting a Redis Cluster failed ({err}); retrying on other ports");
                    last = err;
                }
            }
        }
        panic!("could not start a Redis Cluster: {last}");
    }

    fn try_start() -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let ports = free_cluster_ports(6)?;
        let mut cluster = Self {
            nodes: Vec::new(),
            dir,
        };
        for &port in &ports {
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                .args(["--cluster-node-timeout", "1000"])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .args(["--protected-mode", "no", "--loglevel", "warning"])
                .arg("--dir")
                .arg(cluster.dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("start redis-server: {e}"))?;
            cluster.nodes.push(Node {
                port,
                child: Some(child),
            });
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for &port in &ports {
            while RedisServer::command_on(port, "PING").as_deref() != Some("+PONG") {
                if Instant::now() > deadline {
                    return Err(format!("node {port} did not come up"));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let mut create = Command::new("redis-cli");
        create.args(["--cluster", "create"]);
        for port in &ports {
            create.arg(format!("127.0.0.1:{port}"));
        }
        let output = create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("redis-cli --cluster create: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&output.stdout)
            ));
        }
        cluster.wait_ready(Duration::from_secs(30))?;
        Ok(cluster)
    }

    /// Waits until every node says the cluster is ok and every master
    /// has a replica in sync.
    pub fn wait_ready(&self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            let ok =
                self.live_ports()
                    .iter()
                    .all(|&port| cli(port, &["CLUSTER", "INFO"]).contains("cluster_state:ok"))
                    && self.masters().len() == 3
                    && self.masters().iter().all(|&(port, _)| {
                        cli(port, &["INFO", "replication"]).contains("state=online")
                    });
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("the cluster did not become ready".to_owned());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Seed URLs for `--redis-cluster`: every node.
    pub fn seeds(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|node| format!("redis://127.0.0.1:{}", node.port))
            .collect()
    }

    fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|node| node.child.is_some())
            .map(|node| node.port)
            .collect()
    }

    /// Live masters and the slot ranges each serves, from `CLUSTER NODES`.
    pub fn masters(&self) -> Vec<(u16, Vec<(u16, u16)>)> {
        let Some(&asked) = self.live_ports().first() else {
            return Vec::new();
        };
        let nodes = cli(asked, &["CLUSTER", "NODES"]);
        let mut masters = Vec::new();
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let Some(port) = fields[1]
                .split('@')
                .next()
                .and_then(|addr| addr.rsplit(':').next())
                .and_then(|port| port.parse().ok())
            else {
                continue;
            };
            if !self.live_ports().contains(&port) {
                continue;
            }
            let ranges: Vec<(u16, u16)> = fields[8..]
                .iter()
                .filter(|range| !range.starts_with('['))
                .filter_map(|range| match range.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => range.parse().ok().map(|s| (s, s)),
                })
                .collect();
            if !ranges.is_empty() {
                masters.push((port, ranges));
            }
        }
        masters
    }

    /// The port of the master serving `key`'s slot.
    pub fn master_of(&self, key: &str) -> u16 {
        let port = self.live_ports()[0];
        let slot: u16 = cli(port, &["CLUSTER", "KEYSLOT", key])
            .trim()
            .parse()
            .expect("a slot");
        self.masters()
            .into_iter()
            .find(|(_, ranges)| ranges.iter().any(|(a, b)| (*a..=*b).contains(&slot)))
            .map(|(port, _)| port)
            .expect("a master for every slot")
    }

    /// Moves the slot of `key` from its master to another live master, as
    /// a plain `redis-cli --cluster reshard` does (IMPORTING/MIGRATING,
    /// MIGRATE every key, then SETSLOT NODE on every master). Returns the
    /// new owner's port.
    pub fn move_slot_of(&self, key: &str) -> u16 {
        let moving = self.begin_move(key);
        self.finish_move(&moving)
    }

    /// Starts moving the slot of `key` to another live master: marks it
    /// IMPORTING there and MIGRATING on its owner. Until
    /// [`Self::finish_move`], a key already migrated answers `ASK`.
    pub fn begin_move(&self, key: &str) -> SlotMove {
        let from = self.master_of(key);
        let to = self
            .masters()
            .into_iter()
            .map(|(port, _)| port)
            .find(|&port| port != from)
            .expect("another master");
        let slot = cli(from, &["CLUSTER", "KEYSLOT", key]).trim().to_owned();
        let id = |port: u16| cli(port, &["CLUSTER", "MYID"]).trim().to_owned();
        let moving = SlotMove {
            slot,
            from,
            to,
            to_id: id(to),
        };
        cli(
            to,
            &["CLUSTER", "SETSLOT", &moving.slot, "IMPORTING", &id(from)],
        );
        cli(
            from,
            &[
                "CLUSTER",
                "SETSLOT",
                &moving.slot,
                "MIGRATING",
                &moving.to_id,
            ],
        );
        moving
    }

    /// The keys of the moving slot still on its old master.
    #[allow(clippy::unused_self)] // a slot of this cluster
    pub fn keys_left(&self, moving: &SlotMove) -> Vec<String> {
        cli(
            moving.from,
            &["CLUSTER", "GETKEYSINSLOT", &moving.slot, "1000"],
        )
        .lines()
        .filter(|key| !key.is_empty())
        .map(str::to_owned)
        .collect()
    }

    /// MIGRATEs the keys of the moving slot that `which` picks, in a
    /// bounded loop (keys written meanwhile are picked up too), with a
    /// plain MIGRATE: no REPLACE. A key that exists on both sides means a
    /// write was run by both masters (a multi-command pipeline that met an
    /// ASK and was resent whole, say); MIGRATE then answers BUSYKEY
    /// forever, and this panics naming the key.
    pub fn migrate(&self, moving: &SlotMove, which: impl Fn(&str) -> bool) {
        let to_port = moving.to.to_string();
        let mut last = String::new();
        for round in 0.. {
            let keys = self.keys_left(moving);
            let keys: Vec<&str> = keys
                .iter()
                .map(String::as_str)
                .filter(|key| which(key))
                .collect();
            if keys.is_empty() {
                return;
            }
            assert!(
                round < 200,
                "slot {} still holds {keys:?} after {round} MIGRATEs; the last said {last:?}",
                moving.slot
            );
            let mut migrate = vec!["MIGRATE", "127.0.0.1", &to_port, "", "0", "5000", "KEYS"];
            migrate.extend(keys);
            last = cli(moving.from, &migrate);
        }
    }

    /// Finishes a move: MIGRATEs what is left, then gives the slot to the
    /// new master on every master. Returns the new owner's port.
    pub fn finish_move(&self, moving: &SlotMove) -> u16 {
        self.migrate(moving, |_| true);
        for (port, _) in self.masters() {
            give_slot(port, moving);
        }
        moving.to
    }

    /// Finishes a move in the order a tool that updates the masters one by
    /// one may use (redis-cli 7.0's reshard walks its node list): the old
    /// master first, then, after `pause`, every other. During the pause
    /// the masters disagree: the old one redirects the slot to the new,
    /// which, only importing it, redirects back, and a third still names
    /// the old owner. Returns the new owner's port.
    pub fn finish_move_old_owner_first(&self, moving: &SlotMove, pause: Duration) -> u16 {
        self.migrate(moving, |_| true);
        give_slot(moving.from, moving);
        std::thread::sleep(pause);
        for (port, _) in self.masters() {
            if port != moving.from {
                give_slot(port, moving);
            }
        }
        moving.to
    }

    /// Kills the node on `port` with SIGKILL, as a crash would.
    pub fn kill(&mut self, port: u16) {
        for node in &mut self.nodes {
            if node.port == port {
                if let Some(mut child) = node.child.take() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
    }

    /// Runs `command` on the node on `port` and returns its output.
    #[allow(clippy::unused_self)] // a node of this cluster, by port
    pub fn cli(&self, port: u16, command: &[&str]) -> String {
        cli(port, command)
    }
}

/// Tells the node on `port` that the moving slot is its new master's.
fn give_slot(port: u16, moving: &SlotMove) {
    cli(
        port,
        &["CLUSTER", "SETSLOT", &moving.slot, "NODE", &moving.to_id],
    );
}

/// A slot being moved from one master to another.
pub struct SlotMove {
    pub slot: String,
    pub from: u16,
    pub to: u16,
    to_id: String,
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// `redis-cli -p PORT COMMAND...`, its output as text ("" on failure).
fn cli(port: u16, command: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(command)
        .stdin(Stdio::null())
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default()
}

/// `count` ports below 55536 whose port + 10000 (the cluster bus) is free
/// too.
fn free_cluster_ports(count: usize) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for _ in 0..1000 {
        if ports.len() == count {
            break;
        }
        let port = fastrand::u16(20_000..45_000);
        if ports.contains(&port) {
            continue;
        }
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && free(port + 10_000) {
            ports.push(port);
        }
    }
    if ports.len() == count {
        Ok(ports)
    } else {
        Err("no free ports".to_owned())
    }
}
