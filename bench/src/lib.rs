//! chat-bench: a load generator for any server of the chat room protocol
//! (`ws://HOST:PORT/ws/chat/<room>/`, `{"message": text}` both ways), so
//! that our `chat-server` and the servers people would pick instead are
//! measured by the same code.
//!
//! Two workloads:
//!
//! * [`fanout`]: R rooms × M members, S senders, N messages; deliveries per
//!   second, latency percentiles, exact loss, duplication and reordering,
//!   the server's CPU time per delivery and memory, and the load
//!   generator's own CPU so that a saturated load generator shows.
//! * [`conns`]: C idle connections over several source addresses and
//!   worker processes; open rate, proof that each still receives, and the
//!   server's memory per connection.
//!
//! And one check of chat-server itself:
//!
//! * [`soak`]: a bounded run of well-behaved (churning), slow and abusive
//!   clients; exact loss among the well-behaved, disconnects by reason,
//!   and whether the server's RSS stays flat once warm.
//!
//! # Layout
//!
//! | module | job |
//! |---|---|
//! | [`cli`] | the command line (clap): subcommands, the server's flags, the output |
//! | [`config`] | what every workload is given: the server, its settings, a room prefix |
//! | [`secs`] | durations as flags and reports take them |
//! | [`wire`] | the WebSocket client: handshake, frame parsing in place, masked frames |
//! | [`frames`] | the one frame reader: reads a socket, reassembles, answers pings |
//! | [`payload`] | chat-bench's text inside a message: sender, sequence, timestamp |
//! | [`tracker`] | exact loss / duplicate / out-of-order accounting per stream |
//! | [`fanout`] | the fan-out workload (controller, per-thread shards, members) |
//! | [`conns`] | the idle-connections workload (parent and workers) |
//! | [`soak`] | the soak test (members, slow clients, abusers, RSS verdict) |
//! | [`procstat`] | CPU time and RSS from `/proc` |
//! | [`limits`] | raising the file-descriptor limit |
//! | [`report`] | report types, JSON and tables |
//! | [`table`] | drawing tables (comfy-table): key/value, grids, Markdown |
//! | [`summary`] | the comparison table over many reports (`chat-bench table`) |
//! | [`chart`] | SVG charts of a comparison (`chat-bench chart`) |
//! | [`progress`] | the progress line on stderr |
//! | [`testserver`] | a broadcast server with fault injection, for tests and `serve` |

pub mod chart;
pub mod cli;
pub mod config;
pub mod conns;
pub mod fanout;
pub mod frames;
pub mod limits;
pub mod payload;
pub mod procstat;
pub mod progress;
pub mod report;
pub mod secs;
pub mod soak;
pub mod summary;
pub mod table;
pub mod testserver;
pub mod tracker;
pub mod wire;
